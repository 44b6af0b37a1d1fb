package bench_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/edgeauth/edgeauth/bench"
	"github.com/edgeauth/edgeauth/proxy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// The in-process comparison: a client talks to the proxy over an in-memory
// listener (no socket on that side, so the proxy's own cost is what is
// left), and the proxy forwards over real loopback TCP to a fixed-body
// upstream. proxy has no hook to dial its upstream in memory, so both
// proxies get the same TCP upstream and the comparison stays fair.

const bodySize = 64

func startUpstream(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	body := make([]byte, bodySize)
	for i := range body {
		body[i] = 'x'
	}
	s := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/plain")
		ctx.SetBody(body)
	}}
	go s.Serve(ln) //nolint:errcheck // Shutdown ends it
	tb.Cleanup(func() { _ = s.Shutdown() })
	return ln.Addr().String()
}

// serveInMemory serves h or s on an in-memory listener and returns a client
// bound to it.
func inMemoryClient(ln *fasthttputil.InmemoryListener) *fasthttp.HostClient {
	return &fasthttp.HostClient{
		Addr:        "bench.test",
		Dial:        func(string) (net.Conn, error) { return ln.Dial() },
		ReadTimeout: 5 * time.Second,
	}
}

func startRefProxy(tb testing.TB, upAddr string, opts bench.RefOptions) *fasthttp.HostClient {
	tb.Helper()
	ln := fasthttputil.NewInmemoryListener()
	s := bench.NewRefServer(upAddr, opts)
	go s.Serve(ln) //nolint:errcheck // Shutdown ends it
	tb.Cleanup(func() { _ = s.Shutdown() })
	return inMemoryClient(ln)
}

// startEdgeauth runs edgeauth's proxy core as `auth: none` does: one
// catch-all route, no pipeline, access log off; with metrics when asked,
// since production always has them.
func startEdgeauth(tb testing.TB, upAddr string, withMetrics bool) (*fasthttp.HostClient, *proxy.Routes) {
	tb.Helper()
	var m *proxy.Metrics
	if withMetrics {
		var err error
		if m, err = proxy.NewMetrics(prometheus.NewRegistry()); err != nil {
			tb.Fatal(err)
		}
	}
	rt, err := proxy.NewRoutes(proxy.RoutesConfig{
		Routes:  []proxy.RouteOptions{{Name: "bench", Host: "*", Upstreams: []string{"http://" + upAddr}}},
		Metrics: m,
	})
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := proxy.NewServer(proxy.Options{DisableAccessLog: true, Metrics: m}, rt)
	if err != nil {
		tb.Fatal(err)
	}
	ln := fasthttputil.NewInmemoryListener()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			tb.Error(err)
		}
		if err := <-served; err != nil {
			tb.Error(err)
		}
	})
	return inMemoryClient(ln), rt
}

func refWith(o bench.RefOptions) func(testing.TB, string) *fasthttp.HostClient {
	return func(tb testing.TB, up string) *fasthttp.HostClient { return startRefProxy(tb, up, o) }
}

type proxyCase struct {
	name  string
	start func(tb testing.TB, upAddr string) *fasthttp.HostClient
}

var proxyCases = []proxyCase{
	{"refproxy", refWith(bench.RefOptions{})},
	// The reference with edgeauth's fasthttp settings, one at a time and
	// all together: what is left between "refproxy+all" and "edgeauth" is
	// edgeauth's own code.
	{"refproxy+stream", refWith(bench.RefOptions{Stream: true})},
	{"refproxy+timeouts", refWith(bench.RefOptions{Timeouts: true})},
	{"refproxy+all", refWith(bench.RefOptions{Stream: true, Timeouts: true, ReadBufferSize: 16 << 10})},
	{"edgeauth", func(tb testing.TB, up string) *fasthttp.HostClient { c, _ := startEdgeauth(tb, up, false); return c }},
	{"edgeauth+metrics", func(tb testing.TB, up string) *fasthttp.HostClient { c, _ := startEdgeauth(tb, up, true); return c }},
}

// get does one keep-alive GET and checks it really went through.
func get(tb testing.TB, c *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response) {
	if err := c.Do(req, resp); err != nil {
		tb.Fatal(err)
	}
	if resp.StatusCode() != fasthttp.StatusOK || len(resp.Body()) != bodySize {
		tb.Fatalf("got %d with %d body bytes, want 200 with %d", resp.StatusCode(), len(resp.Body()), bodySize)
	}
}

// BenchmarkSmallGET is one request at a time: ns/op is the latency of the
// whole round trip, allocs/op everything the three parties allocate.
func BenchmarkSmallGET(b *testing.B) {
	for _, pc := range proxyCases {
		b.Run(pc.name, func(b *testing.B) {
			c := pc.start(b, startUpstream(b))
			var req fasthttp.Request
			var resp fasthttp.Response
			req.SetRequestURI("http://bench.test/app/page?q=1")
			get(b, c, &req, &resp) // dial both hops outside the timing
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				get(b, c, &req, &resp)
			}
		})
	}
}

// BenchmarkSmallGETParallel keeps GOMAXPROCS requests in flight, so pool
// contention and upstream connection reuse under concurrency show.
func BenchmarkSmallGETParallel(b *testing.B) {
	for _, pc := range proxyCases {
		b.Run(pc.name, func(b *testing.B) {
			c := pc.start(b, startUpstream(b))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var req fasthttp.Request
				var resp fasthttp.Response
				req.SetRequestURI("http://bench.test/app/page?q=1")
				for pb.Next() {
					if err := c.Do(&req, &resp); err != nil || resp.StatusCode() != fasthttp.StatusOK {
						b.Errorf("%v %d", err, resp.StatusCode())
						return
					}
				}
			})
		})
	}
}

// TestHotPathAllocs guards the forwarding path: a keep-alive GET through
// edgeauth (metrics on) may allocate at most a little more than through the
// reference proxy, measured the same way in the same process, and reuses
// its upstream connection.
func TestHotPathAllocs(t *testing.T) {
	up := startUpstream(t)
	measure := func(c *fasthttp.HostClient) float64 {
		var req fasthttp.Request
		var resp fasthttp.Response
		req.SetRequestURI("http://bench.test/app/page?q=1")
		get(t, c, &req, &resp)
		return testing.AllocsPerRun(2000, func() { get(t, c, &req, &resp) })
	}
	ref := measure(startRefProxy(t, up, bench.RefOptions{}))
	c, rt := startEdgeauth(t, up, true)
	ea := measure(c)
	t.Logf("allocs per request: refproxy %.2f, edgeauth %.2f", ref, ea)
	// The race detector allocates on sync paths by amounts that vary from
	// run to run; the count is only meaningful without it. The reuse check
	// below holds either way.
	if !raceEnabled && ea > ref+maxExtraAllocs {
		t.Errorf("edgeauth allocates %.2f per request, refproxy %.2f: more than %d extra", ea, ref, maxExtraAllocs)
	}
	// Sequential keep-alive requests must share one upstream connection
	// (issue 2: < 0.01 new upstream connections per request).
	if n := rt.UpstreamConnsOpened(); n != 1 {
		t.Errorf("edgeauth opened %d upstream connections for 2002 sequential requests, want 1", n)
	}
}

// maxExtraAllocs is what edgeauth may allocate per request beyond the
// reference proxy: a ratchet at the figure measured (refproxy 0, edgeauth 4
// on fasthttp v1.78.0). All 4 are fasthttp's, from
// HostClient.StreamResponseBody: a clientStreamBody and its three closures
// per response (transport.RoundTrip), which edgeauth needs so a 1 GiB
// download is not buffered. Lower it if proxy/ stops paying them for small
// bodies.
const maxExtraAllocs = 4
