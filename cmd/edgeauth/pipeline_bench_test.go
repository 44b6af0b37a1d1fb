package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/edgeauth/edgeauth/bench"
	"github.com/edgeauth/edgeauth/config"
	"github.com/edgeauth/edgeauth/proxy"
)

// BenchmarkPipeline measures a small GET through everything edgeauth puts
// in front of an upstream — server, routing, the auth pipeline of a route,
// forwarding — in process, so a CPU profile shows where edgeauth's own time
// goes (go test -bench Pipeline -cpuprofile ...). The client side is an
// in-memory listener; the upstream is real loopback TCP.
func BenchmarkPipeline(b *testing.B) {
	up := benchUpstream(b)
	// The references first: the bare forwarder, and the same with
	// edgeauth's fasthttp settings (streamed bodies, deadlines, buffer).
	for _, ref := range []struct {
		name string
		opts bench.RefOptions
	}{
		{"refproxy", bench.RefOptions{}},
		{"refproxy-ea", bench.RefOptions{Stream: true, Timeouts: true, ReadBufferSize: 16 << 10}},
	} {
		b.Run(ref.name, func(b *testing.B) {
			ln := fasthttputil.NewInmemoryListener()
			s := bench.NewRefServer(up, ref.opts)
			go s.Serve(ln) //nolint:errcheck // Shutdown ends it
			b.Cleanup(func() { _ = s.Shutdown() })
			benchGet(b, &fasthttp.HostClient{Addr: "app.test", Dial: func(string) (net.Conn, error) { return ln.Dial() }})
		})
	}
	for _, tc := range []struct{ name, route string }{
		{"noauth", "auth: none"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			doc := "log: {level: warn}\nroutes:\n  - {name: app, path: /, upstream: \"http://" + up + "\", " + tc.route + "}\n"
			cfg, err := config.Parse([]byte(doc), "bench.yaml", func(string) (string, bool) { return "", false })
			if err != nil {
				b.Fatal(err)
			}
			benchGet(b, benchEdgeauth(b, cfg))
		})
	}
}

// benchGet sends small GETs from parallel clients, as a load generator
// with several connections would.
func benchGet(b *testing.B, c *fasthttp.HostClient) {
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("http://app.test/reports")
		for pb.Next() {
			if err := c.Do(req, resp); err != nil || resp.StatusCode() != 200 {
				b.Errorf("%v %d", err, resp.StatusCode())
				return
			}
		}
	})
}

func benchUpstream(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	body := make([]byte, 64)
	s := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBody(body) }}
	go s.Serve(ln) //nolint:errcheck // Shutdown ends it
	b.Cleanup(func() { _ = s.Shutdown() })
	return ln.Addr().String()
}

func benchEdgeauth(b *testing.B, cfg *config.Config) *fasthttp.HostClient {
	logger := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
	reg := prometheus.NewRegistry()
	metrics, err := proxy.NewMetrics(reg)
	if err != nil {
		b.Fatal(err)
	}
	svc, err := newServices(context.Background(), cfg, logger, reg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(svc.Close)
	routes, err := svc.buildRoutes(cfg, metrics)
	if err != nil {
		b.Fatal(err)
	}
	opts := serverOptions(cfg, logger, metrics, svc)
	opts.DisableAccessLog = true
	srv, err := proxy.NewServer(opts, routes)
	if err != nil {
		b.Fatal(err)
	}
	svc.srv.Store(srv)
	ln := fasthttputil.NewInmemoryListener()
	go srv.Serve(ln) //nolint:errcheck // Shutdown ends it
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return &fasthttp.HostClient{Addr: "app.test", Dial: func(string) (net.Conn, error) { return ln.Dial() }}
}
