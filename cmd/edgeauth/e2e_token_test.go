package main

// Issue 4 end to end: bearer tokens through the real edgeauth binary. A
// JWKS per issuer is served here on loopback with net/http (counting every
// fetch), tokens are minted with lestrrat-go/jwx/v3, edgeauth runs as a
// child process (internal/e2etest) in front of a recording upstream, and
// every assertion is on what the client received and what reached the app.

import (
	"bufio"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/edgeauth/edgeauth/internal/e2etest"
)

const tkAudience = "api://edge-e2e"

var tkB64 = base64.RawURLEncoding

// tkKey is a signing key of a test issuer (or of an attacker) with the
// kid it is published under.
type tkKey struct {
	kid  string
	alg  jwa.SignatureAlgorithm
	priv jwk.Key
	raw  crypto.Signer
}

func tkNewRSAKey(t *testing.T, kid string) *tkKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return tkImportKey(t, kid, jwa.RS256(), k)
}

func tkNewECKey(t *testing.T, kid string) *tkKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return tkImportKey(t, kid, jwa.ES256(), k)
}

func tkImportKey(t *testing.T, kid string, alg jwa.SignatureAlgorithm, raw crypto.Signer) *tkKey {
	t.Helper()
	priv, err := jwk.Import(raw)
	if err != nil {
		t.Fatal(err)
	}
	if kid != "" {
		if err := priv.Set(jwk.KeyIDKey, kid); err != nil {
			t.Fatal(err)
		}
	}
	return &tkKey{kid: kid, alg: alg, priv: priv, raw: raw}
}

// public is the JWK the issuer publishes for k.
func (k *tkKey) public(t *testing.T) jwk.Key {
	t.Helper()
	pub, err := jwk.PublicKeyOf(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]any{jwk.AlgorithmKey: k.alg.String(), jwk.KeyUsageKey: "sig"} {
		if err := pub.Set(name, v); err != nil {
			t.Fatal(err)
		}
	}
	return pub
}

// sign mints a compact JWS over claims with jwx. hdr adds protected
// header parameters (jku, jwk, typ, another kid, …).
func (k *tkKey) sign(t *testing.T, claims map[string]any, hdr map[string]any, opts ...jws.SignOption) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	h := jws.NewHeaders()
	if k.kid != "" {
		_ = h.Set(jws.KeyIDKey, k.kid)
	}
	for name, v := range hdr {
		if err := h.Set(name, v); err != nil {
			t.Fatalf("header %s: %v", name, err)
		}
	}
	opts = append(opts, jws.WithKey(k.alg, k.priv, jws.WithProtectedHeaders(h)))
	tok, err := jws.Sign(payload, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return string(tok)
}

// tkHandMade builds a compact JWS from raw parts, for headers and signatures
// no honest library would produce.
func tkHandMade(t *testing.T, hdr, claims map[string]any, sig func(signingInput string) []byte) string {
	t.Helper()
	hj, err := json.Marshal(hdr)
	if err != nil {
		t.Fatal(err)
	}
	cj, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	in := tkB64.EncodeToString(hj) + "." + tkB64.EncodeToString(cj)
	var s []byte
	if sig != nil {
		s = sig(in)
	}
	return in + "." + tkB64.EncodeToString(s)
}

// tkClaims is a valid access token's claims for iss/sub, changed by mod.
func tkClaims(iss, sub string, mod func(c map[string]any)) map[string]any {
	now := time.Now()
	c := map[string]any{
		"iss":    iss,
		"sub":    sub,
		"aud":    []string{"api://other", tkAudience},
		"exp":    now.Add(10 * time.Minute).Unix(),
		"iat":    now.Add(-5 * time.Second).Unix(),
		"jti":    tkRandHex(8),
		"email":  sub + "@example.test",
		"groups": []string{"dev"},
		"scope":  "openid reports:read",
	}
	if mod != nil {
		mod(c)
	}
	return c
}

// tkJWKS is an issuer's JWKS endpoint on loopback whose key set and
// status the test changes, counting every request.
type tkJWKS struct {
	URL          string
	srv          *httptest.Server
	body         atomic.Pointer[[]byte]
	status       atomic.Int32
	cacheControl string
	hits         atomic.Int64
}

// tkStartJWKS serves keys at URL+"/jwks". cacheControl, when not "", is sent
// with every answer (jwk.Cache derives its refresh schedule from it).
func tkStartJWKS(t *testing.T, cacheControl string, keys ...*tkKey) *tkJWKS {
	t.Helper()
	j := &tkJWKS{cacheControl: cacheControl}
	j.status.Store(http.StatusOK)
	j.publish(t, keys...)
	j.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j.hits.Add(1)
		if j.cacheControl != "" {
			w.Header().Set("Cache-Control", j.cacheControl)
		}
		if s := int(j.status.Load()); s != http.StatusOK {
			http.Error(w, "unavailable", s)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*j.body.Load())
	}))
	j.URL = j.srv.URL
	t.Cleanup(j.srv.Close)
	return j
}

func (j *tkJWKS) publish(t *testing.T, keys ...*tkKey) {
	t.Helper()
	set := jwk.NewSet()
	for _, k := range keys {
		if err := set.AddKey(k.public(t)); err != nil {
			t.Fatal(err)
		}
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	j.body.Store(&b)
}

func (j *tkJWKS) publishRaw(b []byte) { j.body.Store(&b) }

// tkCall sends one API request (Accept: application/json) to edgeauth.
func tkCall(t *testing.T, c *http.Client, method, url, authz string, hdr http.Header) (*http.Response, []byte) {
	t.Helper()
	h := hdr.Clone()
	if h == nil {
		h = http.Header{}
	}
	if h.Get("Accept") == "" {
		h.Set("Accept", "application/json")
	}
	if authz != "" {
		h.Set("Authorization", authz)
	}
	return e2etest.Do(t, c, method, url, h, nil)
}

func tkBearer(tok string) string { return "Bearer " + tok }

// tkParseChallenge splits a WWW-Authenticate value with one challenge into
// its scheme and auth-params (RFC 9110 §11.2), unquoting quoted strings.
func tkParseChallenge(v string) (scheme string, params map[string]string, err error) {
	params = map[string]string{}
	scheme, rest, _ := strings.Cut(v, " ")
	for rest = strings.TrimSpace(rest); rest != ""; {
		name, after, ok := strings.Cut(rest, "=")
		if !ok {
			return "", nil, fmt.Errorf("param without '=' in %q", v)
		}
		name = strings.ToLower(strings.TrimSpace(name))
		var val string
		if strings.HasPrefix(after, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(after) && after[i] != '"'; i++ {
				if after[i] == '\\' && i+1 < len(after) {
					i++
				}
				b.WriteByte(after[i])
			}
			if i >= len(after) {
				return "", nil, fmt.Errorf("unterminated quoted string in %q", v)
			}
			val, after = b.String(), after[i+1:]
		} else {
			end := strings.IndexByte(after, ',')
			if end < 0 {
				end = len(after)
			}
			val, after = strings.TrimSpace(after[:end]), after[end:]
		}
		if _, dup := params[name]; dup {
			return "", nil, fmt.Errorf("duplicate param %s in %q", name, v)
		}
		params[name] = val
		rest = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(after), ","))
	}
	return scheme, params, nil
}

// tkErrBody is errpage's JSON answer.
type tkErrBody struct {
	Error     string `json:"error"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
}

func tkDecodeErr(t *testing.T, resp *http.Response, body []byte) tkErrBody {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type = %q, want JSON; body %s", ct, body)
	}
	var e tkErrBody
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	if e.RequestID == "" || e.RequestID != resp.Header.Get("X-Request-Id") {
		t.Errorf("request_id = %q, X-Request-Id = %q: want the same, non-empty", e.RequestID, resp.Header.Get("X-Request-Id"))
	}
	return e
}

// tkInternals are strings a rejection must never show a client: library
// and Go names, our key ids, and the words of internal causes that would
// tell an attacker which check caught the forgery.
func tkInternals(kids ...string) []string {
	return append([]string{"jwx", "jws", "jwk", "jwt.", "rsa", "ecdsa", "crypto", "kid", "key", "signature",
		"panic", "goroutine", ".go:", "base64", "json:", "verify", "httprc"}, kids...)
}

// tkWantChallenge checks a 401/403 answer: status, RFC 6750 §3 challenge
// with the scheme and error code, a fixed client-safe description, the
// JSON body with the same code and the request id.
func tkWantChallenge(t *testing.T, resp *http.Response, body []byte, status int, scheme, code string, leaks []string) map[string]string {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, status, body)
	}
	wa := resp.Header.Values("WWW-Authenticate")
	if len(wa) != 1 {
		t.Fatalf("WWW-Authenticate = %q, want exactly one", wa)
	}
	gotScheme, params, err := tkParseChallenge(wa[0])
	if err != nil {
		t.Fatal(err)
	}
	if gotScheme != scheme || params["error"] != code || params["error_description"] == "" {
		t.Errorf("WWW-Authenticate = %q, want scheme %s with error=%q and a description", wa[0], scheme, code)
	}
	e := tkDecodeErr(t, resp, body)
	if e.Error != code {
		t.Errorf("body error = %q, want %q", e.Error, code)
	}
	for _, s := range leaks {
		for what, v := range map[string]string{"error_description": params["error_description"], "body": e.Message} {
			if strings.Contains(strings.ToLower(v), strings.ToLower(s)) {
				t.Errorf("%s %q reveals %q", what, v, s)
			}
		}
	}
	return params
}

// tkPipeline is the main test stack: two issuers, one edgeauth, one upstream.
type tkPipeline struct {
	ea         *e2etest.Edgeauth
	up         *e2etest.Upstream
	c          *http.Client
	issA, issB *tkJWKS
	aRSA, aEC  *tkKey
	bRSA       *tkKey
	adminToken string
}

func tkStartPipeline(t *testing.T) *tkPipeline {
	t.Helper()
	p := &tkPipeline{
		aRSA: tkNewRSAKey(t, "a-rsa-2026"),
		aEC:  tkNewECKey(t, "a-ec-2026"),
		bRSA: tkNewRSAKey(t, "b-rsa-2026"),
	}
	p.issA = tkStartJWKS(t, "", p.aRSA, p.aEC)
	p.issB = tkStartJWKS(t, "", p.bRSA)
	p.up = e2etest.StartUpstream(t)
	port, adminPort := e2etest.FreePort(t), e2etest.FreePort(t)
	p.adminToken = e2etest.RandomHex(t, 32)
	route := func(name, path, extra string) string {
		// risk_mode off: this test is about tokens, not device signals.
		return fmt.Sprintf("  - name: %s\n    path: %s\n    upstream: %q\n    risk_mode: \"off\"\n%s", name, path, p.up.URL, extra)
	}
	cfg := fmt.Sprintf(`log: {level: info, format: json}
listen: "127.0.0.1:%d"
external_url: "http://127.0.0.1:%d"
admin:
  listen: "127.0.0.1:%d"
  token: %q
tokens:
  issuers:
    - issuer: %q
      jwks_url: "%s/jwks"
      audiences: [%q]
      algorithms: [RS256, ES256]
    - issuer: %q
      jwks_url: "%s/jwks"
      audiences: [%q]
routes:
`, port, port, adminPort, p.adminToken, p.issA.URL, p.issA.URL, tkAudience, p.issB.URL, p.issB.URL, tkAudience) +
		route("api", "/api/", fmt.Sprintf("    token_issuers: [%q]\n", p.issA.URL)) +
		route("any", "/any/", "") +
		route("scoped", "/scoped/", "    scopes: [reports:write]\n") +
		route("admins", "/admins/", "    allow: {groups: [admins]}\n") +
		route("mfa", "/mfa/", "    acr: [mfa]\n")
	p.ea = e2etest.StartEdgeauth(t, cfg)
	p.c = e2etest.NewClient(t)
	// Readiness does not wait for the first JWKS fetch (tokens fail closed
	// until then); wait for both issuers' keys, then forget the probes.
	for _, probe := range []struct {
		path string
		key  *tkKey
		iss  string
	}{{"/api/ready", p.aRSA, p.issA.URL}, {"/any/ready", p.bRSA, p.issB.URL}} {
		tok := probe.key.sign(t, tkClaims(probe.iss, "probe", nil), nil)
		e2etest.Eventually(t, 10*time.Second, "first JWKS fetch", func() bool {
			resp, _ := tkCall(t, p.c, http.MethodGet, p.ea.URL+probe.path, tkBearer(tok), nil)
			return resp.StatusCode == http.StatusOK
		})
	}
	p.up.Reset()
	return p
}

// TestE2ETokenPipeline drives bearer tokens through the real binary:
// identity from claims, the attack suite, scopes, policy, RFC 9470 step-up,
// offboarding and DPoP.
func TestE2ETokenPipeline(t *testing.T) {
	t.Parallel()
	p := tkStartPipeline(t)
	base := p.ea.URL
	A, B := p.issA.URL, p.issB.URL

	t.Run("valid token reaches the app with identity from its claims; spoofed identity replaced", func(t *testing.T) {
		p.up.Reset()
		for _, k := range []*tkKey{p.aRSA, p.aEC} {
			tok := k.sign(t, tkClaims(A, "alice-"+k.alg.String(), func(c map[string]any) {
				c["groups"] = []string{"dev", "ops"}
			}), nil)
			const spoof = "spoofed-7f3a"
			hdr := http.Header{
				"X-Auth-Request-User":   {spoof},
				"X-Auth-Request-Email":  {spoof + "@evil.test"},
				"X-Auth-Request-Groups": {"admins," + spoof},
				"X_Auth_Request_User":   {spoof}, // underscore spelling some servers fold into the dash form
			}
			resp, body := tkCall(t, p.c, http.MethodGet, base+"/api/orders?page=2", tkBearer(tok), hdr)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: status %d, body %s", k.alg, resp.StatusCode, body)
			}
			reqs := p.up.Requests()
			last := reqs[len(reqs)-1]
			got := map[string]string{
				"user":   strings.Join(last.Header.Values("X-Auth-Request-User"), "|"),
				"email":  strings.Join(last.Header.Values("X-Auth-Request-Email"), "|"),
				"groups": strings.Join(last.Header.Values("X-Auth-Request-Groups"), "|"),
				"path":   last.Path + "?" + last.RawQuery,
			}
			want := map[string]string{
				"user": "alice-" + k.alg.String(), "email": "alice-" + k.alg.String() + "@example.test",
				"groups": "dev,ops", "path": "/api/orders?page=2",
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("%s: identity at the upstream (-want +got):\n%s", k.alg, d)
			}
			if leaked := p.up.HeadersContaining(spoof); len(leaked) != 0 {
				t.Errorf("%s: client-sent identity reached the app: %q", k.alg, leaked)
			}
		}
		if n := p.up.Count(); n != 2 {
			t.Errorf("upstream saw %d requests, want 2", n)
		}
	})

	t.Run("attack suite: each forged or misused token is 401 invalid_token and never reaches the app", func(t *testing.T) {
		attacker := tkNewRSAKey(t, "attacker-1")
		var attackerHits atomic.Int64
		attackerJWKS := func() *httptest.Server {
			set := jwk.NewSet()
			_ = set.AddKey(attacker.public(t))
			b, _ := json.Marshal(set)
			s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				attackerHits.Add(1)
				_, _ = w.Write(b)
			}))
			t.Cleanup(s.Close)
			return s
		}()
		pubDER, err := x509.MarshalPKIXPublicKey(p.aRSA.raw.Public())
		if err != nil {
			t.Fatal(err)
		}
		pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
		hs256 := func(secret []byte) func(string) []byte {
			return func(in string) []byte {
				m := hmac.New(sha256.New, secret)
				m.Write([]byte(in))
				return m.Sum(nil)
			}
		}
		valid := func() map[string]any { return tkClaims(A, "mallory", nil) }
		good := p.aRSA.sign(t, valid(), nil)
		parts := strings.Split(good, ".")

		cases := []struct {
			name  string
			token string
		}{
			// CVE-2015-9235 family: alg none accepted as "already verified".
			{"alg none, no signature", tkHandMade(t, map[string]any{"alg": "none", "kid": p.aRSA.kid}, valid(), nil)},
			{"alg nOnE with a signature", tkHandMade(t, map[string]any{"alg": "nOnE", "kid": p.aRSA.kid}, valid(),
				func(string) []byte { return []byte("sig") })},
			// Key confusion: HS256 keyed with our RSA public key (PEM and
			// DER), as a verifier that hands the JWKS key to HMAC would.
			{"HS256 keyed with the RSA public key (PEM)", tkHandMade(t, map[string]any{"alg": "HS256", "kid": p.aRSA.kid}, valid(), hs256(pubPEM))},
			{"HS256 keyed with the RSA public key (DER)", tkHandMade(t, map[string]any{"alg": "HS256", "kid": p.aRSA.kid}, valid(), hs256(pubDER))},
			// CVE-2022-21449 "psychic signatures": r = s = 0.
			{"ES256 zero signature", tkHandMade(t, map[string]any{"alg": "ES256", "kid": p.aEC.kid}, valid(),
				func(string) []byte { return make([]byte, 64) })},
			{"signature stripped", parts[0] + "." + parts[1] + "."},
			{"payload altered after signing", parts[0] + "." + tkB64.EncodeToString(tkJSON(t, tkClaims(A, "admin", nil))) + "." + parts[2]},
			{"expired", p.aRSA.sign(t, tkClaims(A, "mallory", func(c map[string]any) {
				c["exp"] = time.Now().Add(-10 * time.Minute).Unix()
				c["iat"] = time.Now().Add(-20 * time.Minute).Unix()
			}), nil)},
			{"wrong iss", p.aRSA.sign(t, tkClaims("https://evil.test", "mallory", nil), nil)},
			{"iss of A with a trailing slash", p.aRSA.sign(t, tkClaims(A+"/", "mallory", nil), nil)},
			{"wrong aud", p.aRSA.sign(t, tkClaims(A, "mallory", func(c map[string]any) { c["aud"] = []string{"api://other"} }), nil)},
			{"aud missing", p.aRSA.sign(t, tkClaims(A, "mallory", func(c map[string]any) { delete(c, "aud") }), nil)},
			// Key-pointing headers must never be followed (RFC 8725 §3.10).
			{"jku pointing at an attacker JWKS", attacker.sign(t, valid(), map[string]any{jws.JWKSetURLKey: attackerJWKS.URL + "/jwks"})},
			{"jku with our kid", tkHandMade(t, map[string]any{"alg": "RS256", "kid": p.aRSA.kid, "jku": attackerJWKS.URL + "/jwks"}, valid(),
				func(in string) []byte { return tkRSASign(t, attacker, in) })},
			{"embedded attacker jwk", attacker.sign(t, valid(), map[string]any{jws.JWKKey: attacker.public(t)})},
			// An issuer B token is genuine, but /api/ trusts only A.
			{"token of issuer B on a route that trusts only A", p.bRSA.sign(t, tkClaims(B, "mallory", nil), nil)},
			{"JSON serialization", p.aRSA.sign(t, valid(), nil, jws.WithJSON())},
			{"unknown crit", p.aRSA.sign(t, valid(), map[string]any{"crit": []string{"exp-ext"}, "exp-ext": true})},
			{"duplicate sub in claims", func() string {
				// Signed honestly with A's key: only strict parsing stops it.
				raw := strings.Replace(string(tkJSON(t, valid())), `"sub":"mallory"`, `"sub":"mallory","sub":"admin"`, 1)
				return tkSignRaw(t, p.aRSA, []byte(raw))
			}()},
		}
		p.up.Reset()
		leaks := tkInternals(p.aRSA.kid, p.aEC.kid, p.bRSA.kid, "attacker-1")
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				resp, body := tkCall(t, p.c, http.MethodGet, base+"/api/secret", tkBearer(tc.token), nil)
				tkWantChallenge(t, resp, body, http.StatusUnauthorized, "Bearer", "invalid_token", leaks)
			})
		}

		t.Run("1 MiB token", func(t *testing.T) {
			tok := strings.Repeat("A", 1<<20)
			status := tkRawGET(t, p.ea.URL, "/api/secret", "Authorization: Bearer "+tok)
			t.Logf("1 MiB token: status %d", status)
			if status != http.StatusRequestHeaderFieldsTooLarge && status != http.StatusUnauthorized {
				t.Errorf("status = %d, want 431 or 401", status)
			}
		})

		if n := p.up.Count(); n != 0 {
			t.Errorf("upstream saw %d requests during the attack suite, want 0: %+v", n, p.up.Requests())
		}
		if n := attackerHits.Load(); n != 0 {
			t.Errorf("the attacker's JWKS was fetched %d times, want 0", n)
		}
		// Positive control: the same issuer B token shape passes where B is
		// trusted, so the cross-issuer case failed for the right reason.
		resp, body := tkCall(t, p.c, http.MethodGet, base+"/any/x", tkBearer(p.bRSA.sign(t, tkClaims(B, "bob", nil), nil)), nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("issuer B token on a route trusting every issuer: status %d, body %s", resp.StatusCode, body)
		}
	})

	t.Run("missing scope is 403 insufficient_scope with the scope named", func(t *testing.T) {
		p.up.Reset()
		tok := p.aRSA.sign(t, tkClaims(A, "dave", nil), nil) // scope "openid reports:read"
		resp, body := tkCall(t, p.c, http.MethodGet, base+"/scoped/report", tkBearer(tok), nil)
		params := tkWantChallenge(t, resp, body, http.StatusForbidden, "Bearer", "insufficient_scope", tkInternals())
		if params["scope"] != "reports:write" {
			t.Errorf("scope = %q, want reports:write", params["scope"])
		}
		withScope := p.aRSA.sign(t, tkClaims(A, "dave", func(c map[string]any) { c["scope"] = []string{"reports:write"} }), nil)
		if resp, body := tkCall(t, p.c, http.MethodGet, base+"/scoped/report", tkBearer(withScope), nil); resp.StatusCode != http.StatusOK {
			t.Errorf("token with the scope (as an array): status %d, body %s", resp.StatusCode, body)
		}
		if n := p.up.Count(); n != 1 {
			t.Errorf("upstream saw %d requests, want 1", n)
		}
	})

	t.Run("no Authorization: API client 401 without an error code, browser 401 without OIDC", func(t *testing.T) {
		p.up.Reset()
		resp, body := tkCall(t, p.c, http.MethodGet, base+"/api/x", "", nil)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status = %d, body %s", resp.StatusCode, body)
		}
		scheme, params, err := tkParseChallenge(resp.Header.Get("WWW-Authenticate"))
		if err != nil {
			t.Fatal(err)
		}
		// RFC 6750 §3.1: no error code when the request had no credentials.
		if _, hasErr := params["error"]; scheme != "Bearer" || hasErr {
			t.Errorf("WWW-Authenticate = %q, want a Bearer challenge without error", resp.Header.Get("WWW-Authenticate"))
		}
		tkDecodeErr(t, resp, body)

		resp, body = e2etest.Navigate(t, p.c, base+"/api/x", nil)
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Location") != "" {
			t.Errorf("browser navigation without OIDC: status %d, Location %q; body %s", resp.StatusCode, resp.Header.Get("Location"), body)
		}
		if n := p.up.Count(); n != 0 {
			t.Errorf("upstream saw %d requests, want 0", n)
		}
	})

	t.Run("allow rules apply to tokens: no group is 403 with reason and request id", func(t *testing.T) {
		p.up.Reset()
		resp, body := tkCall(t, p.c, http.MethodGet, base+"/admins/panel", tkBearer(p.aRSA.sign(t, tkClaims(A, "erin", nil), nil)), nil)
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("status = %d, body %s", resp.StatusCode, body)
		}
		if e := tkDecodeErr(t, resp, body); e.Error == "" {
			t.Errorf("no reason code in %s", body)
		}
		admin := p.aRSA.sign(t, tkClaims(A, "erin", func(c map[string]any) { c["groups"] = []string{"dev", "admins"} }), nil)
		if resp, body := tkCall(t, p.c, http.MethodGet, base+"/admins/panel", tkBearer(admin), nil); resp.StatusCode != http.StatusOK {
			t.Errorf("member of admins: status %d, body %s", resp.StatusCode, body)
		}
		if n := p.up.Count(); n != 1 {
			t.Errorf("upstream saw %d requests, want 1", n)
		}
	})

	t.Run("acr: pwd gets RFC 9470 insufficient_user_authentication, mfa passes", func(t *testing.T) {
		p.up.Reset()
		pwd := p.aRSA.sign(t, tkClaims(A, "frank", func(c map[string]any) { c["acr"] = "pwd" }), nil)
		resp, body := tkCall(t, p.c, http.MethodGet, base+"/mfa/x", tkBearer(pwd), nil)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status = %d, body %s", resp.StatusCode, body)
		}
		scheme, params, err := tkParseChallenge(resp.Header.Get("WWW-Authenticate"))
		if err != nil {
			t.Fatal(err)
		}
		if scheme != "Bearer" || params["error"] != "insufficient_user_authentication" || params["acr_values"] != "mfa" {
			t.Errorf("WWW-Authenticate = %q, want Bearer error=insufficient_user_authentication acr_values=mfa", resp.Header.Get("WWW-Authenticate"))
		}
		tkDecodeErr(t, resp, body)
		mfa := p.aRSA.sign(t, tkClaims(A, "frank", func(c map[string]any) { c["acr"] = "mfa" }), nil)
		if resp, body := tkCall(t, p.c, http.MethodGet, base+"/mfa/x", tkBearer(mfa), nil); resp.StatusCode != http.StatusOK {
			t.Errorf("acr=mfa: status %d, body %s", resp.StatusCode, body)
		}
		if n := p.up.Count(); n != 1 {
			t.Errorf("upstream saw %d requests, want 1", n)
		}
	})

	t.Run("offboarding through the admin API refuses the cached token within 1s", func(t *testing.T) {
		tok := p.aRSA.sign(t, tkClaims(A, "carol", nil), nil)
		other := p.aRSA.sign(t, tkClaims(A, "carl", nil), nil)
		for i := 0; i < 3; i++ { // the first verifies, the rest are cache hits
			for _, tk := range []string{tok, other} {
				if resp, body := tkCall(t, p.c, http.MethodGet, base+"/api/me", tkBearer(tk), nil); resp.StatusCode != http.StatusOK {
					t.Fatalf("before offboarding: status %d, body %s", resp.StatusCode, body)
				}
			}
		}
		resp, body := tkCall(t, p.c, http.MethodDelete, p.ea.AdminURL+"/admin/users/carol/sessions?iss="+A, "Bearer "+p.adminToken, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("admin DELETE: status %d, body %s", resp.StatusCode, body)
		}
		revoked := time.Now()
		e2etest.Eventually(t, time.Second, "revoked token refused", func() bool {
			resp, _ := tkCall(t, p.c, http.MethodGet, base+"/api/me", tkBearer(tok), nil)
			return resp.StatusCode == http.StatusUnauthorized
		})
		t.Logf("cached token refused %s after the admin call", time.Since(revoked).Round(time.Millisecond))
		resp, body = tkCall(t, p.c, http.MethodGet, base+"/api/me", tkBearer(tok), nil)
		tkWantChallenge(t, resp, body, http.StatusUnauthorized, "Bearer", "invalid_token", tkInternals())
		if resp, body := tkCall(t, p.c, http.MethodGet, base+"/api/me", tkBearer(other), nil); resp.StatusCode != http.StatusOK {
			t.Errorf("another subject after offboarding carol: status %d, body %s", resp.StatusCode, body)
		}
	})

	t.Run("DPoP: bound token with a valid proof passes; as Bearer or with a replayed proof it is 401", func(t *testing.T) {
		p.up.Reset()
		holder := tkNewECKey(t, "")
		jkt, err := holder.priv.Thumbprint(crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		tok := p.aEC.sign(t, tkClaims(A, "grace", func(c map[string]any) {
			c["cnf"] = map[string]any{"jkt": tkB64.EncodeToString(jkt)}
		}), nil)
		proof := func(method, htu string) string {
			ath := sha256.Sum256([]byte(tok))
			return holder.sign(t, map[string]any{
				"jti": tkRandHex(12), "htm": method, "htu": htu, "iat": time.Now().Unix(),
				"ath": tkB64.EncodeToString(ath[:]),
			}, map[string]any{jws.TypeKey: "dpop+jwt", jws.JWKKey: holder.public(t)})
		}
		// htu is external_url + path (RFC 9449 §4.3): here external_url is
		// the listener itself.
		path := "/api/dpop?x=1"
		pr := proof(http.MethodPost, base+"/api/dpop")
		resp, body := tkCall(t, p.c, http.MethodPost, base+path, "DPoP "+tok, http.Header{"DPoP": {pr}})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("valid proof: status %d, body %s", resp.StatusCode, body)
		}
		if got := p.up.Requests()[0].Header.Get("X-Auth-Request-User"); got != "grace" {
			t.Errorf("X-Auth-Request-User = %q, want grace", got)
		}

		// RFC 9449 §7.2: a bound token sent as a bearer token is refused.
		resp, body = tkCall(t, p.c, http.MethodPost, base+path, tkBearer(tok), nil)
		tkWantChallenge(t, resp, body, http.StatusUnauthorized, "DPoP", "invalid_token", tkInternals())

		// §11.1: the same proof again is a replay.
		resp, body = tkCall(t, p.c, http.MethodPost, base+path, "DPoP "+tok, http.Header{"DPoP": {pr}})
		tkWantChallenge(t, resp, body, http.StatusUnauthorized, "DPoP", "invalid_dpop_proof", tkInternals())

		// A proof for another URL or method is refused too.
		resp, body = tkCall(t, p.c, http.MethodPost, base+path, "DPoP "+tok, http.Header{"DPoP": {proof(http.MethodPost, base+"/api/other")}})
		tkWantChallenge(t, resp, body, http.StatusUnauthorized, "DPoP", "invalid_dpop_proof", tkInternals())
		resp, body = tkCall(t, p.c, http.MethodPost, base+path, "DPoP "+tok, http.Header{"DPoP": {proof(http.MethodGet, base+"/api/dpop")}})
		tkWantChallenge(t, resp, body, http.StatusUnauthorized, "DPoP", "invalid_dpop_proof", tkInternals())

		if n := p.up.Count(); n != 1 {
			t.Errorf("upstream saw %d requests, want 1", n)
		}
	})
}

func tkRandHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return fmt.Sprintf("%x", b)
}

func tkJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tkRSASign(t *testing.T, k *tkKey, in string) []byte {
	t.Helper()
	h := sha256.Sum256([]byte(in))
	s, err := rsa.SignPKCS1v15(rand.Reader, k.raw.(*rsa.PrivateKey), crypto.SHA256, h[:])
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tkSignRaw signs payload bytes exactly as given (no re-encoding of the
// JSON), with k's kid.
func tkSignRaw(t *testing.T, k *tkKey, payload []byte) string {
	t.Helper()
	hj := tkJSON(t, map[string]any{"alg": k.alg.String(), "kid": k.kid})
	in := tkB64.EncodeToString(hj) + "." + tkB64.EncodeToString(payload)
	return in + "." + tkB64.EncodeToString(tkRSASign(t, k, in))
}

// tkRawGET sends a GET with one extra header line over a plain TCP
// connection and returns the status edgeauth answered with. It writes and
// reads concurrently: a server that refuses an oversized head answers
// and closes while the client is still writing.
func tkRawGET(t *testing.T, baseURL, path, headerLine string) int {
	t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(baseURL, "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	req := "GET " + path + " HTTP/1.1\r\nHost: " + strings.TrimPrefix(baseURL, "http://") + "\r\nAccept: application/json\r\n" +
		headerLine + "\r\nConnection: close\r\n\r\n"
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = conn.Write([]byte(req)) // may fail once the server has answered and closed
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer to an oversized request: %v", err)
	}
	resp.Body.Close()
	_ = conn.Close()
	wg.Wait()
	return resp.StatusCode
}

// TestE2ETokenJWKSRotation runs its own edgeauth with refetch_interval 2s
// against a JWKS that asks to be cached for an hour, so every fetch after
// the first is one an unknown kid forced: rotation, removal, the bound on
// refetches under a flood of random kids, and a provider that breaks or
// goes away after start.
func TestE2ETokenJWKSRotation(t *testing.T) {
	t.Parallel()
	const refetch = 2 * time.Second
	k1, k2 := tkNewRSAKey(t, "rot-1"), tkNewECKey(t, "rot-2")
	attacker := tkNewECKey(t, "")
	j := tkStartJWKS(t, "max-age=3600", k1)
	iss := j.URL
	up := e2etest.StartUpstream(t)
	port, adminPort := e2etest.FreePort(t), e2etest.FreePort(t)
	ea := e2etest.StartEdgeauth(t, fmt.Sprintf(`log: {level: info, format: json}
listen: "127.0.0.1:%d"
admin: {listen: "127.0.0.1:%d"}
tokens:
  refetch_interval: %s
  issuers:
    - issuer: %q
      jwks_url: "%s/jwks"
      audiences: [%q]
routes:
  - name: api
    path: /
    upstream: %q
    risk_mode: "off"
`, port, adminPort, refetch, iss, iss, tkAudience, up.URL))
	c := e2etest.NewClient(t)
	get := func(tok string) int {
		t.Helper()
		resp, _ := tkCall(t, c, http.MethodGet, ea.URL+"/v1/items", tkBearer(tok), nil)
		return resp.StatusCode
	}
	fresh := func(k *tkKey) string { return k.sign(t, tkClaims(iss, "svc-"+k.kid, nil), nil) }
	// unknownKid is a token whose kid the issuer never published: it makes
	// edgeauth refetch the JWKS when the refetch gate is open.
	unknownKid := func() string {
		return attacker.sign(t, tkClaims(iss, "svc", nil), map[string]any{jws.KeyIDKey: "rand-" + tkRandHex(8)})
	}

	cached := fresh(k1)
	e2etest.Eventually(t, 10*time.Second, "first JWKS fetch", func() bool { return get(cached) == http.StatusOK })

	t.Run("a flood of random kids refetches at most once per refetch_interval", func(t *testing.T) {
		const workers, perWorker = 8, 25
		toks := make([]string, 0, workers*perWorker)
		for range workers * perWorker {
			toks = append(toks, unknownKid())
		}
		before, upBefore := j.hits.Load(), up.Count()
		start := time.Now()
		statuses := make(chan int, len(toks))
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func(mine []string) {
				defer wg.Done()
				for _, tok := range mine {
					req, err := http.NewRequest(http.MethodGet, ea.URL+"/v1/items", nil)
					if err != nil {
						statuses <- -1
						continue
					}
					req.Header.Set("Authorization", tkBearer(tok))
					resp, err := c.Do(req)
					if err != nil {
						statuses <- -1
						continue
					}
					resp.Body.Close()
					statuses <- resp.StatusCode
				}
			}(toks[w*perWorker : (w+1)*perWorker])
		}
		wg.Wait()
		elapsed := time.Since(start)
		close(statuses)
		counts := map[int]int{}
		for s := range statuses {
			counts[s]++
		}
		if d := cmp.Diff(map[int]int{http.StatusUnauthorized: len(toks)}, counts); d != "" {
			t.Errorf("statuses of the flood (-want +got):\n%s", d)
		}
		fetches := j.hits.Load() - before
		// The first unknown kid opens the gate; after that one fetch per
		// interval at most, whatever the request rate.
		limit := 2 + int64(elapsed/refetch)
		t.Logf("%d requests with random kids in %s: %d JWKS fetches (limit %d)", len(toks), elapsed.Round(time.Millisecond), fetches, limit)
		if fetches < 1 || fetches > limit {
			t.Errorf("JWKS fetched %d times during the flood, want 1..%d", fetches, limit)
		}
		if n := up.Count() - upBefore; n != 0 {
			t.Errorf("upstream saw %d flood requests, want 0", n)
		}
	})

	t.Run("rotation: a new key is accepted after the refetch its unknown kid triggers", func(t *testing.T) {
		j.publish(t, k1, k2)
		before := j.hits.Load()
		start := time.Now()
		tok := fresh(k2)
		e2etest.Eventually(t, 3*refetch+5*time.Second, "token signed with the new key accepted", func() bool { return get(tok) == http.StatusOK })
		elapsed := time.Since(start)
		if fetches, limit := j.hits.Load()-before, 1+int64(elapsed/refetch); fetches < 1 || fetches > limit {
			t.Errorf("%d JWKS fetches until the new key was used (in %s), want 1..%d", fetches, elapsed.Round(time.Millisecond), limit)
		}
		if s := get(cached); s != http.StatusOK {
			t.Errorf("token of the old key while it is still published: status %d", s)
		}
	})

	t.Run("removal: tokens of a key no longer published are rejected once the set is refetched", func(t *testing.T) {
		j.publish(t, k2)
		e2etest.Eventually(t, 3*refetch+5*time.Second, "fresh token of the removed key rejected", func() bool {
			_ = get(unknownKid()) // opens a refetch when the gate allows
			return get(fresh(k1)) == http.StatusUnauthorized
		})
		if s := get(cached); s != http.StatusUnauthorized {
			t.Errorf("token of the removed key verified before the removal (served from the verified-token cache): status %d, want 401", s)
		}
		if s := get(fresh(k2)); s != http.StatusOK {
			t.Errorf("token of the remaining key: status %d", s)
		}
	})

	// The last good key set keeps serving whatever the provider does next.
	refetchOnce := func(t *testing.T, what string, happened func() bool) {
		t.Helper()
		e2etest.Eventually(t, 3*refetch+5*time.Second, what, func() bool {
			_ = get(unknownKid())
			return happened()
		})
		if s := get(fresh(k2)); s != http.StatusOK {
			t.Errorf("after %s: token of the cached key: status %d, want 200", what, s)
		}
	}
	t.Run("an empty JWKS never replaces the good one", func(t *testing.T) {
		j.publishRaw([]byte(`{"keys":[]}`))
		before := j.hits.Load()
		refetchOnce(t, "fetch of the empty set", func() bool { return j.hits.Load() > before })
	})
	t.Run("a JWKS answering 503 keeps the cached keys", func(t *testing.T) {
		j.status.Store(http.StatusServiceUnavailable)
		before := j.hits.Load()
		refetchOnce(t, "fetch answered 503", func() bool { return j.hits.Load() > before })
	})
	t.Run("JWKS server down: cached keys still verify", func(t *testing.T) {
		j.srv.Close()
		before := strings.Count(ea.Output(), "connection refused")
		refetchOnce(t, "fetch refused", func() bool { return strings.Count(ea.Output(), "connection refused") > before })
	})
}
