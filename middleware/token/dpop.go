package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// maxJTILen bounds the proof's jti; RFC 9449 §11.1 suggests rejecting
// needlessly large values. We store a hash either way.
const maxJTILen = 256

type dpopConfig struct {
	window     time.Duration
	algs       map[string]algInfo
	algList    string // space-separated, for the algs= challenge parameter
	replaySize int
}

func newDPoPConfig(o DPoPOptions) (dpopConfig, error) {
	d := dpopConfig{window: o.IATWindow, replaySize: o.ReplayCacheSize, algs: map[string]algInfo{}}
	if d.window <= 0 {
		d.window = defaultDPoPWindow
	}
	if d.replaySize <= 0 {
		d.replaySize = defaultReplaySize
	}
	algs := o.Algorithms
	if len(algs) == 0 {
		algs = defaultDPoPAlgorithms
	}
	for _, a := range algs {
		ai, ok := knownAlgs[a]
		// RFC 9449 §4.2: asymmetric only, never none or a MAC.
		if !ok || ai.kind == kindHMAC {
			return d, fmt.Errorf("token: dpop: algorithm %q is not an asymmetric JWS algorithm", a)
		}
		d.algs[a] = ai
	}
	d.algList = strings.Join(algs, " ")
	return d, nil
}

// privateMembers are JWK members that only a private key has (RFC 7518
// §6.2.2, §6.3.2, RFC 8037 §2); "k" is a symmetric key.
var privateMembers = [...]string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

type dpopClaims struct {
	JTI *string  `json:"jti"`
	HTM *string  `json:"htm"`
	HTU *string  `json:"htu"`
	IAT *float64 `json:"iat"`
	ATH *string  `json:"ath"`
}

// CheckDPoP verifies one DPoP proof (RFC 9449 §4.3) for a request with
// method and target htu carrying access token raw, whose verified claims
// are c, and binds it to the token (§6: cnf.jkt equals the proof key's
// RFC 7638 thumbprint; ath equals the token's hash). htu must come from the
// configured external origin and the request path, never from
// client-controlled Host or X-Forwarded-* headers. The jti is remembered
// for the iat window, so a proof is accepted once.
func (v *Verifier) CheckDPoP(proof, raw []byte, c *Claims, method, htu string, now time.Time) error {
	if c.JKT == "" {
		return ErrNotBound
	}
	if len(proof) == 0 {
		return reject(ReasonDPoPInvalid, "no proof")
	}
	if len(proof) > v.maxSize {
		return reject(ReasonDPoPInvalid, "proof too large")
	}
	hdr, payload, err := parseJWS(proof)
	if err != nil {
		return reject(ReasonDPoPInvalid, "proof: %w", err)
	}
	if hdr.Typ == nil || !strings.EqualFold(*hdr.Typ, "dpop+jwt") {
		return reject(ReasonDPoPInvalid, "typ is not dpop+jwt")
	}
	alg := *hdr.Alg
	ai, ok := v.dpop.algs[alg]
	if !ok {
		return reject(ReasonDPoPInvalid, "alg not allowed")
	}
	if hdr.JWK == nil {
		return reject(ReasonDPoPInvalid, "no jwk")
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(hdr.JWK, &members); err != nil {
		return reject(ReasonDPoPInvalid, "jwk is not an object")
	}
	for _, m := range privateMembers {
		if _, ok := members[m]; ok {
			return reject(ReasonDPoPInvalid, "jwk carries private or symmetric key material")
		}
	}
	key, err := jwk.ParseKey(hdr.JWK)
	if err != nil {
		return reject(ReasonDPoPInvalid, "jwk: %w", err)
	}
	var rawKey any
	if err := jwk.Export(key, &rawKey); err != nil {
		return reject(ReasonDPoPInvalid, "jwk: %w", err)
	}
	pk := pubKey{key: rawKey}
	switch r := rawKey.(type) {
	case *rsa.PublicKey:
		if r.N.BitLen() < minRSABits {
			return reject(ReasonDPoPInvalid, "rsa key too small")
		}
		pk.kind = kindRSA
	case *ecdsa.PublicKey:
		pk.kind = kindEC
	case ed25519.PublicKey:
		pk.kind = kindEd25519
	default:
		return reject(ReasonDPoPInvalid, "jwk is not a public key")
	}
	if !pk.compatible(alg, ai) {
		return reject(ReasonDPoPInvalid, "alg does not match jwk")
	}
	if _, err := jws.VerifyCompactFast(rawKey, proof, ai.alg); err != nil {
		return &Error{Reason: ReasonDPoPInvalid, Cause: err}
	}

	var pc dpopClaims
	if err := json.Unmarshal(payload, &pc); err != nil {
		return reject(ReasonDPoPInvalid, "claims: %w", err)
	}
	if pc.JTI == nil || *pc.JTI == "" || len(*pc.JTI) > maxJTILen || pc.HTM == nil || pc.HTU == nil || pc.IAT == nil || pc.ATH == nil {
		return reject(ReasonDPoPInvalid, "missing claim")
	}
	if *pc.HTM != method {
		return reject(ReasonDPoPInvalid, "htm mismatch")
	}
	got, err := normalizeHTU(*pc.HTU)
	if err != nil {
		return reject(ReasonDPoPInvalid, "htu: %w", err)
	}
	want, err := normalizeHTU(htu)
	if err != nil || got != want {
		return reject(ReasonDPoPInvalid, "htu mismatch")
	}
	iat := time.Unix(0, int64(*pc.IAT*1e9))
	if d := now.Sub(iat); d > v.dpop.window || d < -v.dpop.window {
		return reject(ReasonDPoPInvalid, "iat outside window")
	}
	ath := sha256.Sum256(raw)
	if *pc.ATH != b64.EncodeToString(ath[:]) {
		return reject(ReasonDPoPInvalid, "ath mismatch")
	}
	tp, err := key.Thumbprint(crypto.SHA256)
	if err != nil {
		return reject(ReasonDPoPInvalid, "thumbprint: %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(b64.EncodeToString(tp)), []byte(c.JKT)) != 1 {
		return reject(ReasonDPoPInvalid, "key does not match cnf.jkt")
	}
	// Replay check last: only proofs that verified may take a slot, so
	// unauthenticated junk cannot fill the cache.
	switch v.replay.add(sha256.Sum256([]byte(*pc.JTI)), iat.Add(v.dpop.window), now) {
	case replayDuplicate:
		return reject(ReasonDPoPReplay, "jti replayed")
	case replayFull:
		return &Error{Reason: ReasonUnavailable, Cause: errors.New("token: dpop replay cache full")}
	}
	return nil
}

// DPoPAlgorithms is the space-separated list for the algs= challenge
// parameter (RFC 9449 §7.1).
func (v *Verifier) DPoPAlgorithms() string { return v.dpop.algList }

// normalizeHTU applies RFC 3986 §6.2.2/§6.2.3 normalization enough for
// comparison: lower-case scheme and host, default port removed, empty path
// as "/", percent-encoding decoded, query and fragment dropped (RFC 9449
// §4.3 step 9).
func normalizeHTU(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "https" && scheme != "http" {
		return "", errors.New("not an http(s) URL")
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return "", errors.New("no host")
	}
	port := u.Port()
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	if port != "" {
		host += ":" + port
	}
	p := u.Path
	if p == "" {
		p = "/"
	}
	return scheme + "://" + host + p, nil
}

type replayResult uint8

const (
	replayFresh replayResult = iota
	replayDuplicate
	replayFull
)

// replayCache remembers proof jti hashes until the proof could no longer
// be accepted anyway. It is a plain bounded map, not ristretto: an
// admission policy that may drop a write would silently allow a replay.
type replayCache struct {
	mu        sync.Mutex
	m         map[[sha256.Size]byte]time.Time
	max       int
	nextSweep time.Time
}

func newReplayCache(max int) *replayCache {
	return &replayCache{m: make(map[[sha256.Size]byte]time.Time), max: max}
}

func (r *replayCache) add(k [sha256.Size]byte, expires, now time.Time) replayResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	if exp, ok := r.m[k]; ok && now.Before(exp) {
		return replayDuplicate
	}
	if len(r.m) >= r.max || now.After(r.nextSweep) {
		for key, exp := range r.m {
			if !now.Before(exp) {
				delete(r.m, key)
			}
		}
		r.nextSweep = now.Add(time.Second)
	}
	if len(r.m) >= r.max {
		return replayFull
	}
	r.m[k] = expires
	return replayFresh
}
