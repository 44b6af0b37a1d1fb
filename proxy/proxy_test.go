package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// listenLocal returns a loopback listener on a free port.
func listenLocal(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// startUpstream serves h on loopback and returns its base URL.
func startUpstream(t testing.TB, h fasthttp.RequestHandler, configure ...func(*fasthttp.Server)) string {
	t.Helper()
	ln := listenLocal(t)
	s := &fasthttp.Server{Handler: h, StreamRequestBody: true, MaxRequestBodySize: 1 << 40}
	for _, c := range configure {
		c(s)
	}
	go s.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { _ = s.Shutdown() })
	return "http://" + ln.Addr().String()
}

// echoHandler answers with the request it saw, one header per line.
func echoHandler(ctx *fasthttp.RequestCtx) {
	var b strings.Builder
	b.WriteString(string(ctx.Method()) + " " + string(ctx.RequestURI()) + "\n")
	b.WriteString("Host: " + string(ctx.Request.Header.Host()) + "\n")
	for k, v := range ctx.Request.Header.All() {
		b.WriteString(string(k) + ": " + string(v) + "\n")
	}
	ctx.Response.Header.Set("X-Upstream", "echo")
	ctx.SetBodyString(b.String())
}

type harness struct {
	srv  *Server
	addr string
}

func startProxy(t testing.TB, opts Options, cfg RoutesConfig) *harness {
	t.Helper()
	rt, err := NewRoutes(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(opts, rt)
	if err != nil {
		t.Fatal(err)
	}
	ln := listenLocal(t)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	})
	return &harness{srv: srv, addr: ln.Addr().String()}
}

// raw sends a literal request on a fresh TCP connection and returns
// everything the proxy answers until it closes or a response is complete.
func raw(t testing.TB, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(c)); err != nil {
		t.Fatalf("read response: %v", err)
	}
	return string(resp.Header.Header()) + string(resp.Body())
}

func status(t testing.TB, s string) string {
	t.Helper()
	line, _, _ := strings.Cut(s, "\r\n")
	return line
}

func mustPrefix(t testing.TB, s string) netip.Prefix {
	t.Helper()
	p, err := netip.ParsePrefix(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// counter counts hits on an upstream.
type counter struct {
	mu sync.Mutex
	n  int
}

func (c *counter) inc() { c.mu.Lock(); c.n++; c.mu.Unlock() }
func (c *counter) get() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func get(t testing.TB, c *fasthttp.Client, url string, hdr ...string) (*fasthttp.Response, string) {
	t.Helper()
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.SetRequestURI(url)
	for i := 0; i+1 < len(hdr); i += 2 {
		if strings.EqualFold(hdr[i], "Host") {
			req.UseHostHeader = true
			req.Header.SetHost(hdr[i+1])
			continue
		}
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp := &fasthttp.Response{}
	if err := c.DoTimeout(req, resp, 10*time.Second); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp, string(resp.Body())
}
