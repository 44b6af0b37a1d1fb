package token

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestVerifyValidTokens(t *testing.T) {
	t.Parallel()
	jwks := newJWKSServer(t, defaultJWKS(t))
	v := newTestVerifier(t, jwks, nil)
	k := testKeySet(t)
	c := validClaims()
	tests := []struct {
		name string
		tok  string
		want *Claims
	}{
		{"RS256", rsTok(t, c), nil},
		{"ES256", mkJWT(t, map[string]any{"alg": "ES256", "kid": "ec1"}, c, k.ec), nil},
		{"EdDSA", mkJWT(t, map[string]any{"alg": "EdDSA", "kid": "ed1"}, c, k.ed), nil},
		{"HS256 shared secret", mkJWT(t, map[string]any{"alg": "HS256"}, c, hmacSecret), nil},
		{"aud array and scp array", rsTok(t, with(c, "aud", []string{"x", testAudience}, "scope", nil, "scp", []string{"read", "admin"}, "groups", []string{"staff"}, "cnf", map[string]any{"jkt": "abc"})), &Claims{
			Issuer: testIssuer, Subject: "user-1", Audience: []string{"x", testAudience},
			Expiry: t0.Add(time.Hour), NotBefore: t0.Add(-time.Minute), IssuedAt: t0.Add(-time.Minute),
			Scopes: []string{"read", "admin"}, Email: "u1@example.com", ACR: "mfa", Groups: []string{"staff"}, JKT: "abc",
			Claims: map[string][]string{"iss": {testIssuer}, "sub": {"user-1"}, "aud": {"x", testAudience}, "scp": {"read", "admin"},
				"email": {"u1@example.com"}, "acr": {"mfa"}, "groups": {"staff"}},
		}},
		{"expired within leeway", rsTok(t, with(c, "exp", t0.Add(-30*time.Second).Unix())), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := v.Verify(t.Context(), []byte(tc.tok), t0)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want != nil {
				if d := cmp.Diff(tc.want, got, cmpopts.EquateApproxTime(time.Second)); d != "" {
					t.Errorf("claims (-want +got):\n%s", d)
				}
			}
			if got.Subject != "user-1" || got.Issuer != testIssuer {
				t.Errorf("got %s/%s", got.Issuer, got.Subject)
			}
		})
	}
}

// fakeless revocation: a real in-memory implementation of the interface,
// the same contract session.Store satisfies.
type revocations struct {
	mu sync.Mutex
	m  map[[2]string]time.Time
}

func (r *revocations) SubjectRevokedAt(_ context.Context, iss, sub string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.m[[2]string{iss, sub}]
	return t, ok
}

func (r *revocations) revoke(iss, sub string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[[2]string]time.Time{}
	}
	r.m[[2]string{iss, sub}] = at
}

// TestCacheServesRepeatsAndHonoursRevocation: a repeated token is served
// from the cache (no JWKS or signature work), a revoked subject stops
// passing even while cached, and a token issued after revocation passes.
func TestCacheServesRepeatsAndHonoursRevocation(t *testing.T) {
	t.Parallel()
	jwks := newJWKSServer(t, defaultJWKS(t))
	rev := &revocations{}
	v := newTestVerifier(t, jwks, func(o *Options) { o.Revocation = rev })
	tok := []byte(rsTok(t, validClaims()))
	c1, err := v.Verify(t.Context(), tok, t0)
	if err != nil {
		t.Fatal(err)
	}
	v.cache.Wait()
	c2, err := v.Verify(t.Context(), tok, t0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if c1 != c2 {
		t.Error("second verification did not come from the cache")
	}

	// Store-side revocation (another instance or the admin API).
	rev.revoke(testIssuer, "user-1", t0)
	if _, err := v.Verify(t.Context(), tok, t0.Add(2*time.Second)); ReasonOf(err) != ReasonRevoked {
		t.Fatalf("cached token of revoked subject: err = %v", err)
	}
	newer := []byte(rsTok(t, with(validClaims(), "iat", t0.Add(time.Second).Unix(), "sub", "user-1")))
	if _, err := v.Verify(t.Context(), newer, t0.Add(2*time.Second)); err != nil {
		t.Fatalf("token issued after revocation: %v", err)
	}

	// In-process revocation.
	tok2 := []byte(rsTok(t, with(validClaims(), "sub", "user-2")))
	if _, err := v.Verify(t.Context(), tok2, t0); err != nil {
		t.Fatal(err)
	}
	v.cache.Wait()
	v.RevokeSubject(testIssuer, "user-2")
	if _, err := v.Verify(t.Context(), tok2, t0); ReasonOf(err) != ReasonRevoked {
		t.Fatalf("RevokeSubject: err = %v", err)
	}
}

// TestCacheNeverOutlivesExp: a cached token is rejected once exp (plus
// leeway) has passed, even though it is still in the cache.
func TestCacheNeverOutlivesExp(t *testing.T) {
	t.Parallel()
	jwks := newJWKSServer(t, defaultJWKS(t))
	v := newTestVerifier(t, jwks, func(o *Options) { o.Leeway = -1 })
	tok := []byte(rsTok(t, with(validClaims(), "exp", t0.Add(10*time.Second).Unix())))
	if _, err := v.Verify(t.Context(), tok, t0); err != nil {
		t.Fatal(err)
	}
	v.cache.Wait()
	if _, err := v.Verify(t.Context(), tok, t0.Add(10*time.Second)); ReasonOf(err) != ReasonExpired {
		t.Fatalf("err = %v, want expired", err)
	}
}

func TestNewVerifierRejectsBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts Options
	}{
		{"nothing configured", Options{}},
		{"no issuer name", Options{Issuers: []IssuerOptions{{Audiences: []string{"a"}, JWKSURL: "http://127.0.0.1:1/"}}}},
		{"no audiences", Options{Issuers: []IssuerOptions{{Issuer: "x", JWKSURL: "http://127.0.0.1:1/"}}}},
		{"short hmac secret", Options{Issuers: []IssuerOptions{{Issuer: "x", Audiences: []string{"a"}, JWKSURL: "http://127.0.0.1:1/", Algorithms: []string{"HS256"}, HMACSecret: []byte("short")}}}},
		{"dpop hmac", Options{Issuers: []IssuerOptions{{Issuer: "x", Audiences: []string{"a"}, JWKSURL: "http://127.0.0.1:1/"}}, DPoP: DPoPOptions{Algorithms: []string{"HS256"}}}},
		{"introspection without client", Options{Introspection: &IntrospectionOptions{URL: "http://127.0.0.1:1/", Issuer: "x"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v, err := NewVerifier(t.Context(), tc.opts)
			if err == nil {
				v.Close()
				t.Fatal("accepted")
			}
		})
	}
}
