package token

import (
	"bytes"
	"testing"
)

func BenchmarkVerifyCacheHit(b *testing.B) {
	jwks := newJWKSServer(b, defaultJWKS(b))
	v := newTestVerifier(b, jwks, nil)
	tok := []byte(rsTok(b, validClaims()))
	if _, err := v.Verify(b.Context(), tok, t0); err != nil {
		b.Fatal(err)
	}
	v.cache.Wait()
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok, t0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyCold measures first sight of a token: strict parsing,
// key lookup, signature and claim checks (the cache is bypassed).
func BenchmarkVerifyCold(b *testing.B) {
	jwks := newJWKSServer(b, defaultJWKS(b))
	v := newTestVerifier(b, jwks, nil)
	k := testKeySet(b)
	for _, bc := range []struct {
		name string
		tok  []byte
	}{
		{"RS256-2048", []byte(rsTok(b, validClaims()))},
		{"ES256", []byte(mkJWT(b, map[string]any{"alg": "ES256", "kid": "ec1"}, validClaims(), k.ec))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := b.Context()
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := v.verifyJWT(ctx, bc.tok, t0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestCacheHitAllocations guards the hot path: a repeated token must not
// allocate.
func TestCacheHitAllocations(t *testing.T) {
	jwks := newJWKSServer(t, defaultJWKS(t))
	v := newTestVerifier(t, jwks, nil)
	tok := []byte(rsTok(t, validClaims()))
	if _, err := v.Verify(t.Context(), tok, t0); err != nil {
		t.Fatal(err)
	}
	v.cache.Wait()
	ctx := t.Context()
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := v.Verify(ctx, tok, t0); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 2 {
		t.Errorf("cache hit allocates %.1f times, want <= 2", allocs)
	}
}

// FuzzVerify: arbitrary input never panics and is never accepted unless it
// is, byte for byte, a token we signed (strict base64url leaves no second
// encoding of a valid token).
func FuzzVerify(f *testing.F) {
	jwks := newJWKSServer(f, defaultJWKS(f))
	v := newTestVerifier(f, jwks, nil)
	k := testKeySet(f)
	valid := [][]byte{
		[]byte(rsTok(f, validClaims())),
		[]byte(mkJWT(f, map[string]any{"alg": "ES256", "kid": "ec1"}, validClaims(), k.ec)),
		[]byte(mkJWT(f, map[string]any{"alg": "HS256"}, validClaims(), hmacSecret)),
	}
	for _, s := range valid {
		f.Add(s)
	}
	f.Add([]byte("eyJhbGciOiJub25lIn0.e30."))
	f.Add([]byte(`{"payload":"e30","signatures":[]}`))
	f.Add([]byte("a.b.c.d.e"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := v.Verify(t.Context(), raw, t0)
		if err != nil {
			return
		}
		for _, s := range valid {
			if bytes.Equal(s, raw) {
				return
			}
		}
		t.Fatalf("accepted a token we never signed: %q -> %+v", raw, c)
	})
}

func FuzzCheckJSON(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1,"a":2}`, `{"a":{"b":[1,{"c":2}]}}`, `[1]`, `{"a":"\xff"}`, `{"a":1}x`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		_ = checkJSON(doc)
	})
}
