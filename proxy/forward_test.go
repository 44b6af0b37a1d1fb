package proxy

import (
	"encoding/json"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/valyala/fasthttp"
)

func TestRoutingEndToEnd(t *testing.T) {
	t.Parallel()
	tag := func(name string) fasthttp.RequestHandler {
		return func(ctx *fasthttp.RequestCtx) {
			ctx.SetBodyString(name + " " + string(ctx.RequestURI()) + " host=" + string(ctx.Request.Header.Host()))
		}
	}
	pub, adm, wild := startUpstream(t, tag("public")), startUpstream(t, tag("admin")), startUpstream(t, tag("wild"))
	h := startProxy(t, Options{}, RoutesConfig{
		Routes: []RouteOptions{
			{Name: "public", Host: "app.test", PathPrefix: "/public/", Upstreams: []string{pub}},
			{Name: "admin", Host: "app.test", PathPrefix: "/admin", Upstreams: []string{adm}},
			{Name: "wild", Host: "*.wild.test", Upstreams: []string{wild}},
		},
		Reserved: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("reserved " + string(ctx.Path())) },
	})
	tests := []struct {
		name, req, wantStatus, wantBody string
	}{
		{"exact host prefix", "GET /public/a HTTP/1.1\r\nHost: app.test\r\n\r\n", "HTTP/1.1 200 OK", "public /public/a host=app.test"},
		{"host case and port", "GET /admin/x HTTP/1.1\r\nHost: APP.test:80\r\n\r\n", "HTTP/1.1 200 OK", "admin /admin/x host=APP.test:80"},
		// Path traversal: the normalised path picks the route and is what
		// the upstream receives, so /public/../admin is the admin route.
		{"dot-dot cannot borrow public prefix", "GET /public/../admin/secret HTTP/1.1\r\nHost: app.test\r\n\r\n", "HTTP/1.1 200 OK", "admin /admin/secret host=app.test"},
		{"encoded dot-dot", "GET /public/%2e%2e/admin HTTP/1.1\r\nHost: app.test\r\n\r\n", "HTTP/1.1 200 OK", "admin /admin host=app.test"},
		{"double slash", "GET //public//b HTTP/1.1\r\nHost: app.test\r\n\r\n", "HTTP/1.1 200 OK", "public /public/b host=app.test"},
		{"wildcard", "GET /z HTTP/1.1\r\nHost: x.wild.test\r\n\r\n", "HTTP/1.1 200 OK", "wild /z host=x.wild.test"},
		// RFC 9112 §3.2.2: absolute-form target wins over Host, and the
		// upstream sees the same authority in origin form.
		{"absolute-form target", "GET http://app.test/admin/a HTTP/1.1\r\nHost: evil.test\r\n\r\n", "HTTP/1.1 200 OK", "admin /admin/a host=app.test"},
		{"absolute-form unknown host", "GET http://evil.test/admin HTTP/1.1\r\nHost: app.test\r\n\r\n", "HTTP/1.1 404 Not Found", ""},
		{"unknown host", "GET / HTTP/1.1\r\nHost: nope.test\r\n\r\n", "HTTP/1.1 404 Not Found", ""},
		{"known host no prefix", "GET /other HTTP/1.1\r\nHost: app.test\r\n\r\n", "HTTP/1.1 404 Not Found", ""},
		{"reserved prefix never forwarded", "GET /.edgeauth/callback HTTP/1.1\r\nHost: app.test\r\n\r\n", "HTTP/1.1 200 OK", "reserved /.edgeauth/callback"},
		{"reserved via traversal", "GET /public/../.edgeauth/x HTTP/1.1\r\nHost: app.test\r\n\r\n", "HTTP/1.1 200 OK", "reserved /.edgeauth/x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out := raw(t, h.addr, tc.req)
			if got := status(t, out); got != tc.wantStatus {
				t.Fatalf("status %q, want %q\n%s", got, tc.wantStatus, out)
			}
			if tc.wantBody != "" && !strings.HasSuffix(out, tc.wantBody) {
				t.Fatalf("body: want suffix %q\n%s", tc.wantBody, out)
			}
		})
	}
}

func TestReservedWithoutHandlerIs404(t *testing.T) {
	t.Parallel()
	var hits counter
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) { hits.inc() })
	h := startProxy(t, Options{}, RoutesConfig{Routes: []RouteOptions{{Name: "any", Upstreams: []string{up}}}})
	if got := status(t, raw(t, h.addr, "GET /.edgeauth/jwks.json HTTP/1.1\r\nHost: a\r\n\r\n")); got != "HTTP/1.1 404 Not Found" {
		t.Fatalf("status %q", got)
	}
	if hits.get() != 0 {
		t.Fatal("reserved path reached the upstream")
	}
}

func TestDefaultRoute(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("fallback") })
	h := startProxy(t, Options{}, RoutesConfig{
		Routes:       []RouteOptions{{Name: "a", Host: "a.test", Upstreams: []string{"http://127.0.0.1:1"}}, {Name: "fb", Host: "fb.test", Upstreams: []string{up}}},
		DefaultRoute: "fb",
	})
	if out := raw(t, h.addr, "GET / HTTP/1.1\r\nHost: zzz.test\r\n\r\n"); !strings.HasSuffix(out, "fallback") {
		t.Fatalf("unknown host did not use the default route:\n%s", out)
	}
}

func parseEcho(body string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(body, "\n")[1:] {
		if k, v, ok := strings.Cut(l, ": "); ok {
			if old, dup := m[k]; dup {
				v = old + " | " + v
			}
			m[k] = v
		}
	}
	return m
}

// TestHeaderHygiene: hop-by-hop fields (RFC 9110 §7.6.1) and the fields a
// client nominates in Connection never reach the upstream; a client cannot
// use Connection to strip the forwarding headers we set.
func TestHeaderHygiene(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
		echoHandler(ctx)
		ctx.Response.Header.Set("Connection", "X-Up-Hop")
		ctx.Response.Header.Set("X-Up-Hop", "1")
		ctx.Response.Header.Set("Keep-Alive", "timeout=5")
		ctx.Response.Header.Set("Proxy-Authenticate", "Basic")
	})
	h := startProxy(t, Options{}, RoutesConfig{Routes: []RouteOptions{{Name: "r", Upstreams: []string{up}}}})
	out := raw(t, h.addr, "GET /x HTTP/1.1\r\nHost: a.test\r\nConnection: keep-alive, X-Secret-Hop, X-Forwarded-For\r\n"+
		"X-Secret-Hop: 1\r\nKeep-Alive: 300\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-T\r\n"+
		"Proxy-Authorization: Basic Zm9vOmJhcg==\r\nUpgrade: h2c\r\nX-Real-IP: 6.6.6.6\r\nX-Keep: yes\r\n\r\n")
	_, body, _ := strings.Cut(out, "\r\n\r\n")
	got := parseEcho(body)
	for _, k := range []string{"Connection", "X-Secret-Hop", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Proxy-Authorization", "Upgrade", "X-Real-Ip"} {
		if v, ok := got[k]; ok {
			t.Errorf("upstream received %s: %q", k, v)
		}
	}
	if got["X-Keep"] != "yes" || got["X-Forwarded-For"] != "127.0.0.1" {
		t.Errorf("end-to-end fields lost: %v", got)
	}
	head, _, _ := strings.Cut(out, "\r\n\r\n")
	for _, k := range []string{"X-Up-Hop", "Keep-Alive", "Proxy-Authenticate"} {
		if strings.Contains(head, k+":") {
			t.Errorf("client received hop-by-hop response field %s:\n%s", k, head)
		}
	}
	if !strings.Contains(head, "X-Request-Id: ") {
		t.Errorf("no request id echoed:\n%s", head)
	}
}

func TestForwardedHeaders(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, echoHandler)
	spoof := "GET / HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-For: 5.6.7.8\r\nForwarded: for=1.2.3.4\r\n" +
		"X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.test\r\nX-Request-Id: abc-123\r\n\r\n"
	tests := []struct {
		name    string
		trusted []netip.Prefix
		want    map[string]string
	}{
		{
			// Spoofing: an untrusted client's claims are replaced, not extended.
			name: "untrusted peer replaced",
			want: map[string]string{
				"X-Forwarded-For": "127.0.0.1", "Forwarded": `for=127.0.0.1;host="app.test";proto=http`,
				"X-Forwarded-Proto": "http", "X-Forwarded-Host": "app.test",
			},
		},
		{
			name:    "trusted peer appended",
			trusted: []netip.Prefix{mustPrefix(t, "127.0.0.1/32")},
			want: map[string]string{
				"X-Forwarded-For": "1.2.3.4, 5.6.7.8, 127.0.0.1", "Forwarded": `for=1.2.3.4, for=127.0.0.1;host="app.test";proto=http`,
				"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.test", "X-Request-Id": "abc-123",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := startProxy(t, Options{}, RoutesConfig{Routes: []RouteOptions{{Name: "r", Upstreams: []string{up}}}, TrustedProxies: tc.trusted})
			out := raw(t, h.addr, spoof)
			_, body, _ := strings.Cut(out, "\r\n\r\n")
			got := parseEcho(body)
			sub := map[string]string{}
			for k := range tc.want {
				sub[k] = got[k]
			}
			if tc.trusted == nil {
				if id := got["X-Request-Id"]; id == "abc-123" || len(id) != 32 {
					t.Errorf("untrusted request id kept or malformed: %q", id)
				}
			}
			if diff := cmp.Diff(tc.want, sub); diff != "" {
				t.Errorf("upstream headers (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHostHeaderModes(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBody(ctx.Request.Header.Host()) })
	upAddr := strings.TrimPrefix(up, "http://")
	for mode, want := range map[string]string{"": "app.test", "preserve": "app.test", "upstream": upAddr, "internal.local:8080": "internal.local:8080"} {
		t.Run("mode="+mode, func(t *testing.T) {
			t.Parallel()
			h := startProxy(t, Options{}, RoutesConfig{Routes: []RouteOptions{{Name: "r", Upstreams: []string{up}, HostHeader: mode}}})
			if out := raw(t, h.addr, "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n"); !strings.HasSuffix(out, "\r\n\r\n"+want) {
				t.Fatalf("want Host %q upstream:\n%s", want, out)
			}
		})
	}
}

func TestUpstreamErrors(t *testing.T) {
	t.Parallel()
	dead := listenLocal(t)
	deadURL := "http://" + dead.Addr().String()
	dead.Close() // nothing listens there now: connection refused
	slow := startUpstream(t, func(ctx *fasthttp.RequestCtx) { time.Sleep(2 * time.Second) })
	h := startProxy(t, Options{}, RoutesConfig{Routes: []RouteOptions{
		{Name: "down", Host: "down.test", Upstreams: []string{deadURL}},
		{Name: "slow", Host: "slow.test", Upstreams: []string{slow}, ReadTimeout: 200 * time.Millisecond},
	}})
	tests := []struct {
		name, host, accept, wantStatus, wantCode, wantType string
	}{
		{"down api", "down.test", "application/json", "HTTP/1.1 502 Bad Gateway", "upstream_unavailable", "application/json"},
		{"down browser", "down.test", "text/html", "HTTP/1.1 502 Bad Gateway", "upstream_unavailable", "text/html; charset=utf-8"},
		{"slow api", "slow.test", "application/json", "HTTP/1.1 504 Gateway Timeout", "upstream_timeout", "application/json"},
		{"slow browser", "slow.test", "text/html", "HTTP/1.1 504 Gateway Timeout", "upstream_timeout", "text/html; charset=utf-8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out := raw(t, h.addr, "GET / HTTP/1.1\r\nHost: "+tc.host+"\r\nAccept: "+tc.accept+"\r\n\r\n")
			if got := status(t, out); got != tc.wantStatus {
				t.Fatalf("status %q want %q\n%s", got, tc.wantStatus, out)
			}
			head, body, _ := strings.Cut(out, "\r\n\r\n")
			if !strings.Contains(head, "Content-Type: "+tc.wantType) {
				t.Errorf("content type, want %q:\n%s", tc.wantType, head)
			}
			if tc.wantType == "application/json" {
				var e struct {
					Error     string `json:"error"`
					RequestID string `json:"request_id"`
				}
				if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error != tc.wantCode || len(e.RequestID) != 32 {
					t.Errorf("json body %q (err %v)", body, err)
				}
			} else if !strings.Contains(body, tc.wantCode) || !strings.Contains(body, "request id") {
				t.Errorf("html body lacks code or request id:\n%s", body)
			}
		})
	}
}

// TestFailoverSkipsDeadAddress: passive health — a refused address is
// skipped and the request goes to the live one.
func TestFailoverSkipsDeadAddress(t *testing.T) {
	t.Parallel()
	dead := listenLocal(t)
	deadURL := "http://" + dead.Addr().String()
	dead.Close()
	var hits counter
	live := startUpstream(t, func(ctx *fasthttp.RequestCtx) { hits.inc() })
	h := startProxy(t, Options{}, RoutesConfig{Routes: []RouteOptions{{Name: "r", Upstreams: []string{deadURL, live}}}})
	for i := range 10 {
		if got := status(t, raw(t, h.addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")); got != "HTTP/1.1 200 OK" {
			t.Fatalf("request %d: %q", i, got)
		}
	}
	if hits.get() != 10 {
		t.Fatalf("live upstream hits = %d, want 10", hits.get())
	}
}

// TestRequestSmuggling: each ambiguous framing gets 400 and never reaches
// the upstream (CL.TE / TE.CL desync, RFC 9112 §6.3; obs-fold §5.2).
func TestRequestSmuggling(t *testing.T) {
	t.Parallel()
	var hits counter
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) { hits.inc() })
	h := startProxy(t, Options{}, RoutesConfig{Routes: []RouteOptions{{Name: "r", Upstreams: []string{up}}}})
	tests := []struct{ name, req string }{
		{"CL.TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG"},
		{"TE.CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n"},
		{"duplicate differing CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde"},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n Transfer-Encoding: chunked\r\n\r\n"},
		{"TE obfuscated", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"},
		{"two TE lines", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n"},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"space before colon", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 3\r\n\r\nabc"},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := raw(t, h.addr, tc.req)
			if got := status(t, out); got != "HTTP/1.1 400 Bad Request" {
				t.Fatalf("status %q\n%s", got, out)
			}
		})
	}
	if n := hits.get(); n != 0 {
		t.Fatalf("upstream hit %d times by smuggling attempts", n)
	}
}

func TestLimits(t *testing.T) {
	t.Parallel()
	// hits counts requests whose body reached the upstream complete: a
	// streamed body cut off at the limit may have started upstream, but
	// ends there as a truncated body, never as a request.
	var hits counter
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
		if _, err := io.Copy(io.Discard, ctx.RequestBodyStream()); err == nil {
			hits.inc()
		}
	})
	h := startProxy(t, Options{MaxHeaderBytes: 4096, MaxBodyBytes: 1 << 20, HeaderTimeout: 300 * time.Millisecond},
		RoutesConfig{Routes: []RouteOptions{{Name: "small", PathPrefix: "/small", Upstreams: []string{up}, MaxBodyBytes: 10}, {Name: "big", Upstreams: []string{up}}}})
	tests := []struct{ name, req, want string }{
		{"oversize header", "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("a", 5000) + "\r\n\r\n", "HTTP/1.1 431 Request Header Fields Too Large"},
		{"oversize body per route", "POST /small HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world", "HTTP/1.1 413 Request Entity Too Large"},
		{"traversal cannot borrow a larger limit", "POST /big/../small HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world", "HTTP/1.1 413 Request Entity Too Large"},
		// A chunked body has no Content-Length to check up front: the limit
		// fasthttp enforces while streaming must be the normalised route's.
		{"chunked over route limit", "POST /small HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nb\r\nhello world\r\n0\r\n\r\n", "HTTP/1.1 413 Request Entity Too Large"},
		{"chunked traversal cannot borrow a larger limit", "POST /big/../small HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nb\r\nhello world\r\n0\r\n\r\n", "HTTP/1.1 413 Request Entity Too Large"},
		{"chunked encoded traversal", "POST /big/%2e%2e/small HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n", "HTTP/1.1 413 Request Entity Too Large"},
		{"body within limit", "POST /small HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", "HTTP/1.1 200 OK"},
		{"garbage request line", "NOT HTTP\r\n\r\n", "HTTP/1.1 400 Bad Request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := status(t, raw(t, h.addr, tc.req)); got != tc.want {
				t.Fatalf("status %q, want %q", got, tc.want)
			}
		})
	}
	if hits.get() != 1 {
		t.Fatalf("upstream hits = %d, want 1 (only the in-limit body)", hits.get())
	}

	// Slowloris: a head that never completes is cut off after HeaderTimeout.
	t.Run("slowloris", func(t *testing.T) {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: a\r\nX-1: a\r\n")); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		buf := make([]byte, 4096)
		for {
			_, err := c.Read(buf)
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatal("connection still open after 5s")
				}
				break
			}
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("closed after %v, want about 300ms", d)
		}
	})
}
