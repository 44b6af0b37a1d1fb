package token

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/valyala/fasthttp"

	"github.com/edgeauth/edgeauth/middleware"
	"github.com/edgeauth/edgeauth/middleware/reqstate"
)

// edge is edgeauth's token step in front of a real upstream on loopback
// that counts every request that reaches it.
type edge struct {
	url     string
	hits    atomic.Int64
	lastSub atomic.Pointer[string]
	logs    *bytes.Buffer
}

func newEdge(t *testing.T, v *Verifier, route RouteOptions) *edge {
	t.Helper()
	e := &edge{logs: &bytes.Buffer{}}
	up := newHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.hits.Add(1)
		fmt.Fprint(w, "upstream:", r.Header.Get("X-Test-Sub"))
	}))
	if route.ExternalOrigin == "" {
		route.ExternalOrigin = "https://api.test"
	}
	if route.Now == nil {
		route.Now = func() time.Time { return t0 }
	}
	logger := slog.New(slog.NewJSONHandler(&lockedWriter{w: e.logs}, nil))
	mw, err := Middleware(v, route, logger)
	if err != nil {
		t.Fatal(err)
	}
	client := &fasthttp.HostClient{Addr: strings.TrimPrefix(up.URL, "http://")}
	forward := func(ctx *fasthttp.RequestCtx) {
		// Stand-in for the proxy's forwarding: identity from reqstate.
		st := reqstate.Get(ctx)
		req := fasthttp.AcquireRequest()
		defer fasthttp.ReleaseRequest(req)
		ctx.Request.CopyTo(req)
		req.Header.Set("X-Test-Sub", st.Principal.Subject+"|"+st.Method.String())
		req.SetRequestURI(up.URL + string(ctx.RequestURI()))
		if err := client.Do(req, &ctx.Response); err != nil {
			ctx.Error(err.Error(), fasthttp.StatusBadGateway)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// A read buffer large enough for the 1 MiB attack token, so that our
	// size limit, not fasthttp's header limit, is what rejects it.
	srv := &fasthttp.Server{Handler: middleware.Chain(forward, mw), ReadBufferSize: 2 << 20}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	e.url = "http://" + ln.Addr().String()
	return e
}

type lockedWriter struct {
	mu atomic.Int32
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	for !l.mu.CompareAndSwap(0, 1) {
	}
	defer l.mu.Store(0)
	return l.w.Write(p)
}

type resp struct {
	status int
	www    string
	body   string
}

func (e *edge) do(t *testing.T, method, path string, hdr http.Header) resp {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, e.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = hdr
	if req.Header == nil {
		req.Header = http.Header{}
	}
	req.Header.Set("X-Request-Id", "req-123")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{res.StatusCode, res.Header.Get("WWW-Authenticate"), string(b)}
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// TestAttackSuiteNeverReachesUpstream runs every attack through the
// middleware in front of a counting upstream: each must be answered 401
// (or 400) by edgeauth and the upstream must see nothing.
func TestAttackSuiteNeverReachesUpstream(t *testing.T) {
	t.Parallel()
	jwks := newJWKSServer(t, defaultJWKS(t))
	jwks2 := newJWKSServer(t, jwksJSON(t, jwkEntry{"other", "ES256", &testKeySet(t).ec2.PublicKey}))
	attacker := newJWKSServer(t, jwksJSON(t, jwkEntry{"attacker", "RS256", &testKeySet(t).rsa2.PublicKey}))
	v := newTestVerifier(t, jwks, func(o *Options) {
		o.Issuers[0].RequireTyp = true
		o.Issuers[0].HMACSecret = nil
		o.Issuers[0].Algorithms = nil
		o.Issuers = append(o.Issuers, IssuerOptions{Issuer: testIssuer2, JWKSURL: jwks2.URL, Audiences: []string{testAudience}})
	})
	e := newEdge(t, v, RouteOptions{Issuers: []string{testIssuer}})

	// Control: the valid token does reach the upstream.
	if r := e.do(t, "GET", "/x", bearer(rsTok(t, validClaims()))); r.status != 200 || r.body != "upstream:user-1|bearer" {
		t.Fatalf("valid token: %+v", r)
	}
	if e.hits.Load() != 1 {
		t.Fatal("control request did not reach upstream")
	}
	e.hits.Store(0)

	cases := attackCases(t, attacker.URL)
	// Second trusted issuer, on a route that only trusts the first.
	cases = append(cases, attackCase{"token of second trusted issuer",
		mkJWT(t, map[string]any{"alg": "ES256", "kid": "other", "typ": "at+jwt"}, with(validClaims(), "iss", testIssuer2), testKeySet(t).ec2), ReasonIssuerNotAllowed})
	for _, tc := range cases {
		if strings.ContainsAny(tc.token, "\n\r") {
			// Line breaks cannot travel inside one HTTP header line; the
			// core table (TestVerifyRejectsAttacks) covers these.
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(t, "GET", "/x", bearer(tc.token))
			if r.status != http.StatusUnauthorized && r.status != http.StatusBadRequest && r.status != 431 {
				t.Errorf("status = %d, want 401/400", r.status)
			}
			if r.status == http.StatusUnauthorized && !strings.HasPrefix(r.www, `Bearer realm="edgeauth", error="invalid_token", error_description="`) {
				t.Errorf("WWW-Authenticate = %q", r.www)
			}
			if strings.Contains(r.www, "rsa1") || strings.Contains(r.body, "rsa1") || strings.Contains(r.body, "jwx") {
				t.Errorf("response leaks internals: %q %q", r.www, r.body)
			}
		})
	}
	if n := e.hits.Load(); n != 0 {
		t.Errorf("upstream reached %d times by rejected tokens", n)
	}
	if n := attacker.fetches.Load(); n != 0 {
		t.Errorf("attacker key URL fetched %d times", n)
	}
	if !strings.Contains(e.logs.String(), `"request_id":"req-123"`) || !strings.Contains(e.logs.String(), `"reason":"bad_signature"`) {
		t.Errorf("rejections not logged with reason and request id:\n%.500s", e.logs.String())
	}
	if strings.Contains(e.logs.String(), cases[0].token[:20]) {
		t.Error("a token was written to the log")
	}
}

func TestMiddlewareRequestShapes(t *testing.T) {
	t.Parallel()
	jwks := newJWKSServer(t, defaultJWKS(t))
	v := newTestVerifier(t, jwks, nil)
	e := newEdge(t, v, RouteOptions{RequiredScopes: []string{"read", "admin"}})
	good := rsTok(t, with(validClaims(), "scope", "read admin"))
	narrow := rsTok(t, validClaims())
	tests := []struct {
		name    string
		hdr     http.Header
		path    string
		status  int
		www     string
		reached bool
	}{
		{"no credential passes untouched", http.Header{}, "/x", 200, "", true},
		{"valid with scopes", bearer(good), "/x", 200, "", true},
		{"lower-case scheme", http.Header{"Authorization": {"bearer " + good}}, "/x", 200, "", true},
		{"missing scope", bearer(narrow), "/x", 403,
			`Bearer realm="edgeauth", error="insufficient_scope", error_description="The access token lacks the required scope", scope="read admin"`, false},
		{"two Authorization headers", http.Header{"Authorization": {"Bearer " + good, "Bearer " + good}}, "/x", 400, "", false},
		{"header and query token", bearer(good), "/x?access_token=" + good, 400, "", false},
		{"Basic scheme", http.Header{"Authorization": {"Basic dTpw"}}, "/x", 400, "", false},
		{"scheme only", http.Header{"Authorization": {"Bearer"}}, "/x", 400, "", false},
		{"expired", bearer(rsTok(t, with(validClaims(), "exp", t0.Add(-time.Hour).Unix()))), "/x", 401,
			`Bearer realm="edgeauth", error="invalid_token", error_description="The access token expired"`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := e.hits.Load()
			r := e.do(t, "GET", tc.path, tc.hdr)
			if r.status != tc.status {
				t.Errorf("status = %d, want %d (%s)", r.status, tc.status, r.body)
			}
			if tc.www != "" && r.www != tc.www {
				t.Errorf("WWW-Authenticate:\n got %s\nwant %s", r.www, tc.www)
			}
			if got := e.hits.Load() > before; got != tc.reached {
				t.Errorf("reached upstream = %v, want %v", got, tc.reached)
			}
		})
	}
}

// --- DPoP ---

type dpopKey struct {
	priv *ecdsa.PrivateKey
	jwk  map[string]any
	jkt  string
}

func newDPoPKey(t *testing.T, priv *ecdsa.PrivateKey) dpopKey {
	k, err := jwk.Import(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	tp, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = json.Unmarshal(mustJSON(t, k), &m)
	return dpopKey{priv: priv, jwk: m, jkt: b64s(tp)}
}

func (k dpopKey) proof(t *testing.T, tok, htm, htu string, iat time.Time, jti string, mod func(h, c map[string]any)) string {
	ath := sha256.Sum256([]byte(tok))
	h := map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": k.jwk}
	c := map[string]any{"jti": jti, "htm": htm, "htu": htu, "iat": iat.Unix(), "ath": b64s(ath[:])}
	if mod != nil {
		mod(h, c)
	}
	return mkJWT(t, h, c, k.priv)
}

func TestDPoP(t *testing.T) {
	t.Parallel()
	jwks := newJWKSServer(t, defaultJWKS(t))
	v := newTestVerifier(t, jwks, nil)
	e := newEdge(t, v, RouteOptions{ExternalOrigin: "https://api.test"})
	keys := testKeySet(t)
	dk := newDPoPKey(t, keys.ec)
	other := newDPoPKey(t, keys.ec2)
	tok := rsTok(t, with(validClaims(), "cnf", map[string]any{"jkt": dk.jkt}))
	plain := rsTok(t, with(validClaims(), "sub", "plain"))
	const htu = "https://api.test/res"
	dh := func(tok, proof string) http.Header {
		return http.Header{"Authorization": {"DPoP " + tok}, "Dpop": {proof}}
	}
	n := 0
	jti := func() string { n++; return fmt.Sprintf("jti-%d-%s", n, randomKid(t)) }
	replayed := dk.proof(t, tok, "GET", htu, t0, "fixed-jti", nil)

	tests := []struct {
		name   string
		hdr    http.Header
		status int
	}{
		{"valid", dh(tok, dk.proof(t, tok, "GET", htu, t0, jti(), nil)), 200},
		{"valid, htu with default port and query", dh(tok, dk.proof(t, tok, "GET", "https://API.test:443/res?q=1", t0, jti(), nil)), 200},
		{"first use of a proof", dh(tok, replayed), 200},
		{"replayed jti", dh(tok, replayed), 401},
		{"missing proof", http.Header{"Authorization": {"DPoP " + tok}}, 401},
		{"two proofs", http.Header{"Authorization": {"DPoP " + tok}, "Dpop": {dk.proof(t, tok, "GET", htu, t0, jti(), nil), dk.proof(t, tok, "GET", htu, t0, jti(), nil)}}, 401},
		{"wrong htm", dh(tok, dk.proof(t, tok, "POST", htu, t0, jti(), nil)), 401},
		{"wrong htu path", dh(tok, dk.proof(t, tok, "GET", "https://api.test/other", t0, jti(), nil)), 401},
		{"wrong htu host", dh(tok, dk.proof(t, tok, "GET", "https://evil.test/res", t0, jti(), nil)), 401},
		{"stale iat", dh(tok, dk.proof(t, tok, "GET", htu, t0.Add(-2*time.Minute), jti(), nil)), 401},
		{"future iat", dh(tok, dk.proof(t, tok, "GET", htu, t0.Add(2*time.Minute), jti(), nil)), 401},
		{"wrong ath", dh(tok, dk.proof(t, plain, "GET", htu, t0, jti(), nil)), 401},
		{"no ath", dh(tok, dk.proof(t, tok, "GET", htu, t0, jti(), func(h, c map[string]any) { delete(c, "ath") })), 401},
		{"thumbprint mismatch", dh(tok, other.proof(t, tok, "GET", htu, t0, jti(), nil)), 401},
		{"proof with private key", dh(tok, dk.proof(t, tok, "GET", htu, t0, jti(), func(h, c map[string]any) {
			j := with(dk.jwk, "d", b64s(dk.priv.D.Bytes()))
			h["jwk"] = j
		})), 401},
		{"typ JWT", dh(tok, dk.proof(t, tok, "GET", htu, t0, jti(), func(h, c map[string]any) { h["typ"] = "JWT" })), 401},
		{"proof signed by another key", dh(tok, func() string {
			p := dk.proof(t, tok, "GET", htu, t0, jti(), nil)
			q := other.proof(t, tok, "GET", htu, t0, jti(), nil)
			return p[:strings.LastIndexByte(p, '.')] + q[strings.LastIndexByte(q, '.'):]
		}()), 401},
		{"DPoP-bound token as Bearer", http.Header{"Authorization": {"Bearer " + tok}, "Dpop": {dk.proof(t, tok, "GET", htu, t0, jti(), nil)}}, 401},
		{"DPoP scheme with unbound token", dh(plain, dk.proof(t, plain, "GET", htu, t0, jti(), nil)), 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := e.hits.Load()
			r := e.do(t, "GET", "/res", tc.hdr)
			if r.status != tc.status {
				t.Fatalf("status = %d, want %d (%s, %s)", r.status, tc.status, r.www, r.body)
			}
			if reached := e.hits.Load() > before; reached != (tc.status == 200) {
				t.Errorf("reached upstream = %v", reached)
			}
			if tc.status == 200 && r.body != "upstream:user-1|dpop" {
				t.Errorf("body %q", r.body)
			}
			if tc.status == 401 && !strings.HasPrefix(r.www, "DPoP ") {
				t.Errorf("WWW-Authenticate = %q, want DPoP challenge", r.www)
			}
		})
	}
}

// --- Introspection ---

func TestIntrospection(t *testing.T) {
	t.Parallel()
	now := t0
	var calls atomic.Int64
	responses := map[string]string{
		"active-tok":   fmt.Sprintf(`{"active":true,"sub":"svc-1","scope":"read","iss":%q,"aud":%q,"exp":%d}`, testIssuer, testAudience, now.Add(10*time.Second).Unix()),
		"inactive-tok": `{"active":false}`,
		"other-iss":    fmt.Sprintf(`{"active":true,"sub":"x","iss":"https://evil.test","exp":%d}`, now.Add(time.Hour).Unix()),
		"wrong-aud":    fmt.Sprintf(`{"active":true,"sub":"x","aud":"https://other.test","exp":%d}`, now.Add(time.Hour).Unix()),
		"dup-member":   `{"active":true,"sub":"x","sub":"admin"}`,
	}
	srv := newHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		id, secret, ok := r.BasicAuth()
		if !ok || id != "edge%2Bauth" || secret != "s%3Acret" || r.Method != http.MethodPost {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_ = r.ParseForm()
		body, ok := responses[r.PostForm.Get("token")]
		if !ok {
			body = `{"active":false}`
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, body)
	}))
	v, err := NewVerifier(t.Context(), Options{
		Logger: discardLogger(),
		Introspection: &IntrospectionOptions{
			URL: srv.URL, ClientID: "edge+auth", ClientSecret: "s:cret", Issuer: testIssuer,
			Audiences: []string{testAudience}, CacheTTL: time.Minute, NegativeTTL: time.Minute,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	ctx := context.Background()

	c, err := v.Verify(ctx, []byte("active-tok"), now)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"read"}, c.Scopes); d != "" || c.Subject != "svc-1" || !c.Introspected {
		t.Errorf("claims %+v %s", c, d)
	}
	v.cache.Wait()
	if _, err := v.Verify(ctx, []byte("active-tok"), now.Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 1 {
		t.Errorf("cache not honoured: %d calls", calls.Load())
	}
	// Bounded by exp (10s) although CacheTTL is a minute (RFC 7662 §4).
	if _, err := v.Verify(ctx, []byte("active-tok"), now.Add(11*time.Second)); err != nil {
		t.Fatal(err) // still active per the server (and within leeway)
	}
	if calls.Load() != 2 {
		t.Errorf("introspection result served from cache beyond exp: %d calls", calls.Load())
	}

	for _, tc := range []struct {
		tok    string
		reason Reason
	}{
		{"inactive-tok", ReasonInactive},
		{"other-iss", ReasonBadIssuer},
		{"wrong-aud", ReasonBadAudience},
		{"dup-member", ReasonUnavailable},
	} {
		if _, err := v.Verify(ctx, []byte(tc.tok), now); ReasonOf(err) != tc.reason {
			t.Errorf("%s: err = %v, want %v", tc.tok, err, tc.reason)
		}
	}
	// The negative result is cached briefly.
	v.cache.Wait()
	before := calls.Load()
	if _, err := v.Verify(ctx, []byte("inactive-tok"), now.Add(time.Second)); ReasonOf(err) != ReasonInactive {
		t.Errorf("cached negative: %v", err)
	}
	if calls.Load() != before {
		t.Error("negative result not cached")
	}

	// Endpoint down: fail closed.
	srv.Close()
	if _, err := v.Verify(ctx, []byte("never-seen"), now); ReasonOf(err) != ReasonUnavailable {
		t.Errorf("endpoint down: err = %v, want unavailable", err)
	}
}
