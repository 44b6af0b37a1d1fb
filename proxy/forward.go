package proxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeauth/edgeauth/proxy/errpage"
	"github.com/valyala/fasthttp"
)

// upstream is one address of a route with its own keep-alive pool.
var schemeHTTP, schemeHTTPS = []byte("http"), []byte("https")

type upstream struct {
	addr      string
	hc        *fasthttp.HostClient
	downUntil atomic.Int64 // unix nanos; passive health
	conns     atomic.Uint64
}

type forwarder struct {
	opts        RouteOptions
	ups         []*upstream
	rr          atomic.Uint32
	hostMode    int
	hostLiteral []byte
	isTLS       bool
	routes      *Routes      // for the trusted-proxy list
	clock       *coarseClock // set before the routes serve (useClock); nil: real clock
	metrics     *routeMetrics
	log         *slog.Logger
}

const (
	hostModePreserve = iota
	hostModeUpstream
	hostModeLiteral
)

// dialError marks failures to connect, the only failures after which a
// request can safely go to another address: nothing was sent.
type dialError struct{ err error }

func (e *dialError) Error() string { return "proxy: connect upstream: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

func newForwarder(ro RouteOptions, rt *Routes, rm *routeMetrics, log *slog.Logger) (*forwarder, error) {
	if len(ro.Upstreams) == 0 {
		return nil, fmt.Errorf("%w: no upstreams", ErrBadRoute)
	}
	setDefault(&ro.ConnectTimeout, DefaultConnectTimeout)
	setDefault(&ro.ReadTimeout, DefaultUpstreamRead)
	setDefault(&ro.WriteTimeout, DefaultUpstreamWrite)
	setDefault(&ro.IdleTimeout, DefaultUpstreamIdle)
	setDefault(&ro.FailTimeout, DefaultFailTimeout)
	if ro.MaxConns <= 0 {
		ro.MaxConns = DefaultMaxConns
	}
	if ro.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("%w: negative max body bytes", ErrBadRoute)
	}
	f := &forwarder{opts: ro, routes: rt, metrics: rm, log: log}
	switch ro.HostHeader {
	case "", HostPreserve:
		f.hostMode = hostModePreserve
	case HostUpstream:
		f.hostMode = hostModeUpstream
	default:
		if err := checkHostName(stripPort(ro.HostHeader)); err != nil {
			return nil, fmt.Errorf("%w: host_header %q: %w", ErrBadRoute, ro.HostHeader, err)
		}
		f.hostMode = hostModeLiteral
		f.hostLiteral = []byte(ro.HostHeader)
	}
	for i, raw := range ro.Upstreams {
		addr, isTLS, err := parseUpstream(raw)
		if err != nil {
			return nil, err
		}
		if i > 0 && isTLS != f.isTLS {
			return nil, fmt.Errorf("%w: upstreams mix http and https", ErrBadRoute)
		}
		f.isTLS = isTLS
		u := &upstream{addr: addr}
		connectTimeout, readTimeout, writeTimeout := ro.ConnectTimeout, ro.ReadTimeout, ro.WriteTimeout
		u.hc = &fasthttp.HostClient{
			Addr:  addr,
			IsTLS: isTLS,
			Dial: func(a string) (net.Conn, error) {
				c, err := fasthttp.DialTimeout(a, connectTimeout)
				if err != nil {
					return nil, &dialError{err: err}
				}
				u.conns.Add(1)
				if rm != nil {
					rm.upstreamConns.Inc()
				}
				return &idleConn{Conn: c, clock: f.clock, read: readTimeout, write: writeTimeout}, nil
			},
			MaxConns:            ro.MaxConns,
			MaxIdleConnDuration: ro.IdleTimeout,
			// ReadTimeout and WriteTimeout are applied per read and per
			// write by idleConn, not to the whole exchange as HostClient
			// would: a long transfer is bounded by its pauses, not its size.
			// Stream responses: a 1 GiB download must not be buffered.
			StreamResponseBody: true,
			// The upstream must see the normalised path routing used, or
			// "/public/../admin" would be matched as /admin and served as
			// whatever the upstream makes of the raw form.
			DisableHeaderNamesNormalizing: false,
			DisablePathNormalizing:        false,
			NoDefaultUserAgentHeader:      true,
			// One retry covers a pooled keep-alive connection the upstream
			// closed while idle; only for requests without a streamed body.
			MaxIdemponentCallAttempts: 2,
			RetryIfErr: func(req *fasthttp.Request, attempts int, err error) (bool, bool) {
				return false, !req.IsBodyStream() && isIdempotent(req) && !isTimeout(err)
			},
		}
		if isTLS {
			u.hc.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		f.ups = append(f.ups, u)
	}
	return f, nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

func stripPort(h string) string {
	if i := strings.IndexByte(h, ':'); i >= 0 && (len(h) == 0 || h[0] != '[') {
		return h[:i]
	}
	return h
}

func isIdempotent(req *fasthttp.Request) bool {
	return req.Header.IsGet() || req.Header.IsHead() || req.Header.IsOptions() || req.Header.IsPut() || req.Header.IsDelete()
}

// pick returns the next address round robin, skipping addresses that failed
// recently. If all did, it tries one anyway: better a 502 after a real
// attempt than refusing to probe a recovered upstream.
func (f *forwarder) pick(now int64) *upstream {
	n := int(f.rr.Add(1))
	for i := range f.ups {
		u := f.ups[(n+i)%len(f.ups)]
		if u.downUntil.Load() <= now {
			return u
		}
	}
	return f.ups[n%len(f.ups)]
}

var (
	hdrXForwardedFor   = []byte("X-Forwarded-For")
	hdrXForwardedProto = []byte("X-Forwarded-Proto")
	hdrXForwardedHost  = []byte("X-Forwarded-Host")
	hdrForwarded       = []byte("Forwarded")
	hdrUpgrade         = []byte("Upgrade")
	hdrConnection      = []byte("Connection")
	valUpgrade         = []byte("Upgrade")
	valHTTP            = []byte("http")
	valHTTPS           = []byte("https")

	// RFC 9110 §7.6.1 hop-by-hop fields plus the legacy ones intermediaries
	// still see. Transfer-Encoding is left to fasthttp, which re-frames the
	// body itself for the next hop.
	hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer", "Proxy-Authorization", "Proxy-Authenticate", "Upgrade"}
	// Client-IP claims nobody but our own forwarding headers may carry
	// upstream (STANDARDS §1.14); always dropped.
	spoofableHeaders = []string{"X-Real-Ip", "True-Client-Ip", "Cf-Connecting-Ip", "X-Forwarded-Port", "X-Forwarded-Uri", "X-Client-Ip"}

	// dropRequest is hopHeaders then spoofableHeaders, in the order they are
	// deleted (fasthttp's Del moves the last field into the hole, so the
	// order shows in the forwarded request); dropRequestCanon holds the same
	// names as fasthttp stores them, for lookups that skip normalising.
	dropRequest = append(append([]string(nil), hopHeaders...), spoofableHeaders...)

	// fieldNames are the request fields whose presence scanFields records:
	// dropRequest, then the forwarding fields prepare replaces, then the
	// request id. Only the client sets any of them; nothing in edgeauth's
	// pipeline writes these names before prepare.
	fieldNames   = append(append([]string(nil), dropRequest...), "X-Forwarded-For", "Forwarded", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Request-Id")
	bitXFF       = fieldMask(1) << len(dropRequest)
	bitForwarded = bitXFF << 1
	bitXFP       = bitXFF << 2
	bitXFH       = bitXFF << 3
	bitRequestID = bitXFF << 4
)

// fieldMask has bit i set for fieldNames[i] (or names[i] for fieldBit).
type fieldMask uint64

var scratchPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func (f *forwarder) serve(ctx *fasthttp.RequestCtx) {
	req := &ctx.Request
	upgrade := isUpgrade(&req.Header)
	ex := exchangeOf(ctx)
	sp := scratchPool.Get().(*[]byte)
	*sp = f.prepare(ctx, ex, upgrade, (*sp)[:0])
	scratchPool.Put(sp)

	// The upstream's latency is for the access line only; without one,
	// passive health needs no better than the coarse clock.
	var start time.Time
	now := f.clock.nanos()
	if ex.logOn {
		start = time.Now()
		now = start.UnixNano()
	}
	u := f.pick(now)
	f.setHost(req, u)
	if upgrade {
		f.upgrade(ctx, u, start, ex)
		return
	}
	// The upstream's answer lands in the exchange's response, not in
	// ctx.Response: its body stream must be wrapped (byte count, per-write
	// deadline), and installing a wrapper on ctx.Response would close it.
	resp := ex.upResp
	err := u.hc.Do(req, resp)
	if isDialError(err) {
		u.downUntil.Store(time.Now().Add(f.opts.FailTimeout).UnixNano())
		if alt := f.pick(time.Now().UnixNano()); alt != u {
			f.metrics.upstreamError(errKindConnect)
			u = alt
			f.setHost(req, u)
			err = u.hc.Do(req, resp)
		}
	}
	if ex.logOn {
		ex.upstream = time.Since(start)
	}
	ex.addr = u.addr
	bs := resp.BodyStream()
	buffered := err == nil && bs != nil && bufferBody(resp.Header.ContentLength())
	if buffered {
		err = ex.readBody(bs, resp.Header.ContentLength())
		_ = resp.CloseBodyStream() // pools the connection if all was read
	}
	if err != nil {
		f.fail(ctx, u, err)
		return
	}
	resp.Header.CopyTo(&ctx.Response.Header)
	switch {
	case buffered:
		ctx.Response.SetBody(ex.body)
	case bs != nil:
		ex.installOut(ctx, bs, resp.Header.ContentLength(), nil, f.clock.nanos())
	default:
		ctx.Response.SetBodyRaw(resp.Body())
	}
	cleanResponse(&ctx.Response.Header)
}

func (f *forwarder) fail(ctx *fasthttp.RequestCtx, u *upstream, err error) {
	kind, status, code, msg := errKindOther, fasthttp.StatusBadGateway, "upstream_error", "The application behind this address failed to answer."
	switch {
	case isDialError(err):
		u.downUntil.Store(time.Now().Add(f.opts.FailTimeout).UnixNano())
		kind, code, msg = errKindConnect, "upstream_unavailable", "The application behind this address is not reachable."
	case errors.Is(err, errBodyTooLarge):
		// The client's body passed the limit mid-stream: its fault, not
		// the upstream's.
		errpage.Write(ctx, fasthttp.StatusRequestEntityTooLarge, "body_too_large", "The request body is too large.")
		ctx.SetConnectionClose()
		return
	case errors.As(err, new(*clientBodyError)):
		status, code, msg = fasthttp.StatusBadRequest, "bad_request", "The request body could not be read."
		if isTimeout(err) {
			status, code, msg = fasthttp.StatusRequestTimeout, "request_timeout", "The request took too long to arrive."
		}
		errpage.Write(ctx, status, code, msg)
		ctx.SetConnectionClose()
		return
	case isTimeout(err):
		kind, status, code, msg = errKindTimeout, fasthttp.StatusGatewayTimeout, "upstream_timeout", "The application behind this address took too long to answer."
	}
	f.metrics.upstreamError(kind)
	f.log.LogAttrs(ctx, slog.LevelWarn, "upstream error",
		slog.String("route", f.opts.Name), slog.String("upstream", u.addr),
		slog.String("kind", errKinds[kind]), slog.String("request_id", errpage.RequestID(ctx)),
		slog.String("error", err.Error()))
	errpage.Write(ctx, status, code, msg)
}

// isDialError is errors.As for *dialError without the allocation a
// pointer target costs on every call, error or not.
func isDialError(err error) bool {
	if err == nil {
		return false
	}
	var de *dialError
	return errors.As(err, &de)
}

func isTimeout(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isUpgrade(h *fasthttp.RequestHeader) bool {
	return len(h.PeekCanonical(hdrUpgrade)) > 0 && h.ConnectionUpgrade()
}

func (f *forwarder) setHost(req *fasthttp.Request, u *upstream) {
	// Request.Write would otherwise replace Host with the URI's host.
	req.UseHostHeader = true
	// The inbound URI carries the client's scheme: https when TLS ends
	// here. HostClient refuses a request whose scheme differs from its own
	// ("can't follow redirects to a different protocol"), so every request
	// that arrived over TLS for a plain-HTTP upstream failed with 502.
	if u.hc.IsTLS {
		req.URI().SetSchemeBytes(schemeHTTPS)
	} else {
		req.URI().SetSchemeBytes(schemeHTTP)
	}
	switch f.hostMode {
	case hostModeUpstream:
		req.Header.SetHost(u.addr)
	case hostModeLiteral:
		req.Header.SetHostBytes(f.hostLiteral)
	}
}

// prepare applies header hygiene to the outbound request in place and
// returns scratch for reuse.
func (f *forwarder) prepare(ctx *fasthttp.RequestCtx, ex *exchange, upgrade bool, scratch []byte) []byte {
	h := &ctx.Request.Header
	// RFC 9110 §7.6.1: remove the fields Connection nominates. Copy the
	// tokens first: PeekAll's slices alias storage that Del rewrites.
	for _, v := range h.PeekAll(fasthttp.HeaderConnection) {
		scratch = append(scratch, v...)
		scratch = append(scratch, ',')
	}
	for tok, rest := nextToken(scratch); tok != nil; tok, rest = nextToken(rest) {
		if asciiEqualFold(tok, "upgrade") || asciiEqualFold(tok, "close") || asciiEqualFold(tok, "keep-alive") {
			continue
		}
		if isProtected(tok) {
			// "Connection: Host" or "Connection: X-Forwarded-For" must not
			// let a client strip what we set below (a known cache/ACL
			// bypass); those are replaced anyway.
			continue
		}
		h.DelBytes(tok)
	}
	var upg []byte
	if upgrade {
		// Keep the protocol name across the Del below.
		start := len(scratch)
		scratch = append(scratch, h.PeekCanonical(hdrUpgrade)...)
		upg = scratch[start:]
	}
	deleteFields(h, ex.sent)
	if upgrade {
		h.SetCanonical(hdrUpgrade, upg)
		h.SetCanonical(hdrConnection, valUpgrade)
	}
	// The server keeps its own copy of the client's Connection: close; the
	// upstream connection stays in the keep-alive pool regardless.
	h.ResetConnectionClose()

	peer, sent := ex.peer, ex.sent
	trusted := f.routes.isTrusted(peer)
	proto := valHTTP
	if ctx.IsTLS() {
		proto = valHTTPS
	}
	host := h.Host()

	// X-Forwarded-For: append when a trusted proxy sent it, else replace.
	// All field lines count (PeekAll), RFC 9110 §5.3.
	start := len(scratch)
	if trusted && sent&bitXFF != 0 {
		for _, v := range h.PeekAll(string(hdrXForwardedFor)) {
			scratch = append(scratch, v...)
			scratch = append(scratch, ", "...)
		}
	}
	scratch = appendNode(scratch, peer, false)
	if sent&bitXFF != 0 {
		// Set replaces only the first line; a second spoofed line would
		// survive.
		h.DelBytes(hdrXForwardedFor)
	}
	h.SetCanonical(hdrXForwardedFor, scratch[start:])

	// Forwarded (RFC 7239): same rule.
	start = len(scratch)
	if trusted && sent&bitForwarded != 0 {
		for _, v := range h.PeekAll(string(hdrForwarded)) {
			scratch = append(scratch, v...)
			scratch = append(scratch, ", "...)
		}
	}
	scratch = append(scratch, "for="...)
	scratch = appendNode(scratch, peer, true)
	if len(host) > 0 && isTokenOrQuotable(host) {
		scratch = append(scratch, `;host="`...)
		scratch = append(scratch, host...)
		scratch = append(scratch, '"')
	}
	scratch = append(scratch, ";proto="...)
	scratch = append(scratch, proto...)
	if sent&bitForwarded != 0 {
		h.DelBytes(hdrForwarded)
	}
	h.SetCanonical(hdrForwarded, scratch[start:])

	if !trusted || sent&bitXFP == 0 || len(h.PeekCanonical(hdrXForwardedProto)) == 0 {
		if sent&bitXFP != 0 {
			h.DelBytes(hdrXForwardedProto)
		}
		h.SetCanonical(hdrXForwardedProto, proto)
	}
	if !trusted || sent&bitXFH == 0 || len(h.PeekCanonical(hdrXForwardedHost)) == 0 {
		if sent&bitXFH != 0 {
			h.DelBytes(hdrXForwardedHost)
		}
		if len(host) > 0 {
			start = len(scratch)
			scratch = append(scratch, host...) // host aliases header storage
			h.SetCanonical(hdrXForwardedHost, scratch[start:])
		}
	}
	return scratch
}

// deleteFields removes the hop-by-hop and spoofable fields (dropRequest)
// the client sent (sent, from scanFields), calling Del only for those: a
// Del normalises its key and scans every field, and these names are almost
// never sent. Nothing in edgeauth sets them on a request, so the raw header
// block tells which are there.
func deleteFields(h *fasthttp.RequestHeader, sent fieldMask) {
	if len(h.PeekTrailerKeys()) > 0 {
		// Announced trailers: a second field section and Del side effects
		// on the announcement. Rare, so the plain way.
		for _, k := range dropRequest {
			h.Del(k)
		}
		return
	}
	for i, k := range dropRequest {
		if sent&(1<<i) != 0 {
			h.Del(k)
		}
	}
}

// fieldBit is the bit of key's index in names, or 0.
func fieldBit(key []byte, names []string) fieldMask {
	for i, n := range names {
		if len(n) == len(key) && equalFold(key, n) {
			return 1 << i
		}
	}
	return 0
}

// equalFold is ASCII case-insensitive equality; unlike asciiEqualFold, s
// need not be lower case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c, d := b[i], s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if d >= 'A' && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

func isProtected(tok []byte) bool {
	return asciiEqualFold(tok, "host") || asciiEqualFold(tok, "x-forwarded-for") || asciiEqualFold(tok, "forwarded") ||
		asciiEqualFold(tok, "x-forwarded-proto") || asciiEqualFold(tok, "x-forwarded-host") || asciiEqualFold(tok, "x-request-id") ||
		asciiEqualFold(tok, "content-length") || asciiEqualFold(tok, "transfer-encoding")
}

// isTokenOrQuotable reports whether host can go into a quoted-string
// without escaping; anything odd is left out rather than escaped.
func isTokenOrQuotable(b []byte) bool {
	for _, c := range b {
		if c < 0x21 || c == '"' || c == '\\' || c > 0x7e {
			return false
		}
	}
	return true
}

// nextToken returns the first comma-separated, trimmed, non-empty item of
// b and the rest; tok is nil when b holds no more. A plain function rather
// than an iterator: the closure an iterator needs made cleanResponse's
// stack buffer escape, one allocation per request.
func nextToken(b []byte) (tok, rest []byte) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, ',')
		var t []byte
		if i < 0 {
			t, b = b, nil
		} else {
			t, b = b[:i], b[i+1:]
		}
		for len(t) > 0 && (t[0] == ' ' || t[0] == '\t') {
			t = t[1:]
		}
		for len(t) > 0 && (t[len(t)-1] == ' ' || t[len(t)-1] == '\t') {
			t = t[:len(t)-1]
		}
		if len(t) > 0 {
			return t, b
		}
	}
	return nil, nil
}

// cleanResponse removes hop-by-hop fields from the upstream's response.
func cleanResponse(h *fasthttp.ResponseHeader) {
	var buf [256]byte
	scratch := buf[:0]
	for _, v := range h.PeekAll(fasthttp.HeaderConnection) {
		if len(scratch)+len(v)+1 > cap(scratch) {
			break
		}
		scratch = append(scratch, v...)
		scratch = append(scratch, ',')
	}
	for tok, rest := nextToken(scratch); tok != nil; tok, rest = nextToken(rest) {
		if !asciiEqualFold(tok, "close") && !asciiEqualFold(tok, "keep-alive") && !asciiEqualFold(tok, "content-length") && !asciiEqualFold(tok, "transfer-encoding") {
			h.DelBytes(tok)
		}
	}
	if len(h.PeekTrailerKeys()) > 0 {
		// Announced trailers bring a second field section and Del side
		// effects on the announcement; rare, so the plain way.
		for _, k := range hopHeaders {
			h.Del(k)
		}
	} else {
		// One pass over the fields instead of a normalising Del per name:
		// these are almost never present. All has no side effects on a
		// response header (unlike a request's, where it parses cookies).
		var present fieldMask
		for k := range h.All() {
			present |= fieldBit(k, hopHeaders)
		}
		for i, k := range hopHeaders {
			if present&(1<<i) != 0 {
				h.Del(k)
			}
		}
	}
	// The upstream closing its connection says nothing about ours.
	h.ResetConnectionClose()
}

func remoteAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	if a, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

// appendNode writes the peer address; RFC 7239 §6 wants IPv6 quoted and
// bracketed, and "unknown" when there is no IP (e.g. a Unix socket).
func appendNode(b []byte, ip netip.Addr, forwarded bool) []byte {
	switch {
	case !ip.IsValid():
		return append(b, "unknown"...)
	case forwarded && ip.Is6():
		b = append(b, `"[`...)
		b = ip.AppendTo(b)
		return append(b, `]"`...)
	default:
		return ip.AppendTo(b)
	}
}
