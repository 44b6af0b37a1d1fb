package token

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// t0 is the fixed request time of every test.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	testIssuer   = "https://issuer.test"
	testIssuer2  = "https://issuer2.test"
	testAudience = "https://api.test"
)

var hmacSecret = []byte("0123456789abcdef0123456789abcdef-test-secret")

type testKeys struct {
	rsa, rsa2 *rsa.PrivateKey
	ec, ec2   *ecdsa.PrivateKey
	ed        ed25519.PrivateKey
}

var (
	keysOnce sync.Once
	keys     testKeys
)

// testKeySet generates keys once per test binary: RSA-2048 generation is
// too slow to repeat per test.
func testKeySet(t testing.TB) testKeys {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if keys.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if keys.rsa2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if keys.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if keys.ec2, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if _, keys.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
	})
	return keys
}

// jwksJSON publishes the public halves of priv keyed by kid, with alg.
func jwksJSON(t testing.TB, entries ...jwkEntry) []byte {
	t.Helper()
	set := jwk.NewSet()
	for _, e := range entries {
		k, err := jwk.Import(e.pub)
		if err != nil {
			t.Fatal(err)
		}
		_ = k.Set(jwk.KeyIDKey, e.kid)
		if e.alg != "" {
			_ = k.Set(jwk.AlgorithmKey, e.alg)
		}
		_ = k.Set(jwk.KeyUsageKey, "sig")
		if err := set.AddKey(k); err != nil {
			t.Fatal(err)
		}
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type jwkEntry struct {
	kid string
	alg string
	pub any
}

func defaultJWKS(t testing.TB) []byte {
	k := testKeySet(t)
	return jwksJSON(t,
		jwkEntry{"rsa1", "RS256", &k.rsa.PublicKey},
		jwkEntry{"ec1", "ES256", &k.ec.PublicKey},
		jwkEntry{"ed1", "EdDSA", k.ed.Public()},
	)
}

// jwksServer is a real JWKS endpoint on loopback whose body and status
// the test can change, counting every fetch.
type jwksServer struct {
	*httptest.Server
	body    atomic.Pointer[[]byte]
	status  atomic.Int32
	fetches atomic.Int64
}

func newJWKSServer(t testing.TB, body []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.set(body)
	s.status.Store(http.StatusOK)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		if st := int(s.status.Load()); st != http.StatusOK {
			w.WriteHeader(st)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*s.body.Load())
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(b []byte) { s.body.Store(&b) }

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newTestVerifier builds a Verifier for testIssuer (and testIssuer2 when
// jwks2 is non-nil) and waits for the first JWKS fetch.
func newTestVerifier(t testing.TB, jwks *jwksServer, mod func(*Options)) *Verifier {
	t.Helper()
	opts := Options{
		Issuers: []IssuerOptions{{
			Issuer:     testIssuer,
			JWKSURL:    jwks.URL + "/jwks.json",
			Audiences:  []string{testAudience},
			Algorithms: []string{"RS256", "ES256", "EdDSA", "HS256"},
			HMACSecret: hmacSecret,
		}},
		Logger: discardLogger(),
		Now:    func() time.Time { return t0 },
	}
	if mod != nil {
		mod(&opts)
	}
	v, err := NewVerifier(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := v.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return v
}

// claims returns a valid claim set at t0.
func validClaims() map[string]any {
	return map[string]any{
		"iss":   testIssuer,
		"sub":   "user-1",
		"aud":   testAudience,
		"exp":   t0.Add(time.Hour).Unix(),
		"iat":   t0.Add(-time.Minute).Unix(),
		"nbf":   t0.Add(-time.Minute).Unix(),
		"scope": "read write",
		"email": "u1@example.com",
		"acr":   "mfa",
	}
}

func b64s(b []byte) string { return b64.EncodeToString(b) }

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signRaw signs header.payload with key for alg by hand, so tests can
// forge anything a real attacker could (odd headers, duplicate members).
func signRaw(t testing.TB, alg string, key any, input []byte) []byte {
	t.Helper()
	h := sha256.Sum256(input)
	switch alg {
	case "RS256":
		sig, err := rsa.SignPKCS1v15(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, h[:])
		if err != nil {
			t.Fatal(err)
		}
		return sig
	case "PS256":
		sig, err := rsa.SignPSS(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, h[:], nil)
		if err != nil {
			t.Fatal(err)
		}
		return sig
	case "ES256":
		r, s, err := ecdsa.Sign(rand.Reader, key.(*ecdsa.PrivateKey), h[:])
		if err != nil {
			t.Fatal(err)
		}
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		return sig
	case "EdDSA":
		return ed25519.Sign(key.(ed25519.PrivateKey), input)
	case "HS256":
		m := hmac.New(sha256.New, key.([]byte))
		m.Write(input)
		return m.Sum(nil)
	}
	t.Fatalf("signRaw: alg %s", alg)
	return nil
}

// mkRaw builds a compact JWS from literal JSON.
func mkRaw(t testing.TB, hdrJSON, payloadJSON []byte, alg string, key any) string {
	t.Helper()
	input := b64s(hdrJSON) + "." + b64s(payloadJSON)
	return input + "." + b64s(signRaw(t, alg, key, []byte(input)))
}

// mkJWT builds a signed token from maps.
func mkJWT(t testing.TB, hdr, claims map[string]any, key any) string {
	t.Helper()
	return mkRaw(t, mustJSON(t, hdr), mustJSON(t, claims), hdr["alg"].(string), key)
}

func rsTok(t testing.TB, claims map[string]any) string {
	return mkJWT(t, map[string]any{"alg": "RS256", "kid": "rsa1", "typ": "at+jwt"}, claims, testKeySet(t).rsa)
}

func with(m map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

func bigZero() *big.Int { return new(big.Int) }

func joinDots(parts ...string) string { return strings.Join(parts, ".") }

func newHTTPServer(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}
