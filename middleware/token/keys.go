package token

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/httprc/v3"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"golang.org/x/sync/singleflight"
)

// maxJWKSBytes bounds a JWKS or discovery response.
const maxJWKSBytes = 1 << 20

// minRSABits refuses weak RSA keys from a JWKS (RFC 8725 §3.5 spirit;
// NIST SP 800-131A).
const minRSABits = 2048

// algInfo says which key type an algorithm needs.
type algInfo struct {
	alg   jwa.SignatureAlgorithm
	kind  keyKind
	curve elliptic.Curve // for ES*
}

type keyKind uint8

const (
	kindRSA keyKind = iota + 1
	kindEC
	kindEd25519
	kindHMAC
)

// knownAlgs is the complete set we will ever verify. Lookups are exact-case
// (RFC 8725bis: case-insensitive alg checks were bypassed with "nOnE").
var knownAlgs = map[string]algInfo{
	"RS256": {jwa.RS256(), kindRSA, nil},
	"RS384": {jwa.RS384(), kindRSA, nil},
	"RS512": {jwa.RS512(), kindRSA, nil},
	"PS256": {jwa.PS256(), kindRSA, nil},
	"PS384": {jwa.PS384(), kindRSA, nil},
	"PS512": {jwa.PS512(), kindRSA, nil},
	"ES256": {jwa.ES256(), kindEC, elliptic.P256()},
	"ES384": {jwa.ES384(), kindEC, elliptic.P384()},
	"ES512": {jwa.ES512(), kindEC, elliptic.P521()},
	"EdDSA": {jwa.EdDSA(), kindEd25519, nil},
	"HS256": {jwa.HS256(), kindHMAC, nil},
	"HS384": {jwa.HS384(), kindHMAC, nil},
	"HS512": {jwa.HS512(), kindHMAC, nil},
}

// pubKey is one usable verification key of an issuer, converted once per
// key-set version so the cold path does not re-export keys.
type pubKey struct {
	kid  string
	alg  string // the JWK's alg, "" when the JWK does not pin one
	kind keyKind
	key  any // *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey
	// thumb is the RFC 7638 SHA-256 thumbprint of the public key, so that
	// "is this still the same key" is a fixed-size compare on the cache-hit
	// path (crypto's Equal methods allocate).
	thumb [sha256.Size]byte
}

// compatible reports whether k may verify a signature made with alg
// (RFC 8725 §3.1: each key is used with exactly one algorithm family, and
// the JWK's own alg wins when present).
func (k *pubKey) compatible(alg string, ai algInfo) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	if k.kind != ai.kind {
		return false
	}
	if ai.kind == kindEC {
		ec, ok := k.key.(*ecdsa.PublicKey)
		return ok && ec.Curve == ai.curve
	}
	return true
}

// same reports whether k and o are the same published key: same kid, same
// pinned alg, same public key material. A key re-served under its kid with
// different material (the provider replaced it) is not the same key.
func (k *pubKey) same(o *pubKey) bool {
	if k.kid != o.kid || k.alg != o.alg || k.kind != o.kind {
		return false
	}
	return k.thumb == o.thumb
}

// keyIndex is the converted form of one jwk.Set version.
type keyIndex struct {
	set  jwk.Set
	keys []pubKey
}

func buildIndex(set jwk.Set) *keyIndex {
	idx := &keyIndex{set: set}
	for i := range set.Len() {
		k, ok := set.Key(i)
		if !ok {
			continue
		}
		if use, ok := k.KeyUsage(); ok && use != "sig" {
			continue
		}
		kid, _ := k.KeyID()
		var alg string
		if a, ok := k.Algorithm(); ok {
			alg = a.String()
		}
		// Never a symmetric key from a JWKS: an "oct" key published by the
		// provider would turn HS256 into a public-key forgery.
		if k.KeyType() == jwa.OctetSeq() {
			continue
		}
		pk, err := k.PublicKey()
		if err != nil {
			continue
		}
		var raw any
		if err := jwk.Export(pk, &raw); err != nil {
			continue
		}
		var kind keyKind
		switch r := raw.(type) {
		case *rsa.PublicKey:
			if r.N.BitLen() < minRSABits {
				continue
			}
			kind = kindRSA
		case *ecdsa.PublicKey:
			kind = kindEC
		case ed25519.PublicKey:
			kind = kindEd25519
		default:
			continue
		}
		tp, err := pk.Thumbprint(crypto.SHA256)
		if err != nil || len(tp) != sha256.Size {
			continue
		}
		entry := pubKey{kid: kid, alg: alg, kind: kind, key: raw}
		copy(entry.thumb[:], tp)
		idx.keys = append(idx.keys, entry)
	}
	return idx
}

// find returns the keys that may verify alg for kid. An empty kid matches
// keys without a kid only when the set holds exactly one compatible key,
// so a kid-less token cannot make us try every key.
func (idx *keyIndex) find(kid, alg string, ai algInfo) []*pubKey {
	var out []*pubKey
	for i := range idx.keys {
		k := &idx.keys[i]
		if !k.compatible(alg, ai) {
			continue
		}
		if kid != "" && k.kid != kid {
			continue
		}
		out = append(out, k)
	}
	if kid == "" && len(out) > 1 {
		return nil
	}
	return out
}

// issuer is the runtime form of IssuerOptions.
type issuer struct {
	name      string
	jwksURL   string
	audiences []string
	algs      map[string]algInfo
	algList   []string
	typ       bool
	hmac      []byte

	cache *jwk.Cache
	// src is where the keys come from, set once the JWKS URL is known: at
	// build time, or later when discovery had to wait for the provider.
	// Until then the issuer's tokens fail as unavailable (503), not as bad.
	src   atomic.Pointer[keySource]
	index atomic.Pointer[keyIndex]
	// lastForced is the unix-nano time of the last kid-triggered refetch;
	// it gates refetches to one per RefetchInterval per issuer however many
	// requests carry unknown kids (no refetch storm, no amplification of an
	// attacker's random kids into provider traffic).
	lastForced atomic.Int64
	sf         singleflight.Group
}

// keys returns the current index, rebuilding it when jwk.Cache holds a new
// set version.
func (is *issuer) keys(ctx context.Context) (*keyIndex, error) {
	src := is.src.Load()
	if src == nil {
		return nil, fmt.Errorf("token: jwks for %s: provider not discovered yet", is.name)
	}
	set := src.res.Resource()
	if set == nil {
		return nil, fmt.Errorf("token: jwks for %s: not fetched yet", is.name)
	}
	if idx := is.index.Load(); idx != nil && idx.set == set {
		return idx, nil
	}
	idx := buildIndex(set)
	is.index.Store(idx)
	return idx, nil
}

// refetch forces one JWKS fetch if the gate allows it. It reports whether
// a fetch happened (successful or not).
func (is *issuer) refetch(ctx context.Context, now time.Time, interval time.Duration) bool {
	last := is.lastForced.Load()
	if last != 0 && now.UnixNano()-last < int64(interval) {
		return false
	}
	if !is.lastForced.CompareAndSwap(last, now.UnixNano()) {
		// Someone else won the gate; wait for their fetch instead.
		_, _, _ = is.sf.Do("refetch", func() (any, error) { return nil, nil })
		return true
	}
	_, _, _ = is.sf.Do("refetch", func() (any, error) {
		src := is.src.Load()
		if src == nil {
			return nil, nil
		}
		_, err := is.cache.Refresh(ctx, src.url)
		return nil, err
	})
	return true
}

// keySource is an issuer's registered JWKS: the URL and its jwk.Cache
// entry, looked up once: its Resource() is an atomic load, where
// Cache.Lookup would round-trip through httprc's controller goroutine on
// every cold verification.
type keySource struct {
	url string
	res *httprc.ResourceBase[jwk.Set]
}

// errDiscoveryRefused marks a discovery answer that is wrong rather than
// unavailable (another issuer, no jwks_uri): a misconfiguration to report
// at start, not to wait out.
var errDiscoveryRefused = errors.New("token: discovery document refused")

// guardedClient wraps the HTTP client jwk.Cache uses so that a response
// that is not a usable key set never reaches the cache: httprc keeps the
// previous set when a fetch fails, but it would happily store an empty
// {"keys":[]} or a set with only unusable keys, locking every token out.
type guardedClient struct {
	inner  *http.Client
	logger *slog.Logger
	// fetches counts requests, for tests and metrics.
	fetches atomic.Int64
}

var errUnusableJWKS = errors.New("token: JWKS has no usable signing key")

func (g *guardedClient) Do(req *http.Request) (*http.Response, error) {
	g.fetches.Add(1)
	res, err := g.inner.Do(req)
	if err != nil {
		g.logger.LogAttrs(req.Context(), slog.LevelWarn, "jwks fetch failed", slog.String("url", req.URL.Redacted()), slog.String("error", err.Error()))
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		// httprc rejects non-200 itself and keeps the old set.
		g.logger.LogAttrs(req.Context(), slog.LevelWarn, "jwks fetch failed", slog.String("url", req.URL.Redacted()), slog.Int("status", res.StatusCode))
		return res, nil
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, maxJWKSBytes+1))
	res.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("token: read jwks: %w", err)
	}
	if len(body) > maxJWKSBytes {
		return nil, errors.New("token: jwks too large")
	}
	set, err := jwk.Parse(body)
	if err != nil || len(buildIndex(set).keys) == 0 {
		g.logger.LogAttrs(req.Context(), slog.LevelWarn, "jwks rejected: keeping the last good set", slog.String("url", req.URL.Redacted()))
		return nil, errUnusableJWKS
	}
	res.Body = io.NopCloser(bytes.NewReader(body))
	res.ContentLength = int64(len(body))
	return res, nil
}

// discover reads jwks_uri from the issuer's OpenID configuration and checks
// that the document names the same issuer (OIDC Discovery §4.3), so a
// misconfigured or hijacked discovery URL cannot hand us another issuer's
// keys.
func discover(ctx context.Context, hc *http.Client, iss string) (string, error) {
	u := strings.TrimSuffix(iss, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", fmt.Errorf("token: discovery %s: %w", iss, err)
	}
	res, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("token: discovery %s: %w", iss, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("token: discovery %s: status %d", iss, res.StatusCode)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, maxJWKSBytes)).Decode(&doc); err != nil {
		return "", fmt.Errorf("token: discovery %s: %w", iss, err)
	}
	if doc.Issuer != iss {
		return "", fmt.Errorf("%w: %s: document names issuer %q", errDiscoveryRefused, iss, doc.Issuer)
	}
	if doc.JWKSURI == "" {
		return "", fmt.Errorf("%w: %s: no jwks_uri", errDiscoveryRefused, iss)
	}
	return doc.JWKSURI, nil
}
