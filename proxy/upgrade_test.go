package proxy

import (
	"bufio"
	"context"
	"errors"
	"github.com/edgeauth/edgeauth/internal/wstest"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

const wsHandshake = "GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

// wsDial opens a WebSocket through the proxy and returns the connection and
// a reader positioned after the 101 head.
func wsDial(t *testing.T, addr string) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	c, br, head := wstest.Dial(t, addr, "/chat")
	if !strings.HasPrefix(head, "HTTP/1.1 101") {
		t.Fatalf("handshake response:\n%s", head)
	}
	return c, br, head
}

func wsRoundTrip(t *testing.T, c net.Conn, br *bufio.Reader, msg string) error {
	t.Helper()
	mask := [4]byte{1, 2, 3, 4}
	frame := []byte{0x81, 0x80 | byte(len(msg)), 1, 2, 3, 4}
	for i := range len(msg) {
		frame = append(frame, msg[i]^mask[i%4])
	}
	if _, err := c.Write(frame); err != nil {
		return err
	}
	got := make([]byte, 2+len(msg))
	if _, err := io.ReadFull(br, got); err != nil {
		return err
	}
	if string(got[2:]) != msg {
		t.Fatalf("echo %q, want %q", got[2:], msg)
	}
	return nil
}

// waitClosed reads until the proxy closes c; it fails if that takes longer
// than within.
func waitClosed(t *testing.T, c net.Conn, br *bufio.Reader, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(within))
	_, err := io.Copy(io.Discard, br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v", within)
	}
	return time.Since(start)
}

func TestUpgradeHeadAndEarlyBytes(t *testing.T) {
	t.Parallel()
	h := startProxy(t, Options{}, RoutesConfig{Routes: []RouteOptions{{Name: "ws", Upstreams: []string{wstest.Start(t, []byte("\x81\x02hi")).URL}}}})
	_, br, head := wsDial(t, h.addr)
	for _, want := range []string{"Upgrade: websocket", "Connection: Upgrade", "Sec-Websocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "X-Request-Id: "} {
		if !strings.Contains(head, want) {
			t.Errorf("101 head lacks %q:\n%s", want, head)
		}
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "\x81\x02hi" {
		t.Fatalf("greeting frame %q (%v)", got, err)
	}
}

// TestUpgradeRefusedIsHTTP guards against request smuggling through a
// refused upgrade: if the proxy piped raw bytes after a non-101 answer, the
// client's next request on the same connection would reach the upstream
// directly, skipping routing, the reserved prefix and every middleware.
func TestUpgradeRefusedIsHTTP(t *testing.T) {
	t.Parallel()
	var hits counter
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
		hits.inc()
		ctx.Response.Header.Set("Connection", "X-Up-Hop")
		ctx.Response.Header.Set("X-Up-Hop", "1")
		ctx.Response.Header.Set("Keep-Alive", "timeout=5")
		ctx.Error("websocket not here", fasthttp.StatusForbidden)
	})
	h := startProxy(t, Options{}, RoutesConfig{
		Routes:   []RouteOptions{{Name: "r", Upstreams: []string{up}}},
		Reserved: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("reserved") },
	})
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	if _, err := io.WriteString(c, wsHandshake); err != nil {
		t.Fatal(err)
	}
	var resp fasthttp.Response
	if err := resp.Read(br); err != nil {
		t.Fatalf("read refused upgrade: %v", err)
	}
	if resp.StatusCode() != fasthttp.StatusForbidden || string(resp.Body()) != "websocket not here" {
		t.Fatalf("got %d %q", resp.StatusCode(), resp.Body())
	}
	if len(resp.Header.Peek("X-Request-Id")) == 0 {
		t.Errorf("refused upgrade answered without the proxy's request id:\n%s", resp.Header.Header())
	}
	for _, k := range []string{"X-Up-Hop", "Keep-Alive", "Upgrade"} {
		if len(resp.Header.Peek(k)) > 0 {
			t.Errorf("hop-by-hop %s passed through:\n%s", k, resp.Header.Header())
		}
	}
	// Same connection: the proxy must still be the one parsing requests.
	if _, err := io.WriteString(c, "GET /.edgeauth/x HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp.Reset()
	if err := resp.Read(br); err != nil {
		t.Fatalf("second request: %v", err)
	}
	if string(resp.Body()) != "reserved" {
		t.Fatalf("second request on the connection answered %d %q, want the proxy's reserved handler", resp.StatusCode(), resp.Body())
	}
	if n := hits.get(); n != 1 {
		t.Fatalf("upstream hits = %d, want 1", n)
	}
}

// TestUpgradeRefusedStreamsBody: an upstream that ignores "Upgrade: h2c"
// and answers 200 with a large body is streamed like any response.
func TestUpgradeRefusedStreamsBody(t *testing.T) {
	t.Parallel()
	const size = 8 << 20
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetBodyStream(&zeroReader{left: size}, -1)
	})
	h := startProxy(t, Options{}, RoutesConfig{Routes: []RouteOptions{{Name: "r", Upstreams: []string{up}}}})
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /f HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
	var resp fasthttp.Response
	resp.StreamBody = true
	if err := resp.Read(bufio.NewReader(c)); err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.BodyStream())
	if resp.StatusCode() != 200 || n != size || err != nil {
		t.Fatalf("status %d, %d bytes (%v), want 200 and %d", resp.StatusCode(), n, err, size)
	}
}

// TestUpgradeIdleTimeout: a tunnel with traffic stays open past the idle
// timeout; a silent one is closed after it (default: Options.IdleTimeout).
func TestUpgradeIdleTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		opts  Options
		route time.Duration
	}{
		{"default is IdleTimeout", Options{IdleTimeout: 600 * time.Millisecond}, 0},
		{"server option", Options{UpgradeIdleTimeout: 600 * time.Millisecond}, 0},
		{"route option", Options{UpgradeIdleTimeout: time.Hour}, 600 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := startProxy(t, tc.opts, RoutesConfig{Routes: []RouteOptions{{Name: "ws", Upstreams: []string{wstest.Start(t, nil).URL}, UpgradeIdleTimeout: tc.route}}})
			c, br, _ := wsDial(t, h.addr)
			// 12 × 100ms = 1.2s of traffic, twice the idle timeout.
			for i := range 12 {
				if err := wsRoundTrip(t, c, br, "ping"); err != nil {
					t.Fatalf("round trip %d: %v", i, err)
				}
				time.Sleep(100 * time.Millisecond) // traffic pacing, not a wait for a condition
			}
			if d := waitClosed(t, c, br, 3*time.Second); d < 300*time.Millisecond {
				t.Fatalf("closed after %v of silence, before the idle timeout", d)
			}
		})
	}
}

// TestShutdownClosesUpgrades: Shutdown closes hijacked tunnels by the drain
// deadline at the latest, and does not return before they are closed.
func TestShutdownClosesUpgrades(t *testing.T) {
	t.Parallel()
	rt, err := NewRoutes(RoutesConfig{Routes: []RouteOptions{{Name: "ws", Upstreams: []string{wstest.Start(t, nil).URL}}}})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(Options{}, rt)
	if err != nil {
		t.Fatal(err)
	}
	ln := listenLocal(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	c, br, _ := wsDial(t, ln.Addr().String())
	if err := wsRoundTrip(t, c, br, "before"); err != nil {
		t.Fatal(err)
	}
	if n := srv.Tunnels(); n != 1 {
		t.Fatalf("Tunnels() = %d, want 1", n)
	}
	var done atomic.Bool
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	go func() {
		_ = srv.Shutdown(ctx)
		done.Store(true)
	}()
	waitClosed(t, c, br, 3*time.Second)
	for end := time.Now().Add(3 * time.Second); !done.Load(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("Shutdown did not return")
		}
	}
	if n := srv.Tunnels(); n != 0 {
		t.Fatalf("Tunnels() after shutdown = %d", n)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

// TestUpgradeClientGoneBefore101ClosesUpstream: when the 101 cannot be
// written (the client reset its connection while the upstream answered),
// fasthttp never hands the connection over, and the dedicated upstream
// connection must still be closed.
func TestUpgradeClientGoneBefore101ClosesUpstream(t *testing.T) {
	t.Parallel()
	ln := listenLocal(t)
	t.Cleanup(func() { ln.Close() })
	upClosed := make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		var req fasthttp.Request
		if req.Read(br) != nil {
			return
		}
		time.Sleep(300 * time.Millisecond) // the client is gone by now
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_, _ = io.Copy(io.Discard, c) // returns when the proxy closes its side
		close(upClosed)
	}()
	h := startProxy(t, Options{WriteTimeout: 500 * time.Millisecond}, RoutesConfig{Routes: []RouteOptions{{Name: "ws", Upstreams: []string{"http://" + ln.Addr().String()}}}})
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, wsHandshake); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	_ = c.(*net.TCPConn).SetLinger(0) // close with RST: the 101 write fails
	c.Close()
	select {
	case <-upClosed:
	case <-time.After(10 * time.Second):
		t.Fatal("upstream connection still open 10s after the client vanished")
	}
}
