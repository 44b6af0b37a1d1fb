package token

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

func randomKid(t testing.TB) string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return b64s(b)
}

// TestUnknownKidFloodIsRateLimited: a flood of random kids (an attacker
// trying to turn us into a DoS amplifier against the provider) triggers at
// most one JWKS refetch per RefetchInterval.
func TestUnknownKidFloodIsRateLimited(t *testing.T) {
	t.Parallel()
	jwks := newJWKSServer(t, defaultJWKS(t))
	v := newTestVerifier(t, jwks, nil)
	start := jwks.fetches.Load()
	k := testKeySet(t)
	toks := make([][]byte, 200)
	for i := range toks {
		toks[i] = []byte(mkJWT(t, map[string]any{"alg": "RS256", "kid": randomKid(t)}, validClaims(), k.rsa))
	}
	done := make(chan error, len(toks))
	for _, tok := range toks {
		go func() {
			_, err := v.Verify(t.Context(), tok, t0)
			done <- err
		}()
	}
	for range toks {
		if err := <-done; ReasonOf(err) != ReasonUnknownKey {
			t.Fatalf("err = %v, want unknown_key", err)
		}
	}
	if got := jwks.fetches.Load() - start; got > 1 {
		t.Errorf("JWKS fetched %d times for a kid flood within one interval, want <= 1", got)
	}
	// Still inside the interval: no more fetches.
	_, _ = v.Verify(t.Context(), toks[0], t0.Add(29*time.Second))
	if got := jwks.fetches.Load() - start; got > 1 {
		t.Errorf("JWKS fetched %d times before the interval passed", got)
	}
	// After the interval one more refetch is allowed.
	_, _ = v.Verify(t.Context(), toks[1], t0.Add(31*time.Second))
	if got := jwks.fetches.Load() - start; got != 2 {
		t.Errorf("JWKS fetches after interval = %d, want 2", got)
	}
}

// TestJWKSRotationProviderDownAndBrokenResponses walks a key set through
// its life: a new key is picked up by the kid-triggered refetch, the old
// key stops working once it is removed, a provider outage keeps the last
// good set serving, and a broken or empty JWKS never replaces it.
func TestJWKSRotationProviderDownAndBrokenResponses(t *testing.T) {
	t.Parallel()
	k := testKeySet(t)
	jwks := newJWKSServer(t, defaultJWKS(t))
	v := newTestVerifier(t, jwks, nil)
	step := 0
	now := func() time.Time { step++; return t0.Add(time.Duration(step) * 31 * time.Second) }
	tokFor := func(kid string, key any, sub string) []byte {
		return []byte(mkJWT(t, map[string]any{"alg": "RS256", "kid": kid}, with(validClaims(), "sub", sub, "exp", t0.Add(time.Hour).Unix()), key))
	}

	// Rotation: rsa2 published next to rsa1.
	jwks.set(jwksJSON(t, jwkEntry{"rsa1", "RS256", &k.rsa.PublicKey}, jwkEntry{"rsa2", "RS256", &k.rsa2.PublicKey}))
	if _, err := v.Verify(t.Context(), tokFor("rsa2", k.rsa2, "a"), now()); err != nil {
		t.Fatalf("new key after rotation: %v", err)
	}
	// rsa1 removed; the next unknown kid refreshes and rsa1 is gone.
	jwks.set(jwksJSON(t, jwkEntry{"rsa2", "RS256", &k.rsa2.PublicKey}))
	_, _ = v.Verify(t.Context(), tokFor(randomKid(t), k.rsa, "b"), now())
	if _, err := v.Verify(t.Context(), tokFor("rsa1", k.rsa, "c"), now()); ReasonOf(err) != ReasonUnknownKey {
		t.Fatalf("removed key: err = %v, want unknown_key", err)
	}

	bad := []struct {
		name  string
		apply func()
	}{
		{"provider down (500)", func() { jwks.status.Store(http.StatusInternalServerError) }},
		{"empty key set", func() { jwks.status.Store(http.StatusOK); jwks.set([]byte(`{"keys":[]}`)) }},
		{"not JSON", func() { jwks.set([]byte(`{"keys":[`)) }},
		{"only symmetric key", func() { jwks.set([]byte(`{"keys":[{"kty":"oct","kid":"rsa2","k":"c2VjcmV0"}]}`)) }},
		{"only a weak RSA key", func() { jwks.set([]byte(`{"keys":[{"kty":"RSA","kid":"rsa2","n":"AQAB","e":"AQAB"}]}`)) }},
	}
	for i, b := range bad {
		b.apply()
		before := jwks.fetches.Load()
		_, _ = v.Verify(t.Context(), tokFor(randomKid(t), k.rsa2, fmt.Sprint("x", i)), now())
		if jwks.fetches.Load() == before {
			t.Fatalf("%s: no refetch happened, test proves nothing", b.name)
		}
		if _, err := v.Verify(t.Context(), tokFor("rsa2", k.rsa2, fmt.Sprint("y", i)), now()); err != nil {
			t.Errorf("%s: last good key set not serving: %v", b.name, err)
		}
	}

	// Provider gone entirely (connection refused).
	jwks.Close()
	_, _ = v.Verify(t.Context(), tokFor(randomKid(t), k.rsa2, "z1"), now())
	if _, err := v.Verify(t.Context(), tokFor("rsa2", k.rsa2, "z2"), now()); err != nil {
		t.Errorf("provider down: cached keys must still verify: %v", err)
	}
}

// TestDiscovery finds jwks_uri via the issuer's OpenID configuration and
// refuses a document that names another issuer.
func TestDiscovery(t *testing.T) {
	t.Parallel()
	jwks := newJWKSServer(t, defaultJWKS(t))
	var issuerURL string
	mux := http.NewServeMux()
	srv := newHTTPServer(t, mux)
	issuerURL = srv.URL
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q}`, issuerURL, jwks.URL+"/jwks.json")
	})
	// A document at /other that names the root issuer: a mix-up.
	mux.HandleFunc("/other/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q}`, issuerURL, jwks.URL+"/jwks.json")
	})
	v, err := NewVerifier(t.Context(), Options{Issuers: []IssuerOptions{{Issuer: issuerURL, Audiences: []string{testAudience}}}, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if err := v.WaitReady(t.Context()); err != nil {
		t.Fatal(err)
	}
	tok := mkJWT(t, map[string]any{"alg": "ES256", "kid": "ec1"}, with(validClaims(), "iss", issuerURL), testKeySet(t).ec)
	if _, err := v.Verify(t.Context(), []byte(tok), t0); err != nil {
		t.Fatal(err)
	}
	// Mix-up: the document claims a different issuer.
	_, err = NewVerifier(t.Context(), Options{Issuers: []IssuerOptions{{Issuer: issuerURL + "/other", Audiences: []string{testAudience}}}})
	if err == nil {
		t.Error("discovery with mismatched issuer accepted")
	}
}

// TestDiscoveryWaitsForProvider: a provider that is down when edgeauth
// starts must not stop the start. Its tokens are unavailable (503, not
// "invalid") until discovery succeeds in the background, then verify.
func TestDiscoveryWaitsForProvider(t *testing.T) {
	t.Parallel()
	jwks := newJWKSServer(t, defaultJWKS(t))
	var up atomic.Bool
	mux := http.NewServeMux()
	srv := newHTTPServer(t, mux)
	issuerURL := srv.URL
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q}`, issuerURL, jwks.URL+"/jwks.json")
	})
	v, err := NewVerifier(t.Context(), Options{Issuers: []IssuerOptions{{Issuer: issuerURL, Audiences: []string{testAudience}}}, Logger: discardLogger()})
	if err != nil {
		t.Fatalf("a provider down at start stopped the verifier: %v", err)
	}
	defer v.Close()
	tok := mkJWT(t, map[string]any{"alg": "ES256", "kid": "ec1"}, with(validClaims(), "iss", issuerURL), testKeySet(t).ec)
	if _, err := v.Verify(t.Context(), []byte(tok), t0); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("before discovery: %v, want ErrUnavailable", err)
	}
	up.Store(true)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := v.Verify(t.Context(), []byte(tok), t0)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("token still refused 10 s after the provider came up: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCachedTokenOfRemovedKeyRejected: the verified-token cache must not
// keep a token alive after the key that verified it is withdrawn from the
// issuer's JWKS (a key rotated out after a compromise would otherwise keep
// forged tokens passing for up to CacheTTL). A routine refresh that serves
// the same keys must not cost cached tokens a new verification.
//
// Not parallel: testing.AllocsPerRun refuses to run in a parallel test.
func TestCachedTokenOfRemovedKeyRejected(t *testing.T) {
	k := testKeySet(t)
	jwks := newJWKSServer(t, defaultJWKS(t))
	v := newTestVerifier(t, jwks, nil)
	ctx := t.Context()
	old := []byte(mkJWT(t, map[string]any{"alg": "RS256", "kid": "rsa1"}, validClaims(), k.rsa))
	keep := []byte(mkJWT(t, map[string]any{"alg": "ES256", "kid": "ec1"}, validClaims(), k.ec))
	for _, tok := range [][]byte{old, keep} {
		if _, err := v.Verify(ctx, tok, t0); err != nil {
			t.Fatal(err)
		}
	}
	v.cache.Wait()
	refetchAt := func(at time.Time) {
		t.Helper()
		before := jwks.fetches.Load()
		_, _ = v.Verify(ctx, []byte(mkJWT(t, map[string]any{"alg": "ES256", "kid": randomKid(t)}, validClaims(), k.ec)), at)
		if jwks.fetches.Load() == before {
			t.Fatal("no refetch happened, test proves nothing")
		}
	}

	// Unchanged keys, new set version: still a cache hit (cold path
	// allocates dozens of times).
	refetchAt(t0)
	if allocs := testing.AllocsPerRun(50, func() {
		if _, err := v.Verify(ctx, keep, t0); err != nil {
			t.Fatal(err)
		}
	}); allocs > 2 {
		t.Errorf("cached token after an unchanged refresh: %.1f allocs per Verify, want <= 2 (verified again?)", allocs)
	}

	// rsa1 withdrawn.
	jwks.set(jwksJSON(t, jwkEntry{"ec1", "ES256", &k.ec.PublicKey}, jwkEntry{"ed1", "EdDSA", k.ed.Public()}))
	refetchAt(t0.Add(31 * time.Second))
	if _, err := v.Verify(ctx, old, t0.Add(32*time.Second)); ReasonOf(err) != ReasonUnknownKey {
		t.Errorf("cached token of a withdrawn key: err = %v, want unknown_key", err)
	}
	if _, err := v.Verify(ctx, keep, t0.Add(32*time.Second)); err != nil {
		t.Errorf("cached token of a key still published: %v", err)
	}

	// ec1 re-published with other key material: not the key that signed.
	jwks.set(jwksJSON(t, jwkEntry{"ec1", "ES256", &k.ec2.PublicKey}))
	refetchAt(t0.Add(63 * time.Second))
	if _, err := v.Verify(ctx, keep, t0.Add(64*time.Second)); ReasonOf(err) != ReasonBadSignature {
		t.Errorf("cached token whose kid now names another key: err = %v, want bad_signature", err)
	}
}
