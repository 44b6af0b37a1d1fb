package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"hash/maphash"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/edgeauth/edgeauth/middleware/reqstate"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// JWKSPath is where the assertion public key is published.
const JWKSPath = "/.edgeauth/jwks.json"

// SignerOptions configures a Signer.
type SignerOptions struct {
	// Issuer is the iss claim, edgeauth's external URL. Required.
	Issuer string
	// KeyFile is a PEM P-256 private key (PKCS#8 or SEC 1). "" generates a
	// key at start; assertions then stop verifying after a restart until
	// upstreams refetch the JWKS.
	KeyFile string
	// TTL is the assertion lifetime. 0 means 60s.
	TTL time.Duration
	// CacheSize bounds cached assertions. 0 means 10000.
	CacheSize int
	// Now is the clock. nil means time.Now.
	Now func() time.Time
}

// Signer issues short-lived ES256 assertions of a principal for a route
// and publishes its public key as a JWKS. Signed assertions are cached per
// (identity, route) and reused until a quarter of their lifetime is left,
// so the hot path signs once per user and route per TTL, not per request.
type Signer struct {
	key    jwk.Key
	kid    string
	issuer string
	ttl    time.Duration
	reuse  time.Duration // reuse while remaining lifetime > this
	now    func() time.Time
	// testNow is Options.Now as given (nil: none); it overrides the
	// request's time.
	testNow func() time.Time
	jwks    []byte
	seed    maphash.Seed
	max     int
	shards  [16]shard
	onSign  func() // test hook counting signatures; nil in production
}

type shard struct {
	mu sync.Mutex
	m  map[uint64]*cached
}

type cached struct {
	route, issuer, subject, email, acr string
	groups                             []string
	authTime                           time.Time
	token                              []byte
	exp                                time.Time
}

// NewSigner loads or generates the key and builds the JWKS.
func NewSigner(o SignerOptions) (*Signer, error) {
	if o.Issuer == "" {
		return nil, errors.New("identity: signer needs an issuer (external_url)")
	}
	if o.TTL < 0 || o.CacheSize < 0 {
		return nil, errors.New("identity: negative assertion ttl or cache size")
	}
	var priv *ecdsa.PrivateKey
	var err error
	if o.KeyFile != "" {
		priv, err = loadKey(o.KeyFile)
	} else {
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return nil, fmt.Errorf("identity: assertion key: %w", err)
	}
	key, err := jwk.Import(priv)
	if err != nil {
		return nil, fmt.Errorf("identity: import key: %w", err)
	}
	tp, err := key.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("identity: thumbprint: %w", err)
	}
	s := &Signer{
		key: key, kid: base64.RawURLEncoding.EncodeToString(tp), issuer: o.Issuer,
		ttl: o.TTL, now: o.Now, testNow: o.Now, seed: maphash.MakeSeed(), max: o.CacheSize,
	}
	if s.ttl == 0 {
		s.ttl = 60 * time.Second
	}
	if s.max == 0 {
		s.max = 10000
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.reuse = s.ttl / 4
	for _, kv := range []struct {
		k string
		v any
	}{{jwk.KeyIDKey, s.kid}, {jwk.AlgorithmKey, jwa.ES256()}, {jwk.KeyUsageKey, "sig"}} {
		if err := key.Set(kv.k, kv.v); err != nil {
			return nil, fmt.Errorf("identity: set %s: %w", kv.k, err)
		}
	}
	pub, err := key.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("identity: public key: %w", err)
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		return nil, fmt.Errorf("identity: jwks: %w", err)
	}
	if s.jwks, err = json.Marshal(set); err != nil {
		return nil, fmt.Errorf("identity: jwks: %w", err)
	}
	for i := range s.shards {
		s.shards[i].m = make(map[uint64]*cached)
	}
	return s, nil
}

func loadKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM block")
	}
	var k any
	switch blk.Type {
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("unsupported PEM type %q", blk.Type)
	}
	if err != nil {
		return nil, err
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, errors.New("key is not a P-256 ECDSA key (ES256)")
	}
	return ec, nil
}

// KeyID returns the RFC 7638 thumbprint used as kid.
func (s *Signer) KeyID() string { return s.kid }

// JWKS returns the public JWK Set document.
func (s *Signer) JWKS() []byte { return s.jwks }

// Assertion returns a signed assertion of p for route, from the cache when
// one with enough lifetime left exists. The returned slice is shared and
// must not be modified.
func (s *Signer) Assertion(route string, p *reqstate.Principal) ([]byte, error) {
	return s.AssertionAt(route, p, s.now())
}

// AssertionAt is Assertion at the given time (the request's, to save a
// clock read per request); a Signer with a test clock uses that instead.
func (s *Signer) AssertionAt(route string, p *reqstate.Principal, now time.Time) ([]byte, error) {
	if s.testNow != nil {
		now = s.testNow()
	}
	h := s.hash(route, p)
	sh := &s.shards[h%uint64(len(s.shards))]
	sh.mu.Lock()
	c := sh.m[h]
	if c != nil && c.matches(route, p) && c.exp.Sub(now) > s.reuse {
		tok := c.token
		sh.mu.Unlock()
		return tok, nil
	}
	sh.mu.Unlock()

	tok, exp, err := s.sign(route, p, now)
	if err != nil {
		return nil, err
	}
	n := &cached{
		route: route, issuer: p.Issuer, subject: p.Subject, email: p.Email, acr: p.ACR,
		groups: slices.Clone(p.Groups), authTime: p.AuthTime, token: tok, exp: exp,
	}
	sh.mu.Lock()
	if len(sh.m) >= s.max/len(s.shards)+1 {
		// Bounded: drop expired entries, and if still full an arbitrary
		// one. A miss only costs a signature.
		for k, v := range sh.m {
			if !v.exp.After(now) || len(sh.m) >= s.max/len(s.shards)+1 {
				delete(sh.m, k)
			}
		}
	}
	sh.m[h] = n
	sh.mu.Unlock()
	return tok, nil
}

// hash keys the cache on everything the assertion states, so a changed
// group list or a step-up (new acr/auth_time) never reuses a stale one.
func (s *Signer) hash(route string, p *reqstate.Principal) uint64 {
	var h maphash.Hash
	h.SetSeed(s.seed)
	for _, v := range [...]string{route, p.Issuer, p.Subject, p.Email, p.ACR} {
		h.WriteString(v)
		h.WriteByte(0)
	}
	for _, g := range p.Groups {
		h.WriteString(g)
		h.WriteByte(0)
	}
	var b [8]byte
	t := p.AuthTime.Unix()
	for i := range b {
		b[i] = byte(t >> (8 * i))
	}
	h.Write(b[:])
	return h.Sum64()
}

// matches compares field by field: a 64-bit hash collision must never hand
// one user's assertion to another.
func (c *cached) matches(route string, p *reqstate.Principal) bool {
	return c.route == route && c.issuer == p.Issuer && c.subject == p.Subject && c.email == p.Email &&
		c.acr == p.ACR && c.authTime.Equal(p.AuthTime) && slices.Equal(c.groups, p.Groups)
}

func (s *Signer) sign(route string, p *reqstate.Principal, now time.Time) ([]byte, time.Time, error) {
	if s.onSign != nil {
		s.onSign()
	}
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	exp := now.Add(s.ttl)
	b := jwt.NewBuilder().
		Issuer(s.issuer).
		Audience([]string{route}).
		Subject(p.Subject).
		IssuedAt(now).
		Expiration(exp).
		JwtID(base64.RawURLEncoding.EncodeToString(jti[:]))
	if p.Email != "" {
		b = b.Claim("email", p.Email)
	}
	if len(p.Groups) > 0 {
		b = b.Claim("groups", p.Groups)
	}
	if p.ACR != "" {
		b = b.Claim("acr", p.ACR)
	}
	if !p.AuthTime.IsZero() {
		b = b.Claim("auth_time", p.AuthTime.Unix())
	}
	tok, err := b.Build()
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("identity: build assertion: %w", err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256(), s.key))
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("identity: sign assertion: %w", err)
	}
	return signed, exp, nil
}
