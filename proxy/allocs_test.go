//go:build !race

// The race detector makes sync.Pool drop items on purpose, so allocation
// guards only run in normal builds (go test without -race).

package proxy

import (
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// fasthttpStreamAllocs is fasthttp's own cost of a streamed upstream
// response (transport.RoundTrip, client.go in v1.78.0: the clientStreamBody
// and its three closures). Streaming is required for 1 GiB downloads and
// the public API cannot stream only large bodies, so this is the floor.
const fasthttpStreamAllocs = 4

// TestForwardAllocs: a keep-alive GET through the proxy allocates nothing
// beyond fasthttp's streaming floor — client, proxy and upstream together.
func TestForwardAllocs(t *testing.T) {
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("hello") })
	rt, err := NewRoutes(RoutesConfig{Routes: []RouteOptions{{Name: "r", Host: "a.test", Upstreams: []string{up}}}})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(Options{DisableAccessLog: true}, rt)
	if err != nil {
		t.Fatal(err)
	}
	ln := fasthttputil.NewInmemoryListener()
	go srv.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { _ = srv.fs.Shutdown() })
	c := &fasthttp.HostClient{Addr: "a.test", Dial: func(string) (net.Conn, error) { return ln.Dial() }, ReadTimeout: 5 * time.Second}
	var req fasthttp.Request
	var resp fasthttp.Response
	req.SetRequestURI("http://a.test/x")
	do := func() {
		if err := c.Do(&req, &resp); err != nil || resp.StatusCode() != 200 {
			t.Fatalf("%v %d", err, resp.StatusCode())
		}
	}
	for range 100 { // warm pools and buffers
		do()
	}
	if n := testing.AllocsPerRun(500, do); n > fasthttpStreamAllocs {
		t.Fatalf("allocs per proxied GET = %v, want <= %d (fasthttp's streaming floor)", n, fasthttpStreamAllocs)
	}
}

// TestHeaderReceivedAllocs: the body-limit hook parses the target to pick
// the route from the normalised path without allocating.
func TestHeaderReceivedAllocs(t *testing.T) {
	rt, err := NewRoutes(RoutesConfig{Routes: []RouteOptions{
		{Name: "small", PathPrefix: "/small", Upstreams: []string{"http://127.0.0.1:1"}, MaxBodyBytes: 10},
		{Name: "big", Upstreams: []string{"http://127.0.0.1:1"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(Options{}, rt)
	if err != nil {
		t.Fatal(err)
	}
	var h fasthttp.RequestHeader
	h.SetRequestURI("/big/%2e%2e/small?x=1")
	h.SetHost("a.test")
	if got := srv.headerReceived(&h).MaxRequestBodySize; got != 10 {
		t.Fatalf("limit = %d, want the /small route's 10", got)
	}
	if n := testing.AllocsPerRun(1000, func() { srv.headerReceived(&h) }); n != 0 {
		t.Fatalf("headerReceived allocs = %v, want 0", n)
	}
}
