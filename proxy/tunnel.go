package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// idleConn bounds each read and each write of an upstream connection
// instead of a whole exchange, so a slow 1 GiB transfer that never pauses
// longer than the timeout is not cut off. Deadlines are refreshed at most
// every timeout/refreshDivisor, judged by the coarse clock. Reads and
// writes each come from one goroutine at a time (the pool hands a
// connection to one request), so the timestamps need no lock; a zero
// timeout leaves that direction alone.
type idleConn struct {
	net.Conn
	clock             *coarseClock
	read, write       time.Duration
	readSet, writeSet int64
}

func (c *idleConn) Read(p []byte) (int, error) {
	if c.read > 0 && c.clock.due(c.readSet, c.read) {
		if err := c.moveReadDeadline(); err != nil {
			return 0, err
		}
	}
	n, err := c.Conn.Read(p)
	if n == 0 && c.read > 0 && c.clock.wasStale(err) {
		// A deadline that expired while the process was paused, unseen by
		// the stale coarse clock: move it and try once more.
		if err := c.moveReadDeadline(); err != nil {
			return 0, err
		}
		n, err = c.Conn.Read(p)
	}
	return n, err
}

func (c *idleConn) Write(p []byte) (int, error) {
	if c.write > 0 && c.clock.due(c.writeSet, c.write) {
		if err := c.moveWriteDeadline(); err != nil {
			return 0, err
		}
	}
	n, err := c.Conn.Write(p)
	if n == 0 && c.write > 0 && c.clock.wasStale(err) {
		if err := c.moveWriteDeadline(); err != nil {
			return 0, err
		}
		n, err = c.Conn.Write(p)
	}
	return n, err
}

func (c *idleConn) moveReadDeadline() error {
	now := time.Now()
	if err := c.Conn.SetReadDeadline(now.Add(c.read)); err != nil {
		return err
	}
	c.readSet = now.UnixNano()
	return nil
}

func (c *idleConn) moveWriteDeadline() error {
	now := time.Now()
	if err := c.Conn.SetWriteDeadline(now.Add(c.write)); err != nil {
		return err
	}
	c.writeSet = now.UnixNano()
	return nil
}

// tunnelSet tracks upgraded (hijacked) connections so Shutdown can close
// them: fasthttp forgets a connection once it is hijacked.
type tunnelSet struct {
	mu     sync.Mutex
	m      map[*tunnel]struct{}
	closed bool
}

func (s *tunnelSet) add(t *tunnel) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.m == nil {
		s.m = make(map[*tunnel]struct{})
	}
	s.m[t] = struct{}{}
	return true
}

func (s *tunnelSet) remove(t *tunnel) {
	s.mu.Lock()
	delete(s.m, t)
	s.mu.Unlock()
}

func (s *tunnelSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// drain refuses new tunnels, lets open ones end on their own until ctx is
// done, then interrupts the rest and waits for them to unwind. It returns
// how many it had to interrupt.
func (s *tunnelSet) drain(ctx context.Context) int {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for s.len() > 0 {
		select {
		case <-ctx.Done():
			s.mu.Lock()
			n := len(s.m)
			for t := range s.m {
				t.kill()
			}
			s.mu.Unlock()
			// Interrupted copies return at once; wait for them so no
			// goroutine outlives Shutdown.
			for s.len() > 0 {
				<-tick.C
			}
			return n
		case <-tick.C:
		}
	}
	return 0
}

// tunnel is one upgraded client connection piped to its upstream.
type tunnel struct {
	client net.Conn // the hijacked connection; fasthttp closes it after us
	up     net.Conn
	upR    io.Reader // up, behind the buffer that read the 101 head
	idle   time.Duration
	last   atomic.Int64 // unix nanos of the last byte either way
	killed atomic.Bool
}

// past is a deadline that has passed: setting it interrupts blocked I/O on
// any net.Conn, including the hijacked wrapper whose Close is a no-op.
var past = time.Unix(1, 0)

func (t *tunnel) kill() {
	t.killed.Store(true)
	_ = t.client.SetDeadline(past)
	_ = t.up.SetDeadline(past)
}

// run copies both ways until either side ends, errors, or no byte has moved
// either way for t.idle; then both directions stop.
func (t *tunnel) run() {
	t.last.Store(time.Now().UnixNano())
	done := make(chan struct{})
	go func() {
		t.copy(t.up, t.client, t.client)
		t.kill()
		close(done)
	}()
	t.copy(t.client, t.upR, t.up)
	t.kill()
	<-done
	_ = t.up.Close()
}

func (t *tunnel) copy(dst net.Conn, src io.Reader, srcConn net.Conn) {
	buf := make([]byte, 32<<10)
	for !t.killed.Load() {
		// The deadline is when the tunnel as a whole goes idle, so a quiet
		// direction survives while the other one is busy.
		if err := srcConn.SetReadDeadline(time.Unix(0, t.last.Load()).Add(t.idle)); err != nil {
			return
		}
		n, err := src.Read(buf)
		if n > 0 {
			now := time.Now()
			t.last.Store(now.UnixNano())
			if dst.SetWriteDeadline(now.Add(t.idle)) != nil {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if isTimeout(err) && !t.killed.Load() && time.Since(time.Unix(0, t.last.Load())) < t.idle {
				continue // the other direction was active
			}
			return
		}
	}
}

// upgrade passes an Upgrade request (WebSocket and friends) through. The
// request goes to a dedicated upstream connection and the answer is parsed
// as HTTP: a 101 is relayed (with hygiene and the request id) and the
// client connection becomes a tracked tunnel; anything else is answered as
// a normal response and the client connection stays HTTP. Piping raw bytes
// after a refused upgrade would let the client's next request on the
// connection reach the upstream without passing through the proxy
// (request smuggling past routing and every middleware).
func (f *forwarder) upgrade(ctx *fasthttp.RequestCtx, u *upstream, start time.Time, ex *exchange) {
	d := net.Dialer{Timeout: f.opts.ConnectTimeout}
	raw, err := d.Dial("tcp", u.addr)
	if err != nil {
		f.fail(ctx, u, &dialError{err: err})
		return
	}
	u.conns.Add(1)
	if f.metrics != nil {
		f.metrics.upstreamConns.Inc()
	}
	ic := &idleConn{Conn: raw, clock: f.clock, read: f.opts.ReadTimeout, write: f.opts.WriteTimeout}
	var up net.Conn = ic
	if f.isTLS {
		up = tls.Client(ic, &tls.Config{ServerName: stripPort(u.addr), MinVersion: tls.VersionTLS12})
	}
	req := &ctx.Request
	req.Header.SetProtocol("HTTP/1.1")
	// Request.Write sends the normalised request-target routing used, and
	// the body if there is one.
	bw := bufio.NewWriter(up)
	if err := req.Write(bw); err == nil {
		err = bw.Flush()
	}
	if err != nil {
		up.Close()
		f.fail(ctx, u, err)
		return
	}
	br := bufio.NewReader(up)
	resp := ex.upResp
	resp.Reset()
	resp.StreamBody = true
	resp.SkipBody = req.Header.IsHead()
	if err := resp.Read(br); err != nil {
		up.Close()
		f.fail(ctx, u, err)
		return
	}
	if ex.logOn {
		ex.upstream = time.Since(start)
	}
	ex.addr = u.addr

	if resp.StatusCode() != fasthttp.StatusSwitchingProtocols {
		f.relay(ctx, ex, resp, up)
		return
	}
	proto := append([]byte(nil), resp.Header.PeekBytes(hdrUpgrade)...)
	resp.Header.CopyTo(&ctx.Response.Header)
	cleanResponse(&ctx.Response.Header)
	ctx.Response.Header.SetBytesKV(hdrUpgrade, proto)
	ctx.Response.Header.SetBytesKV(hdrConnection, valUpgrade)
	ctx.Response.SetStatusCode(fasthttp.StatusSwitchingProtocols)

	idle := f.opts.UpgradeIdleTimeout
	var set *tunnelSet
	if ex.srv != nil {
		set = &ex.srv.tunnels
		if idle <= 0 {
			idle = ex.srv.opts.UpgradeIdleTimeout
		}
	}
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	// The tunnel manages deadlines itself from here on.
	ic.read, ic.write = 0, 0
	log, route := f.log, f.opts.Name
	// fasthttp writes the 101 head, flushes, then hands over the connection.
	// If that write fails it never calls the hijack handler, and nothing
	// else would close the upstream connection: a guard does, once the
	// write has had its time. Whichever of the two claims it first owns it.
	var claimed atomic.Bool
	writeTimeout := DefaultWriteTimeout
	if ex.srv != nil {
		writeTimeout = ex.srv.opts.WriteTimeout
	}
	guard := time.AfterFunc(writeTimeout+time.Second, func() {
		if claimed.CompareAndSwap(false, true) {
			_ = up.Close()
			log.LogAttrs(context.Background(), slog.LevelDebug, "upgrade: 101 never reached the client; upstream connection closed", slog.String("route", route))
		}
	})
	ctx.Hijack(func(c net.Conn) {
		guard.Stop()
		if !claimed.CompareAndSwap(false, true) {
			return // the guard closed up: the 101 took longer than the write timeout
		}
		t := &tunnel{client: c, up: up, upR: br, idle: idle}
		if set != nil && !set.add(t) {
			up.Close() // shutting down
			return
		}
		t.run()
		if set != nil {
			set.remove(t)
		}
		log.LogAttrs(context.Background(), slog.LevelDebug, "tunnel closed", slog.String("route", route))
	})
}

// relay answers a refused upgrade with the upstream's response, streamed;
// the dedicated upstream connection closes with the body.
func (f *forwarder) relay(ctx *fasthttp.RequestCtx, ex *exchange, resp *fasthttp.Response, up net.Conn) {
	resp.Header.CopyTo(&ctx.Response.Header)
	cleanResponse(&ctx.Response.Header)
	if bs := resp.BodyStream(); bs != nil {
		ex.installOut(ctx, bs, resp.Header.ContentLength(), up, f.clock.nanos())
		return
	}
	up.Close()
}
