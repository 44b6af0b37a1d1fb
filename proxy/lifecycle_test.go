package proxy

import (
	"context"
	"errors"
	"github.com/edgeauth/edgeauth/internal/wstest"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

func TestWebSocketRoundTrip(t *testing.T) {
	t.Parallel()
	h := startProxy(t, Options{}, RoutesConfig{Routes: []RouteOptions{{Name: "ws", Upstreams: []string{wstest.Start(t, nil).URL}}}})
	c, br, head := wsDial(t, h.addr)
	if !strings.Contains(head, wstest.SampleAccept) {
		t.Fatalf("handshake response:\n%s", head)
	}
	for _, msg := range []string{"hello", "second frame"} {
		if _, err := c.Write(wstest.MaskedText(msg)); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 2+len(msg))
		if _, err := io.ReadFull(br, got); err != nil {
			t.Fatal(err)
		}
		if string(got[2:]) != msg {
			t.Fatalf("echo %q, want %q", got[2:], msg)
		}
	}
}

// TestSwapUnderLoad: 2,000 requests over ~2s while the configuration is
// swapped 20 times; none may fail, and retired pools are closed.
func TestSwapUnderLoad(t *testing.T) {
	t.Parallel()
	a := startUpstream(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("a") })
	b := startUpstream(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("b") })
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	build := func(i int) *Routes {
		up := a
		if i%2 == 1 {
			up = b
		}
		rt, err := NewRoutes(RoutesConfig{Routes: []RouteOptions{{Name: "r", Upstreams: []string{up}}}, Metrics: m})
		if err != nil {
			t.Fatal(err)
		}
		return rt
	}
	h := startProxy(t, Options{Metrics: m}, RoutesConfig{Routes: []RouteOptions{{Name: "r", Upstreams: []string{a}}}})
	client := &fasthttp.Client{MaxConnsPerHost: 16}
	var failed, done atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(10 * time.Second)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 250 && time.Now().Before(deadline); i++ {
				var req fasthttp.Request
				var resp fasthttp.Response
				req.SetRequestURI("http://" + h.addr + "/")
				if err := client.DoTimeout(&req, &resp, 5*time.Second); err != nil || resp.StatusCode() != 200 {
					failed.Add(1)
				}
				done.Add(1)
				if i%25 == 0 && w == 0 {
					time.Sleep(time.Millisecond) // pace the load over the swaps
				}
			}
		}()
	}
	var retired []*Routes
	for i := range 20 {
		retired = append(retired, h.srv.Routes())
		h.srv.Swap(build(i))
		time.Sleep(100 * time.Millisecond) // spread the swaps over ~2s of load
	}
	wg.Wait()
	if failed.Load() != 0 || done.Load() != 2000 {
		t.Fatalf("failed %d of %d requests", failed.Load(), done.Load())
	}
	for i, rt := range retired {
		if !rt.retired.Load() {
			t.Errorf("config %d not retired", i)
		}
	}
}

// TestGracefulDrain: an in-flight slow request completes during Shutdown;
// new connections are refused; /readyz goes unready at once.
func TestGracefulDrain(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
		entered <- struct{}{}
		<-release
		ctx.SetBodyString("finished")
	})
	rt, err := NewRoutes(RoutesConfig{Routes: []RouteOptions{{Name: "r", Upstreams: []string{up}}}})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(Options{}, rt)
	if err != nil {
		t.Fatal(err)
	}
	ln := listenLocal(t)
	addr := ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	got := make(chan string, 1)
	go func() {
		var resp fasthttp.Response
		var req fasthttp.Request
		req.SetRequestURI("http://" + addr + "/")
		if err := fasthttp.DoTimeout(&req, &resp, 10*time.Second); err != nil {
			got <- err.Error()
			return
		}
		got <- string(resp.Body())
	}()
	<-entered
	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutdown <- srv.Shutdown(ctx)
	}()
	// Poll until the listener is closed, with a deadline.
	for end := time.Now().Add(5 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(end) {
			t.Fatal("listener still accepting during shutdown")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if srv.Ready() {
		t.Error("Ready() during drain")
	}
	close(release)
	if body := <-got; body != "finished" {
		t.Fatalf("in-flight request: %q", body)
	}
	if err := <-shutdown; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("serve: %v", err)
	}
}

func TestShutdownBounded(t *testing.T) {
	t.Parallel()
	block := make(chan struct{})
	defer close(block)
	entered := make(chan struct{}, 1)
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) { entered <- struct{}{}; <-block })
	rt, _ := NewRoutes(RoutesConfig{Routes: []RouteOptions{{Name: "r", Upstreams: []string{up}, ReadTimeout: time.Minute}}})
	srv, _ := NewServer(Options{}, rt)
	ln := listenLocal(t)
	go srv.Serve(ln) //nolint:errcheck
	go func() {
		var resp fasthttp.Response
		var req fasthttp.Request
		req.SetRequestURI("http://" + ln.Addr().String() + "/")
		_ = fasthttp.DoTimeout(&req, &resp, 10*time.Second)
	}()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("shutdown took %v", d)
	}
}

// TestConnectionReuse: under keep-alive load the proxy opens fewer than
// one upstream connection per 100 requests.
func TestConnectionReuse(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") })
	h := startProxy(t, Options{}, RoutesConfig{Routes: []RouteOptions{{Name: "r", Upstreams: []string{up}, MaxConns: 64}}})
	client := &fasthttp.Client{MaxConnsPerHost: 32}
	const workers, per = 16, 250
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var req fasthttp.Request
			var resp fasthttp.Response
			req.SetRequestURI("http://" + h.addr + "/")
			for range per {
				if err := client.DoTimeout(&req, &resp, 5*time.Second); err != nil || resp.StatusCode() != 200 {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d failed", failed.Load())
	}
	opened := h.srv.Routes().UpstreamConnsOpened()
	ratio := float64(opened) / float64(workers*per)
	t.Logf("upstream connections opened: %d for %d requests (%.4f per request)", opened, workers*per, ratio)
	if ratio >= 0.01 {
		t.Fatalf("connections per request %.4f, want < 0.01", ratio)
	}
}

func TestAdminEndpoints(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	dead := listenLocal(t)
	deadURL := "http://" + dead.Addr().String()
	dead.Close()
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {})
	h := startProxy(t, Options{Metrics: m}, RoutesConfig{Metrics: m, Routes: []RouteOptions{
		{Name: "ok", Host: "ok.test", Upstreams: []string{up}}, {Name: "down", Host: "down.test", Upstreams: []string{deadURL}},
	}})
	raw(t, h.addr, "GET / HTTP/1.1\r\nHost: ok.test\r\n\r\n")
	raw(t, h.addr, "GET / HTTP/1.1\r\nHost: down.test\r\n\r\n")
	m.ObserveReload(false)

	ready := true
	var mu sync.Mutex
	adm, err := NewAdmin(AdminOptions{Gatherer: reg, Ready: func() bool { mu.Lock(); defer mu.Unlock(); return ready && h.srv.Ready() },
		Handlers: map[string]fasthttp.RequestHandler{"/admin/": func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("mounted") }}})
	if err != nil {
		t.Fatal(err)
	}
	ln := listenLocal(t)
	go adm.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { _ = adm.Shutdown(context.Background()) })
	base := "http://" + ln.Addr().String()
	c := &fasthttp.Client{}
	if resp, body := get(t, c, base+"/healthz"); resp.StatusCode() != 200 || body != "ok\n" {
		t.Fatalf("healthz %d %q", resp.StatusCode(), body)
	}
	if resp, _ := get(t, c, base+"/readyz"); resp.StatusCode() != 200 {
		t.Fatalf("readyz %d", resp.StatusCode())
	}
	mu.Lock()
	ready = false
	mu.Unlock()
	if resp, _ := get(t, c, base+"/readyz"); resp.StatusCode() != 503 {
		t.Fatalf("readyz when not ready %d", resp.StatusCode())
	}
	if _, body := get(t, c, base+"/admin/sessions"); body != "mounted" {
		t.Fatalf("mount: %q", body)
	}
	_, metrics := get(t, c, base+"/metrics")
	for _, want := range []string{
		`edgeauth_requests_total{code="2xx",route="ok"} 1`,
		`edgeauth_requests_total{code="5xx",route="down"} 1`,
		`edgeauth_request_duration_seconds_bucket{code="2xx",route="ok",le="+Inf"} 1`,
		`edgeauth_upstream_errors_total{kind="connect",route="down"} 1`,
		`edgeauth_requests_in_flight 0`,
		`edgeauth_reloads_total{result="failure"} 1`,
		`edgeauth_upstream_connections_opened_total{route="ok"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if _, err := NewAdmin(AdminOptions{Handlers: map[string]fasthttp.RequestHandler{"/metrics": func(*fasthttp.RequestCtx) {}}}); err == nil {
		t.Error("mount shadowing /metrics accepted")
	}
}

func TestNewRoutesRejectsBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  RoutesConfig
	}{
		{"bad scheme", RoutesConfig{Routes: []RouteOptions{{Name: "a", Upstreams: []string{"htp://x"}}}}},
		{"path in upstream", RoutesConfig{Routes: []RouteOptions{{Name: "a", Upstreams: []string{"http://x/app"}}}}},
		{"no upstream", RoutesConfig{Routes: []RouteOptions{{Name: "a"}}}},
		{"no name", RoutesConfig{Routes: []RouteOptions{{Upstreams: []string{"http://x"}}}}},
		{"dup name", RoutesConfig{Routes: []RouteOptions{{Name: "a", Host: "a", Upstreams: []string{"http://x"}}, {Name: "a", Host: "b", Upstreams: []string{"http://x"}}}}},
		{"unknown default", RoutesConfig{DefaultRoute: "zz", Routes: []RouteOptions{{Name: "a", Upstreams: []string{"http://x"}}}}},
		{"wrap fails", RoutesConfig{Routes: []RouteOptions{{Name: "a", Upstreams: []string{"http://x"}}}, Wrap: func(RouteOptions, fasthttp.RequestHandler) (fasthttp.RequestHandler, error) {
			return nil, errors.New("policy: bad rule")
		}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := NewRoutes(tc.cfg); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestWrapSeesRoute(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBody(ctx.Request.Header.Peek("X-Route")) })
	h := startProxy(t, Options{}, RoutesConfig{
		Routes: []RouteOptions{{Name: "wiki", Upstreams: []string{up}}},
		Wrap: func(ro RouteOptions, next fasthttp.RequestHandler) (fasthttp.RequestHandler, error) {
			return func(ctx *fasthttp.RequestCtx) { ctx.Request.Header.Set("X-Route", ro.Name); next(ctx) }, nil
		},
	})
	if out := raw(t, h.addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); !strings.HasSuffix(out, "\r\n\r\nwiki") {
		t.Fatalf("wrap did not see route:\n%s", out)
	}
}
