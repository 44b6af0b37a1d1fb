package clientip

import (
	"bufio"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/edgeauth/edgeauth/middleware/reqstate"
	"github.com/google/go-cmp/cmp"
	"github.com/valyala/fasthttp"
)

// newCtx parses a raw request so that repeated header lines stay separate,
// as they do on the wire.
func newCtx(t testing.TB, raw string, peer string) *fasthttp.RequestCtx {
	t.Helper()
	var req fasthttp.Request
	if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	ctx := new(fasthttp.RequestCtx)
	ctx.Init(&req, &net.TCPAddr{IP: net.ParseIP(peer), Port: 40000}, nil)
	return ctx
}

func TestMiddlewareSetsClientIP(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, header, raw, peer, want string
	}{
		{
			name: "multiple XFF lines from trusted proxy",
			raw:  "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 81.2.69.142\r\n\r\n",
			peer: "127.0.0.1", want: "81.2.69.142",
		},
		{
			name: "spoofed XFF from untrusted peer",
			raw:  "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 81.2.69.142\r\n\r\n",
			peer: "198.51.100.1", want: "198.51.100.1",
		},
		{
			name: "lowercase header name", raw: "GET / HTTP/1.1\r\nHost: a\r\nx-forwarded-for: 175.16.199.0\r\n\r\n",
			peer: "127.0.0.1", want: "175.16.199.0",
		},
		{
			name: "forwarded configured ignores XFF", header: "forwarded",
			raw:  "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\nForwarded: for=\"[2001:db8::5]:1\"\r\n\r\n",
			peer: "127.0.0.1", want: "2001:db8::5",
		},
		{
			name: "xff configured ignores Forwarded",
			raw:  "GET / HTTP/1.1\r\nHost: a\r\nForwarded: for=1.1.1.1\r\n\r\n",
			peer: "127.0.0.1", want: "127.0.0.1",
		},
		{
			name: "ipv4-mapped peer",
			raw:  "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
			peer: "::ffff:198.51.100.2", want: "198.51.100.2",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mw, err := Middleware(Options{Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, Header: tt.header})
			if err != nil {
				t.Fatal(err)
			}
			called := false
			h := mw(func(ctx *fasthttp.RequestCtx) { called = true })
			ctx := newCtx(t, tt.raw, tt.peer)
			h(ctx)
			if !called {
				t.Fatal("next not called")
			}
			if diff := cmp.Diff(tt.want, reqstate.Get(ctx).ClientIP.String()); diff != "" {
				t.Errorf("ClientIP (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMiddlewareAllocs(t *testing.T) {
	mw, err := Middleware(Options{Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	if err != nil {
		t.Fatal(err)
	}
	h := mw(func(*fasthttp.RequestCtx) {})
	ctx := newCtx(t, "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 81.2.69.142\r\n\r\n", "127.0.0.1")
	h(ctx) // attach state, warm PeekAll's buffer
	if n := testing.AllocsPerRun(200, func() { h(ctx) }); n != 0 {
		t.Errorf("allocs = %v, want 0", n)
	}
}

func BenchmarkMiddleware(b *testing.B) {
	mw, _ := Middleware(Options{Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	h := mw(func(*fasthttp.RequestCtx) {})
	ctx := newCtx(b, "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1, 81.2.69.142\r\n\r\n", "127.0.0.1")
	b.ReportAllocs()
	for b.Loop() {
		h(ctx)
	}
}
