package proxy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeauth/edgeauth/proxy/errpage"
	"github.com/valyala/fasthttp"
)

// Server defaults, applied where an Options field is zero.
const (
	DefaultListen         = "127.0.0.1:8080"
	DefaultHeaderTimeout  = 10 * time.Second
	DefaultReadTimeout    = 60 * time.Second
	DefaultWriteTimeout   = 60 * time.Second
	DefaultIdleTimeout    = 90 * time.Second
	DefaultMaxHeaderBytes = 16 << 10
	DefaultMaxBodyBytes   = 10 << 20
	DefaultConcurrency    = 256 * 1024
)

// ReservedPrefix is the proxy's own path space; it is never forwarded.
const ReservedPrefix = "/.edgeauth/"

// Options configures the listener. cmd/ fills it from the YAML config.
type Options struct {
	// Listen address (zero: 127.0.0.1:8080), used by ListenAndServe.
	Listen string
	// TLS enables HTTPS with reloading certificate files (nil: plain HTTP).
	TLS *TLSOptions
	// HeaderTimeout bounds the time from a request's first byte to the end
	// of its head: the slowloris bound (zero: 10s).
	HeaderTimeout time.Duration
	// ReadTimeout bounds each wait for request body bytes (zero: 60s): the
	// first one covers what fasthttp reads with the head (up to 8 KiB of
	// body), then every read of the stream restarts it. An upload of any
	// size passes as long as it never stalls this long; a stalled one gets
	// 408. Deadlines move at most every ReadTimeout/8, so the effective
	// bound lies between 7/8 and all of it.
	ReadTimeout time.Duration
	// WriteTimeout bounds each wait to hand response bytes to the client
	// when the body is streamed from the upstream (every proxied response),
	// and the whole write of a response the proxy builds itself (error
	// pages, reserved handlers) (zero: 60s). A download of any size passes
	// as long as the client keeps reading.
	WriteTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long (zero: 90s).
	IdleTimeout time.Duration
	// UpgradeIdleTimeout closes an upgraded connection (WebSocket and other
	// Upgrade protocols) when no byte has passed in either direction for
	// this long (zero: IdleTimeout). RouteOptions.UpgradeIdleTimeout
	// overrides it per route.
	UpgradeIdleTimeout time.Duration
	// MaxHeaderBytes caps the request head; larger gets 431 (zero: 16 KiB).
	MaxHeaderBytes int
	// MaxBodyBytes is the body cap for routes that set none; larger gets 413
	// (zero: 10 MiB).
	MaxBodyBytes int
	// Concurrency caps concurrent connections (zero: 262144).
	Concurrency int
	// Logger receives errors and, unless DisableAccessLog, one access line
	// per request (nil: discard).
	Logger *slog.Logger
	// DisableAccessLog turns access lines off.
	DisableAccessLog bool
	// Metrics may be nil.
	Metrics *Metrics
	// OnClientHello observes every TLS ClientHello and returns a tag kept
	// with the connection (e.g. its JA4 fingerprint), read per request with
	// ConnTag, so the work is done once per connection, not per request.
	// It runs on the handshake path and must be fast. Nil: none.
	OnClientHello func(*tls.ClientHelloInfo) string
}

// Server is the main listener. Build with NewServer; serve with Serve or
// ListenAndServe; replace the configuration with Swap; stop with Shutdown.
//
// Authority rule (STANDARDS §1.15): the route, the Host header seen by the
// pipeline and the Host sent upstream all come from TargetHost — the
// absolute-form target's authority when there is one (RFC 9112 §3.2.2),
// else the Host header. The server rewrites the Host header to match before
// any handler runs, so ctx.Host() and Header.Host() cannot disagree.
type Server struct {
	opts   Options
	fs     *fasthttp.Server
	routes atomic.Pointer[Routes]
	log    *slog.Logger

	draining atomic.Bool
	idPrefix [8]byte
	idKey    uint64
	idCount  atomic.Uint64

	clock  *coarseClock
	certs  *certReloader
	hellos sync.Map // raw net.Conn → *connInfo
	exPool sync.Pool

	tunnels tunnelSet
}

// NewServer validates opts and returns a server serving routes.
func NewServer(opts Options, routes *Routes) (*Server, error) {
	if routes == nil {
		return nil, errors.New("proxy: routes are required")
	}
	if opts.Listen == "" {
		opts.Listen = DefaultListen
	}
	setDefault(&opts.HeaderTimeout, DefaultHeaderTimeout)
	setDefault(&opts.ReadTimeout, DefaultReadTimeout)
	setDefault(&opts.WriteTimeout, DefaultWriteTimeout)
	setDefault(&opts.IdleTimeout, DefaultIdleTimeout)
	setDefault(&opts.UpgradeIdleTimeout, opts.IdleTimeout)
	if opts.MaxHeaderBytes <= 0 {
		opts.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = DefaultConcurrency
	}
	s := &Server{opts: opts, log: opts.Logger, clock: newCoarseClock()}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.exPool.New = newExchange
	// Request ids: a random per-process prefix plus a keyed bijective mix of
	// a counter — unique within the process, unguessable enough for a
	// correlation id, and no crypto/rand per request.
	var seed [16]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("proxy: seed request ids: %w", err)
	}
	copy(s.idPrefix[:], seed[:8])
	s.idKey = binary.LittleEndian.Uint64(seed[8:])
	if opts.TLS != nil {
		c, err := newCertReloader(*opts.TLS, s.log)
		if err != nil {
			return nil, err
		}
		s.certs = c
	}
	routes.useClock(s.clock)
	s.routes.Store(routes)
	s.fs = &fasthttp.Server{
		Handler:               s.handle,
		ErrorHandler:          s.handleError,
		HeaderReceived:        s.headerReceived,
		ConnState:             s.connState,
		Name:                  "edgeauth",
		NoDefaultServerHeader: true,
		Concurrency:           opts.Concurrency,
		ReadBufferSize:        opts.MaxHeaderBytes,
		ReadTimeout:           opts.HeaderTimeout,
		WriteTimeout:          opts.WriteTimeout,
		IdleTimeout:           opts.IdleTimeout,
		MaxRequestBodySize:    opts.MaxBodyBytes,
		StreamRequestBody:     true,
		// A proxy forwards bodies verbatim: no multipart pre-parse that
		// buffers uploads to temp files and re-encodes them.
		DisablePreParseMultipartForm: true,
		CloseOnShutdown:              true,
		SecureErrorLogMessage:        true,
		NoDefaultContentType:         true,
		// handle reads the clock itself; fasthttp's copy would be one more
		// clock read per request, unused.
		LazyRequestTime: true,
		Logger:          fasthttpLogger{s.log},
	}
	return s, nil
}

// Swap installs a new configuration without dropping connections. Requests
// already running finish on the old one, whose upstream pools are closed
// when the last of them is done.
func (s *Server) Swap(routes *Routes) {
	if routes == nil {
		return
	}
	routes.useClock(s.clock)
	old := s.routes.Swap(routes)
	s.opts.Metrics.ObserveReload(true)
	if old != nil && old != routes {
		old.retire()
	}
}

// Tunnels returns the number of open upgraded connections.
func (s *Server) Tunnels() int { return s.tunnels.len() }

// Routes returns the configuration now serving.
func (s *Server) Routes() *Routes { return s.routes.Load() }

// Ready reports whether the server has a configuration and is not draining.
func (s *Server) Ready() bool { return s.routes.Load() != nil && !s.draining.Load() }

// ListenAndServe listens on Options.Listen and serves until Shutdown.
func (s *Server) ListenAndServe() error {
	ln, err := net.Listen("tcp", s.opts.Listen)
	if err != nil {
		return fmt.Errorf("proxy: listen: %w", err)
	}
	return s.Serve(ln)
}

// Serve serves ln (plain TCP; TLS is added here when Options.TLS is set)
// until Shutdown. It returns nil after a graceful shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.clock.start()
	if s.certs != nil {
		s.certs.start()
		ln = tls.NewListener(ln, s.tlsConfig())
	}
	if err := s.fs.Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("proxy: serve: %w", err)
	}
	return nil
}

// Shutdown stops accepting, lets in-flight requests finish until ctx ends,
// then closes upstream pools. /readyz reports not ready from the start.
// Upgraded connections (WebSockets) may run until ctx ends; those still
// open then are closed, and Shutdown returns once they are gone. Only
// requests cut off by ctx make it return an error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	err := s.fs.ShutdownWithContext(ctx)
	if n := s.tunnels.drain(ctx); n > 0 {
		s.log.LogAttrs(ctx, slog.LevelInfo, "closed upgraded connections at the drain deadline", slog.Int("count", n))
	}
	if s.certs != nil {
		s.certs.stop()
	}
	s.clock.stop()
	if rt := s.routes.Load(); rt != nil {
		rt.retire()
	}
	if err != nil {
		return fmt.Errorf("proxy: shutdown: %w", err)
	}
	return nil
}

var hdrRequestID = []byte(errpage.RequestIDHeader)

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	// With LazyRequestTime this is the request's one clock read; the auth
	// steps get the same time from ctx.Time (reqstate.Now).
	start := ctx.Time()
	m := s.opts.Metrics
	if m != nil {
		m.inFlight.Inc()
		defer m.inFlight.Dec()
	}
	rt := s.routes.Load()
	rt.acquire()
	defer rt.release()

	h := &ctx.Request.Header
	// Request smuggling (RFC 9112 §6.3): fasthttp lets Transfer-Encoding win
	// over Content-Length and unfolds obs-fold; either may be read
	// differently by the upstream, so neither is ever forwarded.
	sent, err := scanFields(h.RawHeaders())
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "rejected ambiguous request framing",
			slog.String("error", err.Error()), slog.String("peer", remoteAddr(ctx).String()))
		errpage.Write(ctx, fasthttp.StatusBadRequest, "bad_request", "The request was malformed.")
		ctx.SetConnectionClose()
		return
	}
	ex := s.exPool.Get().(*exchange)
	ex.begin(s, start, !s.opts.DisableAccessLog && s.log.Enabled(ctx, slog.LevelInfo))
	ex.sent, ex.peer = sent, remoteAddr(ctx)
	s.setRequestID(ctx, ex, rt.isTrusted(ex.peer))

	host := TargetHost(h.RequestURI(), h.Host())
	if string(host) != string(h.Host()) {
		h.SetHostBytes(host)
		host = h.Host()
	}
	path := ctx.Path() // normalised: "..", "//" and %-escapes resolved
	var r *route
	reserved := isReserved(path)
	if !reserved {
		if idx := rt.table.Match(host, path); idx >= 0 {
			r = rt.routes[idx]
		}
	}
	ex.route = r
	limit := s.opts.MaxBodyBytes
	if r != nil && r.opts.MaxBodyBytes > 0 {
		limit = r.opts.MaxBodyBytes
	}
	if ctx.Request.IsBodyStream() {
		// Counts the body, limits chunked bodies (fasthttp does not) and
		// turns ReadTimeout into a per-read bound.
		ex.wrapIn(ctx, limit, s.opts.ReadTimeout)
	}
	switch {
	case reserved:
		if rt.reserved != nil {
			rt.reserved(ctx)
		} else {
			errpage.Write(ctx, fasthttp.StatusNotFound, "not_found", "There is nothing at this address.")
		}
	case r == nil:
		errpage.Write(ctx, fasthttp.StatusNotFound, "not_found", "There is nothing at this address.")
	case h.ContentLength() > limit:
		// The head hook chose the limit from the same normalised path, so
		// this only repeats its decision for bodies fasthttp let through.
		errpage.Write(ctx, fasthttp.StatusRequestEntityTooLarge, "body_too_large", "The request body is too large.")
		ctx.SetConnectionClose()
	default:
		// Left in place afterwards: fasthttp drops user values when it
		// resets the request, and the next request sets its own before
		// any forwarder looks.
		ctx.SetUserValue(exchangeKey{}, ex)
		r.handler(ctx)
	}
	if ex.in.n > ex.in.limit {
		// A read hit the limit; whoever read it may not have said so.
		if !ctx.Hijacked() && ctx.Response.StatusCode() != fasthttp.StatusRequestEntityTooLarge {
			s.releaseOut(ex)
			errpage.Write(ctx, fasthttp.StatusRequestEntityTooLarge, "body_too_large", "The request body is too large.")
		}
		ctx.SetConnectionClose()
	}
	ctx.Response.Header.SetCanonical(hdrRequestID, ex.reqID)
	s.finish(ctx, r, ex)
}

// releaseOut drops a response body the forwarder installed.
func (s *Server) releaseOut(ex *exchange) {
	if ex.out.active && !ex.out.closed {
		_ = ex.out.CloseWithError(errBodyTooLarge)
	}
}

func isReserved(path []byte) bool {
	p := ReservedPrefix[:len(ReservedPrefix)-1] // "/.edgeauth"
	return len(path) >= len(p) && string(path[:len(p)]) == p && (len(path) == len(p) || path[len(p)] == '/')
}

// finish records metrics and the access line, now or, for a streamed
// response still to be written, when its body has been sent.
func (s *Server) finish(ctx *fasthttp.RequestCtx, r *route, ex *exchange) {
	d := time.Since(ex.start)
	status := ctx.Response.StatusCode()
	name := "-"
	if r != nil {
		name = r.opts.Name
		r.metrics.observe(status, d.Seconds())
	}
	logOn := ex.logOn
	if ex.out.active && !ex.out.closed {
		if logOn {
			ex.log = true
			ex.status = status
			ex.bytesIn = ex.in.n
			ex.method = append(ex.method[:0], ctx.Method()...)
			ex.path = append(ex.path[:0], ctx.Path()...)
		}
		ex.handedOff = true
		return
	}
	if logOn {
		out := ex.out.n
		if !ex.out.active {
			out = bytesOut(&ctx.Response)
		}
		s.logAccess(ctx, name, string(ex.reqID), string(ctx.Method()), string(ctx.Path()),
			status, d, ex.upstream, ex.in.n, out)
	}
	s.exPool.Put(ex)
}

// setRequestID keeps a well-formed id from a trusted proxy, else makes one;
// either way the id ends up in ex.reqID and in the request.
func (s *Server) setRequestID(ctx *fasthttp.RequestCtx, ex *exchange, trusted bool) {
	h := &ctx.Request.Header
	if trusted && ex.sent&bitRequestID != 0 {
		if id := h.PeekCanonical(hdrRequestID); validRequestID(id) {
			ex.reqID = append(ex.reqID[:0], id...)
			return
		}
	}
	ex.reqID = s.appendRequestID(ex.reqID[:0])
	if ex.sent&bitRequestID != 0 {
		h.DelBytes(hdrRequestID)
	}
	h.SetCanonical(hdrRequestID, ex.reqID)
}

const hexDigits = "0123456789abcdef"

func (s *Server) appendRequestID(dst []byte) []byte {
	x := mix64(s.idCount.Add(1) ^ s.idKey)
	for _, c := range s.idPrefix {
		dst = append(dst, hexDigits[c>>4], hexDigits[c&0xf])
	}
	for i := 60; i >= 0; i -= 4 {
		dst = append(dst, hexDigits[(x>>uint(i))&0xf])
	}
	return dst
}

// mix64 is the splitmix64 finaliser: a bijection, so distinct counters give
// distinct ids.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// validRequestID accepts 1–128 bytes of [A-Za-z0-9._:-]: enough for every
// common id format, nothing that could inject into logs or headers.
func validRequestID(b []byte) bool {
	if len(b) == 0 || len(b) > 128 {
		return false
	}
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

// headerReceived picks the body limit and timeouts before the body is read.
// The route comes from the normalised path, exactly as in handle, so a body
// sent to "/big/../small" gets /small's limit whatever its framing.
func (s *Server) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	cfg := fasthttp.RequestConfig{WriteTimeout: s.opts.WriteTimeout, MaxRequestBodySize: s.opts.MaxBodyBytes}
	if h.ContentLength() != 0 {
		// A body follows: ReadTimeout bounds the wait for its first bytes.
		// Without one fasthttp reads nothing more, and moving the deadline
		// would cost a clock read and a timer update for nothing.
		cfg.ReadTimeout = s.opts.ReadTimeout
	}
	rt := s.routes.Load()
	if rt == nil {
		return cfg
	}
	uri := h.RequestURI()
	u := fasthttp.AcquireURI()
	// The same parse fasthttp applies to the request right after this hook.
	if err := u.Parse(nil, uri); err == nil && !isReserved(u.Path()) {
		if idx := rt.table.Match(TargetHost(uri, h.Host()), u.Path()); idx >= 0 {
			if n := rt.routes[idx].opts.MaxBodyBytes; n > 0 {
				cfg.MaxRequestBodySize = n
			}
		}
	}
	fasthttp.ReleaseURI(u)
	return cfg
}

// handleError answers requests fasthttp could not parse; they never reach
// a route.
func (s *Server) handleError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	status, code, msg := fasthttp.StatusBadRequest, "bad_request", "The request was malformed."
	switch {
	case errors.As(err, &small):
		status, code, msg = fasthttp.StatusRequestHeaderFieldsTooLarge, "header_too_large", "The request headers are too large."
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		status, code, msg = fasthttp.StatusRequestEntityTooLarge, "body_too_large", "The request body is too large."
	case isTimeout(err):
		status, code, msg = fasthttp.StatusRequestTimeout, "request_timeout", "The request took too long to arrive."
	}
	s.log.LogAttrs(context.Background(), slog.LevelDebug, "rejected request",
		slog.Int("status", status), slog.String("error", err.Error()))
	errpage.Write(ctx, status, code, msg)
}

func (s *Server) connState(c net.Conn, st fasthttp.ConnState) {
	if st == fasthttp.StateClosed || st == fasthttp.StateHijacked {
		if tc, ok := c.(*tls.Conn); ok {
			s.hellos.Delete(tc.NetConn())
		}
	}
}

// fasthttpLogger routes fasthttp's own messages into slog at debug level.
type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	f.l.LogAttrs(context.Background(), slog.LevelDebug, "fasthttp", slog.String("msg", fmt.Sprintf(format, args...)))
}
