package proxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/valyala/fasthttp"
)

// exchange is the per-request record the server shares with the forwarder
// (under exchangeKey) without allocating: it is pooled, and it carries the
// body wrappers, the upstream response buffer and what the access line
// needs. When a streamed response is still to be written after the handler
// returns, the exchange is handed to its bodyOut, which logs and returns it
// to the pool once the body has been sent.
type exchange struct {
	srv   *Server
	route *route
	start time.Time

	// logOn: an access line will be written, so the upstream's latency
	// is measured.
	logOn bool
	// sent: which of fieldNames the client sent; peer: its address.
	sent fieldMask
	peer netip.Addr
	// reqID is the request id, as sent upstream and back.
	reqID    []byte
	upstream time.Duration
	addr     string

	// body holds a small upstream response body read whole (see
	// bufferBody); its array is reused across requests.
	body []byte

	in     bodyIn
	out    bodyOut
	upResp *fasthttp.Response // the forwarder reads the upstream's answer here

	handedOff bool
	// Copies for a deferred access line: the request may be reset before
	// the body stream is closed.
	log     bool
	status  int
	bytesIn int64
	method  []byte
	path    []byte
}

type exchangeKey struct{}

func newExchange() any {
	ex := &exchange{upResp: new(fasthttp.Response)}
	ex.upResp.Header.SetNoDefaultContentType(true)
	return ex
}

func (ex *exchange) begin(s *Server, start time.Time, logOn bool) {
	ex.srv, ex.route, ex.start, ex.logOn = s, nil, start, logOn
	ex.sent, ex.peer, ex.reqID = 0, netip.Addr{}, ex.reqID[:0]
	ex.upstream, ex.addr = 0, ""
	ex.body = ex.body[:0]
	ex.in = bodyIn{}
	ex.out = bodyOut{ex: ex}
	ex.handedOff, ex.log = false, false
}

// exchangeOf returns the server's exchange for ctx, or a fresh one when the
// forwarder runs outside Server (it never does in production).
func exchangeOf(ctx *fasthttp.RequestCtx) *exchange {
	if ex, ok := ctx.UserValue(exchangeKey{}).(*exchange); ok {
		return ex
	}
	ex := newExchange().(*exchange)
	ex.begin(nil, time.Now(), false)
	ex.sent, _ = scanFields(ctx.Request.Header.RawHeaders())
	ex.peer = remoteAddr(ctx)
	return ex
}

// maxBufferedBody is the largest upstream response body read whole before
// it is sent on rather than streamed. Streaming costs per response a
// wrapper, deadline bookkeeping on each read and a deferred access line;
// for the small answers that make up most API and page traffic, one read
// from the upstream connection's buffer and one copy are cheaper. Beyond
// this size, and when the length is not known up front (chunked), bodies
// stream, so memory per request stays bounded by this.
const maxBufferedBody = 16 << 10

// bufferBody reports whether a response body of contentLength (negative:
// unknown) is read whole.
func bufferBody(contentLength int) bool {
	return contentLength >= 0 && contentLength <= maxBufferedBody
}

// readBody reads exactly n bytes of body into ex.body, then the end of the
// stream, so the client pools the connection.
func (ex *exchange) readBody(body io.Reader, n int) error {
	if cap(ex.body) < n {
		ex.body = make([]byte, n, max(n, 4<<10))
	}
	ex.body = ex.body[:n]
	if _, err := io.ReadFull(body, ex.body); err != nil {
		return fmt.Errorf("proxy: read upstream body: %w", err)
	}
	// A fixed-length stream reports its end on the read after the last
	// byte at the latest; the client releases the connection only then.
	if _, err := body.Read(ex.body[n:]); err != io.EOF {
		return fmt.Errorf("proxy: read upstream body: no end after its Content-Length %d: %v", n, err)
	}
	return nil
}

// clock is the server's coarse clock (nil, the real clock, outside a
// Server).
func (ex *exchange) clock() *coarseClock {
	if ex.srv == nil {
		return nil
	}
	return ex.srv.clock
}

// wrapIn puts bodyIn in front of a streamed request body.
func (ex *exchange) wrapIn(ctx *fasthttp.RequestCtx, limit int, timeout time.Duration) {
	req := &ctx.Request
	ex.in = bodyIn{ctx: ctx, r: req.BodyStream(), limit: int64(limit), clock: ex.clock(), timeout: timeout, lastSet: ex.start.UnixNano()}
	// The server still drains and releases its own stream afterwards.
	req.SetBodyStream(&ex.in, req.Header.ContentLength())
}

// installOut makes body the response body, behind bodyOut. conn, if not
// nil, is closed with the body. now is the caller's latest clock reading
// (unix nanos), taken just before, so the hot path reads the clock once less.
func (ex *exchange) installOut(ctx *fasthttp.RequestCtx, body io.Reader, contentLength int, conn net.Conn, now int64) {
	var timeout time.Duration
	if ex.srv != nil {
		timeout = ex.srv.opts.WriteTimeout
	}
	// The server arms WriteTimeout itself just before writing; the first
	// refresh is due an eighth of it later.
	ex.out = bodyOut{ex: ex, ctx: ctx, r: body, clock: ex.clock(), timeout: timeout, lastSet: now, conn: conn, active: true}
	ctx.Response.SetBodyStream(&ex.out, contentLength)
}

// bytesOut is what the response carries besides bodyOut's own count.
func bytesOut(resp *fasthttp.Response) int64 {
	if resp.IsBodyStream() {
		return int64(max(resp.Header.ContentLength(), 0))
	}
	return int64(len(resp.Body()))
}

// finishDeferred runs when a handed-off response body has been sent.
func (ex *exchange) finishDeferred() {
	s := ex.srv
	if ex.log {
		name := "-"
		if ex.route != nil {
			name = ex.route.opts.Name
		}
		s.logAccess(context.Background(), name, string(ex.reqID), string(ex.method), string(ex.path), ex.status,
			time.Since(ex.start), ex.upstream, ex.bytesIn, ex.out.n)
	}
	s.exPool.Put(ex)
}

func (s *Server) logAccess(ctx context.Context, route, id, method, path string, status int, d, up time.Duration, in, out int64) {
	s.log.LogAttrs(ctx, slog.LevelInfo, "access",
		slog.String("request_id", id),
		slog.String("route", route),
		slog.String("method", method),
		slog.String("path", path),
		slog.Int("status", status),
		slog.Duration("duration", d),
		slog.Duration("upstream_latency", up),
		slog.Int64("bytes_in", in),
		slog.Int64("bytes_out", out),
	)
}
