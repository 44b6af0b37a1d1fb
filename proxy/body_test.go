package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestResponseBodyBufferedOrStreamed: bodies up to maxBufferedBody are read
// whole, longer or unsized ones stream; either way the client gets every
// byte and the upstream connection is reused.
func TestResponseBodyBufferedOrStreamed(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
		n, _ := strconv.Atoi(string(ctx.QueryArgs().Peek("n")))
		body := bytes.Repeat([]byte("x"), n)
		if ctx.QueryArgs().Has("chunked") {
			ctx.SetBodyStream(bytes.NewReader(body), -1)
			return
		}
		ctx.SetBody(body)
	})
	h := startProxy(t, Options{}, RoutesConfig{Routes: []RouteOptions{{Name: "app", Upstreams: []string{up}}}})
	c := &fasthttp.Client{}
	for _, q := range []string{"n=0", "n=64", "n=" + fmt.Sprint(maxBufferedBody), "n=" + fmt.Sprint(maxBufferedBody+1), "n=1000000", "n=64&chunked", "n=100000&chunked"} {
		for range 3 {
			resp, body := get(t, c, "http://"+h.addr+"/?"+q)
			n, _ := strconv.Atoi(strings.TrimPrefix(strings.SplitN(q, "&", 2)[0], "n="))
			if resp.StatusCode() != 200 || len(body) != n || strings.Trim(body, "x") != "" {
				t.Fatalf("%s: status %d, %d body bytes, want 200 and %d", q, resp.StatusCode(), len(body), n)
			}
		}
	}
	if n := h.srv.Routes().routes[0].fwd.ups[0].conns.Load(); n != 1 {
		t.Errorf("upstream connections opened: %d, want 1 (keep-alive reuse)", n)
	}
}

// TestTruncatedSmallBodyIs502: an upstream that announces a small body and
// closes early gets the client a 502 with the request id, not a short
// response that looks complete.
func TestTruncatedSmallBodyIs502(t *testing.T) {
	t.Parallel()
	ln := listenLocal(t)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				br := bufio.NewReader(conn)
				var req fasthttp.Request
				if req.Read(br) != nil {
					return
				}
				_, _ = io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: text/plain\r\n\r\nonly ten b")
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	h := startProxy(t, Options{}, RoutesConfig{Routes: []RouteOptions{{Name: "app", Upstreams: []string{"http://" + ln.Addr().String()}, ReadTimeout: 2 * time.Second}}})
	out := raw(t, h.addr, "GET / HTTP/1.1\r\nHost: a\r\nAccept: application/json\r\n\r\n")
	if got := status(t, out); got != "HTTP/1.1 502 Bad Gateway" {
		t.Fatalf("status %q, want 502:\n%s", got, out)
	}
	if !strings.Contains(out, `"error":"upstream_error"`) || strings.Contains(out, "only ten b") {
		t.Errorf("body should be the JSON error, not the partial upstream body:\n%s", out)
	}
}

// TestCoarseClockDue: deadline refreshes are judged by the coarse clock for
// long timeouts and by the real one for short ones or without a clock.
func TestCoarseClockDue(t *testing.T) {
	t.Parallel()
	c := newCoarseClock()
	now := time.Now().UnixNano()
	long := 60 * time.Second
	c.now.Store(now)
	if c.due(now, long) {
		t.Error("due right after a refresh")
	}
	c.now.Store(now + int64(long/refreshDivisor) + 1)
	if !c.due(now, long) {
		t.Error("not due after an eighth of the timeout on the coarse clock")
	}
	// A short timeout ignores the (here stale) coarse time.
	c.now.Store(0)
	short := minCoarseTimeout / 2
	if !c.due(time.Now().Add(-short).UnixNano(), short) {
		t.Error("short timeout not due by the real clock")
	}
	var nilClock *coarseClock
	if !nilClock.due(time.Now().Add(-long).UnixNano(), long) || nilClock.due(time.Now().UnixNano(), long) {
		t.Error("nil clock does not follow the real clock")
	}
	c.start()
	defer c.stop()
	before := time.Now().UnixNano()
	deadline := time.Now().Add(5 * time.Second)
	for c.nanos() < before {
		if time.Now().After(deadline) {
			t.Fatal("coarse clock did not tick")
		}
		time.Sleep(clockTick / 2)
	}
}

// TestIdleConnAfterPause: a deadline that expired while the process was
// paused, with the coarse clock stale, is moved and the I/O retried; an
// expiry seen with a fresh clock is still an error.
func TestIdleConnAfterPause(t *testing.T) {
	t.Parallel()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := newCoarseClock()
	ic := &idleConn{Conn: a, clock: c, read: time.Minute, write: time.Minute}
	past := time.Now().Add(-2 * time.Minute)
	_ = a.SetDeadline(past.Add(time.Minute)) // expired during the "pause"
	ic.readSet, ic.writeSet = past.UnixNano(), past.UnixNano()
	c.now.Store(past.UnixNano() + 1) // the coarse clock stopped with it
	go func() {
		buf := make([]byte, 5)
		if _, err := io.ReadFull(b, buf); err == nil {
			_, _ = b.Write([]byte("pong"))
		}
	}()
	if _, err := ic.Write([]byte("hello")); err != nil {
		t.Fatalf("write after pause: %v", err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(ic, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("read after pause: %q, %v", buf, err)
	}

	// Fresh clock, deadline really passed: the error stands.
	c.now.Store(time.Now().UnixNano())
	ic.readSet = time.Now().UnixNano()
	_ = a.SetReadDeadline(time.Now().Add(-time.Second))
	if _, err := ic.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past a real deadline: %v, want deadline exceeded", err)
	}
}
