package identity

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeauth/edgeauth/middleware/reqstate"
	"github.com/google/go-cmp/cmp"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"github.com/valyala/fasthttp"
)

func TestMatcher(t *testing.T) {
	t.Parallel()
	m, err := NewMatcher([]string{"X-Auth-Request-User", "X-Remote-User"}, []string{"X-Auth-Request-"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		want bool
	}{
		{"X-Auth-Request-User", true},
		{"x-auth-request-user", true},
		{"X_Auth_Request_User", true},
		{"X_AUTH_REQUEST_USER", true},
		{"x-auth_request-user", true},
		{"X-Remote-User", true},
		{"X_remote_user", true},
		{"X-Auth-Request-Anything", true},
		{"X-Auth-Request", false},
		{"X-Remote-Users", false},
		{"X-Remote-Use", false},
		{"Authorization", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := m.Match([]byte(tt.name)); got != tt.want {
			t.Errorf("Match(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
	if _, err := NewMatcher([]string{"X Bad"}, nil); err == nil {
		t.Error("NewMatcher with space: want error")
	}
	if _, err := NewMatcher(nil, []string{"X:"}); err == nil {
		t.Error("NewMatcher with colon: want error")
	}
}

// upstream is a real net/http server that records the header names and
// values it received, the way an application would see them.
type upstream struct {
	mu   sync.Mutex
	seen []http.Header
	addr string
}

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{addr: ln.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, r.Header.Clone())
		u.mu.Unlock()
		io.WriteString(w, "ok")
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return u
}

func (u *upstream) last(t *testing.T) http.Header {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		t.Fatal("upstream saw no request")
	}
	return u.seen[len(u.seen)-1]
}

// startProxy runs a real fasthttp server on loopback: a stand-in for the
// identify step (sets the principal when asked), the identity middleware,
// and forwarding to the upstream.
func startProxy(t *testing.T, o Options, up *upstream) string {
	t.Helper()
	mw, err := Middleware(o)
	if err != nil {
		t.Fatal(err)
	}
	client := &fasthttp.HostClient{Addr: up.addr}
	forward := func(ctx *fasthttp.RequestCtx) {
		if err := client.Do(&ctx.Request, &ctx.Response); err != nil {
			ctx.Error(err.Error(), fasthttp.StatusBadGateway)
		}
	}
	h := mw(forward)
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/private" {
			st := reqstate.Get(ctx)
			st.Method = reqstate.MethodSession
			st.Principal = reqstate.Principal{
				Issuer: "https://idp.example", Subject: "alice", Email: "alice@example.com",
				PreferredUsername: "ally", Groups: []string{"staff", "eng"}, ACR: "mfa",
				AuthTime: time.Unix(1_700_000_000, 0),
			}
		}
		h(ctx)
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}

// rawRequest sends bytes as-is so header case, duplicates and underscores
// reach the proxy exactly as an attacker would send them.
func rawRequest(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.Status
}

// Attack: header spoofing. A client sends identity headers of its own —
// single, duplicated, in other cases, or with underscores that some
// upstream frameworks fold into the same name — hoping the app believes
// them. None may reach the upstream; only ours may.
func TestSpoofedIdentityHeadersNeverReachUpstream(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	signer, err := NewSigner(SignerOptions{Issuer: "https://edge.example"})
	if err != nil {
		t.Fatal(err)
	}
	addr := startProxy(t, Options{Signer: signer, RouteName: "wiki", StripPrefixes: []string{"X-Remote-"}}, up)
	spoof := "X-Auth-Request-User: mallory\r\n" +
		"X-Auth-Request-User: mallory2\r\n" +
		"x-auth-request-email: mallory@evil.example\r\n" +
		"X_Auth_Request_User: mallory3\r\n" +
		"X_AUTH_REQUEST_GROUPS: admins\r\n" +
		"X-AUTH-REQUEST-PREFERRED-USERNAME: root\r\n" +
		"X-Auth-Request-Access-Token: forged\r\n" +
		"X-Edgeauth-Assertion: eyJhbGciOiJub25lIn0.e30.\r\n" +
		"X_Edgeauth_Assertion: forged\r\n" +
		"X-Remote-User: mallory\r\n"
	folded := func(h http.Header) map[string][]string {
		out := map[string][]string{}
		for k, v := range h {
			f := strings.ToLower(strings.ReplaceAll(k, "_", "-"))
			if strings.HasPrefix(f, "x-auth-request-") || strings.HasPrefix(f, "x-edgeauth-") || strings.HasPrefix(f, "x-remote-") {
				out[f] = append(out[f], v...)
			}
		}
		for _, v := range out {
			sort.Strings(v)
		}
		return out
	}

	t.Run("public request", func(t *testing.T) {
		if st := rawRequest(t, addr, "GET /public HTTP/1.1\r\nHost: app\r\n"+spoof+"Connection: close\r\n\r\n"); st != "200 OK" {
			t.Fatalf("status %s", st)
		}
		if diff := cmp.Diff(map[string][]string{}, folded(up.last(t))); diff != "" {
			t.Errorf("identity headers at upstream (-want +got):\n%s", diff)
		}
	})
	t.Run("authenticated request", func(t *testing.T) {
		if st := rawRequest(t, addr, "GET /private HTTP/1.1\r\nHost: app\r\n"+spoof+"Connection: close\r\n\r\n"); st != "200 OK" {
			t.Fatalf("status %s", st)
		}
		got := folded(up.last(t))
		assertion := got["x-edgeauth-assertion"]
		delete(got, "x-edgeauth-assertion")
		want := map[string][]string{
			"x-auth-request-user":               {"alice"},
			"x-auth-request-email":              {"alice@example.com"},
			"x-auth-request-groups":             {"staff,eng"},
			"x-auth-request-preferred-username": {"ally"},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("identity headers at upstream (-want +got):\n%s", diff)
		}
		if len(assertion) != 1 {
			t.Fatalf("assertion headers = %q, want exactly ours", assertion)
		}
		verifyAssertion(t, signer, assertion[0], "wiki")
	})
}

func verifyAssertion(t *testing.T, s *Signer, raw, aud string) jwt.Token {
	t.Helper()
	set, err := jwk.Parse(s.JWKS())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.ParseString(raw, jwt.WithKeySet(set), jwt.WithIssuer("https://edge.example"), jwt.WithAudience(aud), jwt.WithValidate(true), jwt.WithClock(jwt.ClockFunc(s.now)))
	if err != nil {
		t.Fatalf("assertion does not verify: %v", err)
	}
	return tok
}

func TestAssertionClaimsAndCache(t *testing.T) {
	t.Parallel()
	clock := time.Unix(1_800_000_000, 0)
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	s, err := NewSigner(SignerOptions{Issuer: "https://edge.example", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	signs := 0
	s.onSign = func() { signs++ }
	p := &reqstate.Principal{Issuer: "https://idp", Subject: "alice", Email: "a@example.com", Groups: []string{"g1"}, ACR: "mfa", AuthTime: time.Unix(1_799_999_000, 0)}

	a1, err := s.Assertion("wiki", p)
	if err != nil {
		t.Fatal(err)
	}
	tok := verifyAssertion(t, s, string(a1), "wiki")
	var groups []any
	var acr string
	var authTime float64
	if err := tok.Get("groups", &groups); err != nil {
		t.Fatal(err)
	}
	_ = tok.Get("acr", &acr)
	_ = tok.Get("auth_time", &authTime)
	sub, _ := tok.Subject()
	exp, _ := tok.Expiration()
	jti, _ := tok.JwtID()
	got := []any{sub, groups, acr, int64(authTime), exp.Sub(now()), jti != ""}
	if diff := cmp.Diff([]any{"alice", []any{"g1"}, "mfa", int64(1_799_999_000), 60 * time.Second, true}, got); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}

	steps := []struct {
		name      string
		route     string
		p         *reqstate.Principal
		advance   time.Duration
		wantSigns int
		same      bool
	}{
		{name: "cache hit", route: "wiki", p: p, wantSigns: 1, same: true},
		{name: "still fresh at 40s", route: "wiki", p: p, advance: 40 * time.Second, wantSigns: 1, same: true},
		{name: "re-signed when a quarter of ttl is left", route: "wiki", p: p, advance: 6 * time.Second, wantSigns: 2},
		{name: "other route, other assertion", route: "admin", p: p, wantSigns: 3},
		{name: "changed groups never reuse", route: "wiki", p: &reqstate.Principal{Issuer: "https://idp", Subject: "alice", Email: "a@example.com", Groups: []string{"g1", "admins"}, ACR: "mfa", AuthTime: p.AuthTime}, wantSigns: 4},
		{name: "step-up (new acr) never reuses", route: "wiki", p: &reqstate.Principal{Issuer: "https://idp", Subject: "alice", Email: "a@example.com", Groups: []string{"g1"}, ACR: "hwk", AuthTime: p.AuthTime}, wantSigns: 5},
	}
	prev := a1
	for _, st := range steps {
		advance(st.advance)
		a, err := s.Assertion(st.route, st.p)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if signs != st.wantSigns || (string(a) == string(prev)) != st.same {
			t.Errorf("%s: signs = %d (want %d), same token = %v (want %v)", st.name, signs, st.wantSigns, string(a) == string(prev), st.same)
		}
		verifyAssertion(t, s, string(a), st.route)
		prev = a
	}
}

func TestSignerCacheIsBounded(t *testing.T) {
	t.Parallel()
	s, err := NewSigner(SignerOptions{Issuer: "https://edge.example", CacheSize: 32})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		if _, err := s.Assertion("wiki", &reqstate.Principal{Subject: fmt.Sprint("u", i)}); err != nil {
			t.Fatal(err)
		}
	}
	total := 0
	for i := range s.shards {
		total += len(s.shards[i].m)
	}
	if total > 32+len(s.shards) {
		t.Errorf("cache holds %d entries, bound 32 (+1 per shard)", total)
	}
}

func TestSignerKeyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(ec)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384der, _ := x509.MarshalPKCS8PrivateKey(p384)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaDer, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		path    string
		wantErr bool
	}{
		{"sec1", write("sec1.pem", "EC PRIVATE KEY", sec1), false},
		{"pkcs8", write("pkcs8.pem", "PRIVATE KEY", pkcs8), false},
		{"p384 rejected", write("p384.pem", "PRIVATE KEY", p384der), true},
		{"rsa rejected", write("rsa.pem", "PRIVATE KEY", rsaDer), true},
		{"not pem", filepath.Join("testdata", "not-a-key.txt"), true},
		{"missing", filepath.Join(dir, "missing.pem"), true},
	}
	var kids []string
	for _, tt := range tests {
		s, err := NewSigner(SignerOptions{Issuer: "https://edge.example", KeyFile: tt.path})
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: err = %v, wantErr %v", tt.name, err, tt.wantErr)
			continue
		}
		if err == nil {
			kids = append(kids, s.KeyID())
		}
	}
	// The same key in two encodings has the same RFC 7638 thumbprint.
	if len(kids) != 2 || kids[0] != kids[1] || len(kids[0]) != 43 {
		t.Errorf("kids = %q, want two equal 43-char thumbprints", kids)
	}
	if _, err := NewSigner(SignerOptions{}); err == nil {
		t.Error("NewSigner without issuer: want error")
	}
}

func TestHandleJWKS(t *testing.T) {
	t.Parallel()
	s, err := NewSigner(SignerOptions{Issuer: "https://edge.example"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := new(fasthttp.RequestCtx)
	ctx.Request.SetRequestURI(JWKSPath)
	s.HandleJWKS(ctx)
	set, err := jwk.Parse(ctx.Response.Body())
	if err != nil {
		t.Fatal(err)
	}
	k, ok := set.Key(0)
	if !ok || set.Len() != 1 {
		t.Fatalf("want one key, got %d", set.Len())
	}
	kid, _ := k.KeyID()
	priv, _ := jwk.IsPrivateKey(k)
	got := []any{ctx.Response.StatusCode(), string(ctx.Response.Header.ContentType()), kid, priv}
	if diff := cmp.Diff([]any{200, "application/jwk-set+json", s.KeyID(), false}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}

	post := new(fasthttp.RequestCtx)
	post.Request.Header.SetMethod("POST")
	s.HandleJWKS(post)
	if post.Response.StatusCode() != 405 || string(post.Response.Header.Peek("Allow")) != "GET, HEAD" {
		t.Errorf("POST: status %d allow %q", post.Response.StatusCode(), post.Response.Header.Peek("Allow"))
	}
}

// Attack: header injection through a claim. A provider that lets users set
// their display name or groups freely must not let CR/LF or a comma reach
// the upstream's headers.
func TestClaimsWithControlCharactersNotForwarded(t *testing.T) {
	t.Parallel()
	mw, err := Middleware(Options{Headers: Headers{Email: "-"}})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	h := mw(func(ctx *fasthttp.RequestCtx) {
		got = map[string]string{}
		for k, v := range ctx.Request.Header.All() {
			got[string(k)] = string(v)
		}
	})
	ctx := new(fasthttp.RequestCtx)
	// As a client sends it: Strip reads names from the raw head.
	if err := ctx.Request.Header.Read(bufio.NewReader(strings.NewReader("GET / HTTP/1.1\r\nHost: a\r\nX-Auth-Request-Email: spoof@evil\r\n\r\n"))); err != nil {
		t.Fatal(err)
	}
	st := reqstate.Get(ctx)
	st.Method = reqstate.MethodBearer
	st.Principal = reqstate.Principal{Subject: "bob", Email: "bob@example.com", PreferredUsername: "bob\r\nX-Admin: 1", Groups: []string{"staff", "a,admins", "x\ny"}}
	h(ctx)
	want := map[string]string{"Host": "a", "X-Auth-Request-User": "bob", "X-Auth-Request-Groups": "staff"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
}

func TestStripManyHeaders(t *testing.T) {
	t.Parallel()
	m, _ := NewMatcher([]string{"X-Auth-Request-User"}, DefaultStripPrefixes)
	var req fasthttp.Request
	raw := "GET / HTTP/1.1\r\nHost: a\r\n"
	for i := range 30 {
		raw += fmt.Sprintf("X_Auth_Request_User: u%d\r\nX-Auth-Request-X%d: v\r\nKeep-%d: k\r\n", i, i, i)
	}
	if err := req.Read(bufio.NewReader(strings.NewReader(raw + "\r\n"))); err != nil {
		t.Fatal(err)
	}
	if n := m.Strip(&req.Header); n != 60 {
		t.Errorf("Strip matched %d lines, want 60", n)
	}
	var left []string
	for k := range req.Header.All() {
		left = append(left, string(k))
	}
	if slices.ContainsFunc(left, func(k string) bool { return m.Match([]byte(k)) }) || len(left) != 31 {
		t.Errorf("left %v", left)
	}
}

func newAuthCtx() *fasthttp.RequestCtx {
	ctx := new(fasthttp.RequestCtx)
	ctx.Request.SetRequestURI("/app")
	ctx.Request.Header.Set("Accept", "text/html")
	ctx.Request.Header.Set("User-Agent", "bench")
	st := reqstate.Get(ctx)
	st.Method = reqstate.MethodSession
	st.Principal = reqstate.Principal{Issuer: "https://idp", Subject: "alice", Email: "alice@example.com",
		PreferredUsername: "ally", Groups: []string{"staff", "eng", "ops"}, ACR: "mfa", AuthTime: time.Unix(1_700_000_000, 0)}
	return ctx
}

func TestMiddlewareAllocs(t *testing.T) {
	s, _ := NewSigner(SignerOptions{Issuer: "https://edge.example"})
	mw, _ := Middleware(Options{Signer: s, RouteName: "wiki"})
	h := mw(func(*fasthttp.RequestCtx) {})
	ctx := newAuthCtx()
	h(ctx)
	if n := testing.AllocsPerRun(200, func() { h(ctx) }); n != 0 {
		t.Errorf("allocs = %v, want 0", n)
	}
}

func BenchmarkMiddleware(b *testing.B) {
	s, _ := NewSigner(SignerOptions{Issuer: "https://edge.example"})
	for _, bc := range []struct {
		name string
		o    Options
	}{{"headers", Options{}}, {"headers+assertion", Options{Signer: s, RouteName: "wiki"}}} {
		b.Run(bc.name, func(b *testing.B) {
			mw, _ := Middleware(bc.o)
			h := mw(func(*fasthttp.RequestCtx) {})
			ctx := newAuthCtx()
			b.ReportAllocs()
			for b.Loop() {
				h(ctx)
			}
		})
	}
}

func BenchmarkSign(b *testing.B) {
	s, _ := NewSigner(SignerOptions{Issuer: "https://edge.example"})
	p := &reqstate.Principal{Subject: "alice", Groups: []string{"a"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := s.sign("wiki", p, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzMatcher(f *testing.F) {
	m, _ := NewMatcher([]string{"X-Auth-Request-User"}, DefaultStripPrefixes)
	for _, s := range []string{"X_Auth_Request_User", "x-edgeauth-a", "Host", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		folded := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
		want := folded == "x-auth-request-user" || strings.HasPrefix(folded, "x-auth-request-") || strings.HasPrefix(folded, "x-edgeauth-")
		if got := m.Match([]byte(name)); got != want {
			t.Fatalf("Match(%q) = %v, want %v", name, got, want)
		}
	})
}

// TestStripKeepsCookiesVerbatim: stripping must not make fasthttp parse and
// re-serialise the Cookie lines the upstream gets (RequestHeader.All does).
func TestStripKeepsCookiesVerbatim(t *testing.T) {
	t.Parallel()
	m, _ := NewMatcher([]string{"X-Auth-Request-User"}, DefaultStripPrefixes)
	var req fasthttp.Request
	raw := "GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1;b=2\r\nX-Auth-Request-User: mallory\r\nCookie: c=\"3\"\r\n\r\n"
	if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	if n := m.Strip(&req.Header); n != 1 {
		t.Fatalf("Strip matched %d lines, want 1", n)
	}
	out := req.Header.String()
	if !strings.Contains(out, "Cookie: a=1;b=2\r\n") || !strings.Contains(out, "Cookie: c=\"3\"\r\n") || strings.Contains(out, "mallory") {
		t.Errorf("forwarded head:\n%s", out)
	}
}
