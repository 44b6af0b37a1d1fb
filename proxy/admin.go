package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// DefaultAdminListen keeps the admin listener off the network by default.
const DefaultAdminListen = "127.0.0.1:9090"

// AdminOptions configures the admin listener.
type AdminOptions struct {
	// Listen address (zero: 127.0.0.1:9090).
	Listen string
	// Gatherer serves /metrics (nil: /metrics answers 404). Pass the same
	// registry given to NewMetrics.
	Gatherer prometheus.Gatherer
	// Ready backs /readyz (nil: always ready). Use Server.Ready.
	Ready func() bool
	// Handlers mounts extra endpoints by path prefix ("/admin/sessions");
	// the longest prefix wins. They bring their own authentication.
	Handlers map[string]fasthttp.RequestHandler
	// Logger (nil: discard).
	Logger *slog.Logger
}

// Admin is the admin listener: /healthz, /readyz, /metrics, and mounts.
type Admin struct {
	opts    AdminOptions
	fs      *fasthttp.Server
	metrics fasthttp.RequestHandler
	mounts  []mount
}

type mount struct {
	prefix string
	h      fasthttp.RequestHandler
}

// NewAdmin validates opts and builds the admin server.
func NewAdmin(opts AdminOptions) (*Admin, error) {
	if opts.Listen == "" {
		opts.Listen = DefaultAdminListen
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	a := &Admin{opts: opts}
	for p, h := range opts.Handlers {
		if !strings.HasPrefix(p, "/") || h == nil {
			return nil, fmt.Errorf("proxy: admin: mount %q: want a path starting with / and a handler", p)
		}
		switch p {
		case "/healthz", "/readyz", "/metrics", "/":
			return nil, fmt.Errorf("proxy: admin: mount %q would shadow a built-in endpoint", p)
		}
		a.mounts = append(a.mounts, mount{p, h})
	}
	sort.Slice(a.mounts, func(i, j int) bool { return len(a.mounts[i].prefix) > len(a.mounts[j].prefix) })
	if opts.Gatherer != nil {
		a.metrics = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{}))
	}
	a.fs = &fasthttp.Server{
		Handler:               a.Handler,
		Name:                  "edgeauth-admin",
		NoDefaultServerHeader: true,
		ReadTimeout:           DefaultHeaderTimeout,
		WriteTimeout:          DefaultWriteTimeout,
		IdleTimeout:           DefaultIdleTimeout,
		CloseOnShutdown:       true,
		Logger:                fasthttpLogger{opts.Logger},
	}
	return a, nil
}

// Handler serves the admin endpoints; exported for in-process tests.
func (a *Admin) Handler(ctx *fasthttp.RequestCtx) {
	path := string(ctx.Path())
	switch path {
	case "/healthz":
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.SetBodyString("ok\n")
		return
	case "/readyz":
		ctx.SetContentType("text/plain; charset=utf-8")
		if a.opts.Ready != nil && !a.opts.Ready() {
			ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
			ctx.SetBodyString("not ready\n")
			return
		}
		ctx.SetBodyString("ready\n")
		return
	case "/metrics":
		if a.metrics != nil {
			a.metrics(ctx)
			return
		}
	}
	for _, m := range a.mounts {
		if strings.HasPrefix(path, m.prefix) {
			m.h(ctx)
			return
		}
	}
	ctx.Error("not found\n", fasthttp.StatusNotFound)
}

// ListenAndServe listens on AdminOptions.Listen.
func (a *Admin) ListenAndServe() error {
	ln, err := net.Listen("tcp", a.opts.Listen)
	if err != nil {
		return fmt.Errorf("proxy: admin listen: %w", err)
	}
	return a.Serve(ln)
}

// Serve serves ln until Shutdown.
func (a *Admin) Serve(ln net.Listener) error {
	if err := a.fs.Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("proxy: admin serve: %w", err)
	}
	return nil
}

// Shutdown stops the admin listener.
func (a *Admin) Shutdown(ctx context.Context) error {
	if err := a.fs.ShutdownWithContext(ctx); err != nil {
		return fmt.Errorf("proxy: admin shutdown: %w", err)
	}
	return nil
}
