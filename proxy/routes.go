package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Route defaults, applied where a RouteOptions field is zero.
const (
	DefaultConnectTimeout = 5 * time.Second
	DefaultUpstreamRead   = 30 * time.Second
	DefaultUpstreamWrite  = 30 * time.Second
	DefaultUpstreamIdle   = 90 * time.Second
	DefaultMaxConns       = 512
	DefaultFailTimeout    = 10 * time.Second
)

// Host header modes for RouteOptions.HostHeader.
const (
	HostPreserve = "preserve"
	HostUpstream = "upstream"
)

// RouteOptions describes one route. cmd/ fills it from the YAML config.
type RouteOptions struct {
	// Name identifies the route in logs and metrics; required, unique.
	Name string
	// Host: exact, "*.example.com" (one label) or ""/"*" for any host.
	Host string
	// PathPrefix: longest segment-aware prefix wins; "" means "/".
	PathPrefix string
	// Upstreams: one or more "http://host:port" or "https://host:port" base
	// URLs without path; several are balanced round robin with passive health.
	Upstreams []string
	// HostHeader sent upstream: "" or "preserve" keeps the client's authority,
	// "upstream" uses the upstream address, anything else is sent literally.
	HostHeader string
	// ConnectTimeout (zero: 5s); ReadTimeout bounds each read from the
	// upstream, so it is the longest wait for the response head (then 504)
	// and the longest pause inside a streamed response body (zero: 30s);
	// WriteTimeout bounds each write of the request to the upstream (zero:
	// 30s); IdleTimeout for pooled keep-alive connections (zero: 90s).
	// None of them caps a whole transfer: a slow 1 GiB body that keeps
	// moving is never cut off.
	ConnectTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// MaxConns per upstream address (zero: 512). Size it to the peak
	// concurrency: a pool that is too small makes requests wait, not dial.
	MaxConns int
	// MaxBodyBytes caps the request body (zero: Options.MaxBodyBytes).
	MaxBodyBytes int
	// UpgradeIdleTimeout overrides Options.UpgradeIdleTimeout for this
	// route's upgraded connections (zero: the server's).
	UpgradeIdleTimeout time.Duration
	// FailTimeout is how long an address that failed to connect is skipped
	// (zero: 10s).
	FailTimeout time.Duration
}

// WrapFunc puts the caller's pipeline in front of a route's forwarder. It
// runs once per route per build; an error fails the build.
type WrapFunc func(route RouteOptions, forward fasthttp.RequestHandler) (fasthttp.RequestHandler, error)

// RoutesConfig is everything that changes on reload.
type RoutesConfig struct {
	Routes []RouteOptions
	// DefaultRoute names the route for unknown hosts; "" answers them 404.
	DefaultRoute string
	// Reserved serves /.edgeauth/*; nil answers 404. Never forwarded.
	Reserved fasthttp.RequestHandler
	// Wrap is optional; nil forwards directly.
	Wrap WrapFunc
	// TrustedProxies are peers whose X-Forwarded-*/Forwarded/X-Request-Id
	// are kept and appended to; everyone else's are replaced.
	TrustedProxies []netip.Prefix
	// Metrics may be nil.
	Metrics *Metrics
	// Logger may be nil (discard).
	Logger *slog.Logger
}

// Routes is one compiled, immutable configuration: table, handlers and
// upstream pools. Server.Swap installs it; the old one closes its pools once
// its in-flight requests are done.
type Routes struct {
	table    *Table
	routes   []*route
	reserved fasthttp.RequestHandler
	trusted  []netip.Prefix

	inflight  atomic.Int64
	retired   atomic.Bool
	closeOnce sync.Once
}

type route struct {
	opts    RouteOptions
	handler fasthttp.RequestHandler
	fwd     *forwarder
	metrics *routeMetrics
}

// NewRoutes validates cfg and builds the table, the upstream pools and the
// wrapped handlers. Every problem found is returned, joined.
func NewRoutes(cfg RoutesConfig) (*Routes, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rt := &Routes{reserved: cfg.Reserved, trusted: cfg.TrustedProxies}
	var errs []error
	entries := make([]TableEntry, len(cfg.Routes))
	names := map[string]int{}
	def := -1
	for i, ro := range cfg.Routes {
		entries[i] = TableEntry{Host: ro.Host, PathPrefix: ro.PathPrefix}
		if ro.Name == "" {
			errs = append(errs, fmt.Errorf("%w: route %d: name is required", ErrBadRoute, i))
		} else if j, dup := names[ro.Name]; dup {
			errs = append(errs, fmt.Errorf("%w: route %d: name %q already used by route %d", ErrBadRoute, i, ro.Name, j))
		}
		names[ro.Name] = i
		if ro.Name == cfg.DefaultRoute && cfg.DefaultRoute != "" {
			def = i
		}
		fwd, err := newForwarder(ro, rt, cfg.Metrics.forRoute(ro.Name), log)
		if err != nil {
			errs = append(errs, fmt.Errorf("route %q: %w", ro.Name, err))
			continue
		}
		r := &route{opts: fwd.opts, fwd: fwd, handler: fwd.serve, metrics: fwd.metrics}
		if cfg.Wrap != nil {
			h, err := cfg.Wrap(fwd.opts, fwd.serve)
			if err != nil {
				errs = append(errs, fmt.Errorf("route %q: wrap: %w", ro.Name, err))
				continue
			}
			r.handler = h
		}
		rt.routes = append(rt.routes, r)
	}
	if cfg.DefaultRoute != "" && def < 0 {
		errs = append(errs, fmt.Errorf("%w: default route %q is not defined", ErrBadRoute, cfg.DefaultRoute))
	}
	if len(errs) == 0 {
		t, err := CompileTable(entries, def)
		if err != nil {
			errs = append(errs, err)
		}
		rt.table = t
	}
	if len(errs) > 0 {
		rt.close()
		return nil, errors.Join(errs...)
	}
	return rt, nil
}

// UpstreamConnsOpened returns how many upstream TCP connections this
// configuration has opened, for connection-reuse checks.
func (rt *Routes) UpstreamConnsOpened() uint64 {
	var n uint64
	for _, r := range rt.routes {
		for _, u := range r.fwd.ups {
			n += u.conns.Load()
		}
	}
	return n
}

// useClock makes rt's upstream connections judge deadline refreshes by c.
// The server calls it before publishing rt, so no request sees the change.
func (rt *Routes) useClock(c *coarseClock) {
	for _, r := range rt.routes {
		if r.fwd.clock != c { // installed already: Swap of the serving routes
			r.fwd.clock = c
		}
	}
}

func (rt *Routes) acquire() { rt.inflight.Add(1) }

func (rt *Routes) release() {
	if rt.inflight.Add(-1) == 0 && rt.retired.Load() {
		rt.close()
	}
}

// retire marks rt replaced; its pools close when the last request using it
// finishes. A request that loaded rt just before the swap may still dial
// after close: closing only drops idle connections, so that is harmless.
func (rt *Routes) retire() {
	rt.retired.Store(true)
	if rt.inflight.Load() == 0 {
		rt.close()
	}
}

func (rt *Routes) close() {
	rt.closeOnce.Do(func() {
		for _, r := range rt.routes {
			for _, u := range r.fwd.ups {
				u.hc.CloseIdleConnections()
			}
		}
	})
}

func (rt *Routes) isTrusted(ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	for _, p := range rt.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// parseUpstream turns "http://host:port" into a dial address.
func parseUpstream(raw string) (addr string, isTLS bool, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", false, fmt.Errorf("%w: upstream %q: %w", ErrBadRoute, raw, err)
	}
	switch u.Scheme {
	case "http":
	case "https":
		isTLS = true
	default:
		return "", false, fmt.Errorf("%w: upstream %q: unsupported scheme %q", ErrBadRoute, raw, u.Scheme)
	}
	if u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", false, fmt.Errorf("%w: upstream %q: want scheme://host[:port] only", ErrBadRoute, raw)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "80"
		if isTLS {
			port = "443"
		}
	}
	if strings.ContainsAny(host, " /") || host == "" {
		return "", false, fmt.Errorf("%w: upstream %q: bad host", ErrBadRoute, raw)
	}
	return net.JoinHostPort(host, port), isTLS, nil
}
