package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

type attackCase struct {
	name   string
	token  string
	reason Reason // expected core reason
}

// attackCases are forged, stale or misused tokens; every one must be
// rejected by Verify with the given reason. attacker is the loopback server
// that serves the attacker's JWKS for the jku/x5u cases.
func attackCases(t *testing.T, attackerURL string) []attackCase {
	k := testKeySet(t)
	c := validClaims()
	good := rsTok(t, c)
	parts := strings.Split(good, ".")
	hdrRS := map[string]any{"alg": "RS256", "kid": "rsa1", "typ": "at+jwt"}

	// Key confusion (CVE-2015-9235 family): HS256 keyed with the RSA public
	// key bytes the provider publishes.
	pubDER, _ := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	hsConfusion := func(key []byte) string {
		in := b64s(mustJSON(t, map[string]any{"alg": "HS256", "kid": "rsa1", "typ": "at+jwt"})) + "." + b64s(mustJSON(t, c))
		m := hmac.New(sha256.New, key)
		m.Write([]byte(in))
		return in + "." + b64s(m.Sum(nil))
	}
	// CVE-2022-21449 "psychic signatures": ECDSA r = s = 0.
	ecIn := b64s(mustJSON(t, map[string]any{"alg": "ES256", "kid": "ec1", "typ": "at+jwt"})) + "." + b64s(mustJSON(t, c))
	zeroSig := make([]byte, 64)

	noneTok := func(alg string, sig string) string {
		return b64s(mustJSON(t, map[string]any{"alg": alg})) + "." + b64s(mustJSON(t, c)) + "." + sig
	}
	attackerKeyHdr := func(extra ...any) string {
		h := with(map[string]any{"alg": "RS256", "kid": "attacker", "typ": "at+jwt"}, extra...)
		return mkJWT(t, h, c, k.rsa2)
	}
	attackerJWK, _ := json.Marshal(map[string]any{"kty": "RSA", "kid": "rsa1",
		"n": b64s(k.rsa2.PublicKey.N.Bytes()), "e": "AQAB"})
	deep := strings.Repeat(`{"a":`, 64) + "1" + strings.Repeat("}", 64)

	altered := func() string {
		cl := with(c, "sub", "admin")
		return parts[0] + "." + b64s(mustJSON(t, cl)) + "." + parts[2]
	}()
	// Non-canonical base64url: flip the unused low bits of the last
	// signature character (decodes to the same bytes in a lax decoder).
	nonCanon := func() string {
		sig := []byte(parts[2])
		last := sig[len(sig)-1]
		const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
		i := strings.IndexByte(alphabet, last)
		sig[len(sig)-1] = alphabet[i|1]
		if sig[len(sig)-1] == last {
			sig[len(sig)-1] = alphabet[i&^1]
		}
		return parts[0] + "." + parts[1] + "." + string(sig)
	}()

	return []attackCase{
		{"alg none no signature", noneTok("none", ""), ReasonBadSignature},
		{"alg None with signature", noneTok("None", parts[2]), ReasonUnsupportedAlg},
		{"alg nOnE with signature", noneTok("nOnE", parts[2]), ReasonUnsupportedAlg},
		{"alg none with signature", noneTok("none", parts[2]), ReasonUnsupportedAlg},
		{"alg NONE no signature", noneTok("NONE", ""), ReasonBadSignature},
		{"HS256 keyed with RSA public key DER (key confusion)", func() string {
			// A verifier without HMAC configured for the issuer; see the
			// per-issuer allow-list test below for the HMAC-enabled one.
			return hsConfusion(pubDER)
		}(), ReasonUnsupportedAlg},
		{"HS256 keyed with JWKS n bytes", hsConfusion(k.rsa.PublicKey.N.Bytes()), ReasonUnsupportedAlg},
		{"ECDSA zero signature CVE-2022-21449", ecIn + "." + b64s(zeroSig), ReasonBadSignature},
		{"signature stripped", parts[0] + "." + parts[1] + ".", ReasonBadSignature},
		{"payload altered after signing", altered, ReasonBadSignature},
		{"signature from another key", mkJWT(t, hdrRS, c, k.rsa2), ReasonBadSignature},
		{"kid path traversal", mkJWT(t, with(hdrRS, "kid", "../../../../etc/passwd"), c, k.rsa), ReasonUnknownKey},
		{"kid SQL injection", mkJWT(t, with(hdrRS, "kid", "' OR 1=1 --"), c, k.rsa), ReasonUnknownKey},
		{"kid very long", mkJWT(t, with(hdrRS, "kid", strings.Repeat("k", 4000)), c, k.rsa), ReasonUnknownKey},
		{"jku to attacker JWKS", attackerKeyHdr("jku", attackerURL+"/jwks.json"), ReasonUnknownKey},
		{"x5u to attacker cert", attackerKeyHdr("x5u", attackerURL+"/cert.pem"), ReasonUnknownKey},
		{"embedded jwk with our kid", mkJWT(t, with(hdrRS, "jwk", json.RawMessage(attackerJWK)), c, k.rsa2), ReasonBadSignature},
		{"x5c attacker chain", attackerKeyHdr("x5c", []string{b64s(pubDER)}), ReasonUnknownKey},
		{"unknown crit", mkJWT(t, with(hdrRS, "crit", []string{"exp-ext"}, "exp-ext", 1), c, k.rsa), ReasonCrit},
		{"empty crit", mkJWT(t, with(hdrRS, "crit", []string{}), c, k.rsa), ReasonCrit},
		{"b64 false", mkJWT(t, with(hdrRS, "b64", false), c, k.rsa), ReasonCrit},
		{"expired", rsTok(t, with(c, "exp", t0.Add(-2*time.Minute).Unix())), ReasonExpired},
		{"not yet valid", rsTok(t, with(c, "nbf", t0.Add(5*time.Minute).Unix())), ReasonNotYetValid},
		{"iat in the future", rsTok(t, with(c, "iat", t0.Add(5*time.Minute).Unix())), ReasonNotYetValid},
		{"missing exp", rsTok(t, with(c, "exp", nil)), ReasonMissingClaim},
		{"exp zero", rsTok(t, with(c, "exp", 0)), ReasonMalformed},
		{"exp as string", rsTok(t, with(c, "exp", "9999999999")), ReasonMalformed},
		{"missing sub", rsTok(t, with(c, "sub", nil)), ReasonMissingClaim},
		{"wrong iss", rsTok(t, with(c, "iss", "https://evil.test")), ReasonBadIssuer},
		{"iss differs in case", rsTok(t, with(c, "iss", strings.ToUpper(testIssuer))), ReasonBadIssuer},
		{"missing iss", rsTok(t, with(c, "iss", nil)), ReasonMissingClaim},
		{"aud missing", rsTok(t, with(c, "aud", nil)), ReasonMissingClaim},
		{"aud wrong", rsTok(t, with(c, "aud", "https://other.test")), ReasonBadAudience},
		{"aud array without ours", rsTok(t, with(c, "aud", []string{"a", "b"})), ReasonBadAudience},
		{"typ is not at+jwt", mkJWT(t, with(hdrRS, "typ", "JWT"), c, k.rsa), ReasonBadType},
		{"typ missing", mkJWT(t, with(hdrRS, "typ", nil), c, k.rsa), ReasonBadType},
		{"duplicate alg in header", mkRaw(t, []byte(`{"alg":"RS256","kid":"rsa1","typ":"at+jwt","kid":"rsa1"}`), mustJSON(t, c), "RS256", k.rsa), ReasonMalformed},
		{"duplicate sub in claims", mkRaw(t, []byte(`{"alg":"RS256","kid":"rsa1","typ":"at+jwt"}`),
			[]byte(fmt.Sprintf(`{"iss":%q,"sub":"user-1","aud":%q,"exp":%d,"sub":"admin"}`, testIssuer, testAudience, t0.Add(time.Hour).Unix())), "RS256", k.rsa), ReasonMalformed},
		{"duplicate nested member", mkRaw(t, []byte(`{"alg":"RS256","kid":"rsa1","typ":"at+jwt"}`),
			[]byte(fmt.Sprintf(`{"iss":%q,"sub":"u","aud":%q,"exp":%d,"cnf":{"jkt":"a","jkt":"b"}}`, testIssuer, testAudience, t0.Add(time.Hour).Unix())), "RS256", k.rsa), ReasonMalformed},
		{"deeply nested claims", mkRaw(t, []byte(`{"alg":"RS256","kid":"rsa1","typ":"at+jwt"}`),
			[]byte(fmt.Sprintf(`{"iss":%q,"sub":"u","aud":%q,"exp":%d,"x":%s}`, testIssuer, testAudience, t0.Add(time.Hour).Unix(), deep)), "RS256", k.rsa), ReasonMalformed},
		{"non-UTF-8 claims", mkRaw(t, []byte(`{"alg":"RS256","kid":"rsa1","typ":"at+jwt"}`),
			[]byte(fmt.Sprintf(`{"iss":%q,"sub":"u\xff","aud":%q,"exp":%d}`, testIssuer, testAudience, t0.Add(time.Hour).Unix())), "RS256", k.rsa), ReasonMalformed},
		{"non-canonical base64url", nonCanon, ReasonMalformed},
		{"padding", good + "==", ReasonMalformed},
		{"padding in header", parts[0] + "=." + parts[1] + "." + parts[2], ReasonMalformed},
		{"whitespace inside", parts[0] + ". " + parts[1] + "." + parts[2], ReasonMalformed},
		{"trailing newline", good + "\n", ReasonMalformed},
		{"standard base64 alphabet", strings.NewReplacer("-", "+", "_", "/").Replace(good) + "+/", ReasonMalformed},
		{"1 MiB token", strings.Repeat("A", 1<<20), ReasonTooLarge},
		{"JWE where JWS expected", b64s([]byte(`{"alg":"RSA-OAEP","enc":"A256GCM"}`)) + ".AAAA.AAAA.AAAA.AAAA", ReasonMalformed},
		{"JSON serialization", string(mustJSON(t, map[string]any{"payload": parts[1], "protected": parts[0], "signature": parts[2]})), ReasonMalformed},
		{"two segments", parts[0] + "." + parts[1], ReasonMalformed},
		{"empty header", "." + parts[1] + "." + parts[2], ReasonMalformed},
		{"header not an object", b64s([]byte(`["alg"]`)) + "." + parts[1] + "." + parts[2], ReasonMalformed},
		{"ES256 token with kid of RSA key", mkJWT(t, map[string]any{"alg": "ES256", "kid": "rsa1", "typ": "at+jwt"}, c, k.ec), ReasonUnknownKey},
		{"RS256 header on EC key kid", mkJWT(t, map[string]any{"alg": "RS256", "kid": "ec1", "typ": "at+jwt"}, c, k.rsa), ReasonUnknownKey},
		{"PS256 not on allow-list", mkJWT(t, map[string]any{"alg": "PS256", "kid": "rsa1", "typ": "at+jwt"}, c, k.rsa), ReasonUnsupportedAlg},
	}
}

// TestVerifyRejectsAttacks runs the attack table against the core.
func TestVerifyRejectsAttacks(t *testing.T) {
	t.Parallel()
	jwks := newJWKSServer(t, defaultJWKS(t))
	attacker := newJWKSServer(t, jwksJSON(t, jwkEntry{"attacker", "RS256", &testKeySet(t).rsa2.PublicKey}))
	v := newTestVerifier(t, jwks, func(o *Options) {
		o.Issuers[0].RequireTyp = true
		o.Issuers[0].HMACSecret = nil
		o.Issuers[0].Algorithms = []string{"RS256", "ES256", "EdDSA"}
	})
	for _, tc := range attackCases(t, attacker.URL) {
		t.Run(tc.name, func(t *testing.T) {
			c, err := v.Verify(t.Context(), []byte(tc.token), t0)
			if err == nil {
				t.Fatalf("accepted forged token: %+v", c)
			}
			if got := ReasonOf(err); got != tc.reason {
				t.Errorf("reason = %v, want %v (err %v)", got, tc.reason, err)
			}
		})
	}
	if n := attacker.fetches.Load(); n != 0 {
		t.Errorf("attacker JWKS fetched %d times; jku/x5u must never be followed", n)
	}
}

// TestHMACAllowListIsPerIssuer: an issuer with HS256 and a shared secret
// still cannot be fooled by HS256 keyed with its RSA public key (key
// confusion), and the secret is never used for RS256.
func TestHMACAllowListIsPerIssuer(t *testing.T) {
	t.Parallel()
	jwks := newJWKSServer(t, defaultJWKS(t))
	v := newTestVerifier(t, jwks, nil)
	k := testKeySet(t)
	pubDER, _ := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	c := validClaims()
	tests := []struct {
		name   string
		tok    string
		reason Reason
	}{
		{"HS256 with secret", mkJWT(t, map[string]any{"alg": "HS256"}, c, hmacSecret), ReasonNone},
		{"HS256 keyed with RSA public key", mkJWT(t, map[string]any{"alg": "HS256", "kid": "rsa1"}, c, pubDER), ReasonBadSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(t.Context(), []byte(tc.tok), t0)
			if got := ReasonOf(err); got != tc.reason {
				t.Errorf("reason = %v, want %v (%v)", got, tc.reason, err)
			}
		})
	}
	// An issuer without a secret cannot be configured for HS256 at all.
	_, err := NewVerifier(t.Context(), Options{Issuers: []IssuerOptions{{Issuer: testIssuer, JWKSURL: jwks.URL, Audiences: []string{"a"}, Algorithms: []string{"HS256"}}}})
	if err == nil {
		t.Error("HS256 without hmac secret accepted at build time")
	}
	for _, alg := range []string{"none", "None", "rs256"} {
		_, err := NewVerifier(t.Context(), Options{Issuers: []IssuerOptions{{Issuer: testIssuer, JWKSURL: jwks.URL, Audiences: []string{"a"}, Algorithms: []string{alg}}}})
		if err == nil {
			t.Errorf("algorithm %q accepted at build time", alg)
		}
	}
}

func TestReasonDescriptionsLeakNothing(t *testing.T) {
	t.Parallel()
	for r := ReasonNone; r <= ReasonNotBound; r++ {
		d := r.Description()
		if d == "" || strings.ContainsAny(d, `"\`) {
			t.Errorf("%v: bad description %q", r, d)
		}
		if r.String() == "unknown" {
			t.Errorf("reason %d has no code", r)
		}
	}
	if !errors.Is(&Error{Reason: ReasonExpired, Cause: errors.New("x")}, ErrExpired) {
		t.Error("errors.Is does not match on reason")
	}
	_ = http.StatusOK
}
