package proxy

import (
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// BenchmarkForwardSmallGET measures a keep-alive GET through the proxy to a
// loopback upstream (client → proxy over an in-memory listener).
func BenchmarkForwardSmallGET(b *testing.B) {
	up := startUpstream(b, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("hello") })
	rt, err := NewRoutes(RoutesConfig{Routes: []RouteOptions{{Name: "r", Host: "a.test", Upstreams: []string{up}}}})
	if err != nil {
		b.Fatal(err)
	}
	srv, err := NewServer(Options{DisableAccessLog: true}, rt)
	if err != nil {
		b.Fatal(err)
	}
	ln := fasthttputil.NewInmemoryListener()
	go srv.Serve(ln)        //nolint:errcheck
	defer srv.fs.Shutdown() //nolint:errcheck
	c := &fasthttp.HostClient{Addr: "a.test", Dial: func(string) (net.Conn, error) { return ln.Dial() }, ReadTimeout: 5 * time.Second}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var req fasthttp.Request
		var resp fasthttp.Response
		req.SetRequestURI("http://a.test/x")
		for pb.Next() {
			if err := c.Do(&req, &resp); err != nil || resp.StatusCode() != 200 {
				b.Fatalf("%v %d", err, resp.StatusCode())
			}
		}
	})
}
