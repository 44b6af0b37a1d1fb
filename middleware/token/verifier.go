package token

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/lestrrat-go/httprc/v3"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// Verifier verifies access tokens. It is safe for concurrent use. Build it
// with NewVerifier and release its background goroutines with Close.
type Verifier struct {
	issuers     map[string]*issuer
	maxSize     int
	leeway      time.Duration
	refetch     time.Duration
	refresh     time.Duration // longest time between periodic JWKS refreshes
	cacheTTL    time.Duration
	groupsClaim string
	revocation  RevocationChecker
	now         func() time.Time
	logger      *slog.Logger

	jwks    *jwk.Cache
	fetcher *guardedClient
	cancel  context.CancelFunc

	cache *ristretto.Cache[uint64, *cacheEntry]

	revMu   sync.Mutex
	revoked atomic.Pointer[map[subjectKey]time.Time]

	intro  *introspector
	dpop   dpopConfig
	replay *replayCache
}

type subjectKey struct{ iss, sub string }

// cacheEntry is a verified (or, for introspection, a known-inactive)
// token. The key in ristretto is the first 8 bytes of the SHA-256; the full
// digest is kept and compared so that a 64-bit collision can never hand
// one token another token's identity.
type cacheEntry struct {
	digest  [sha256.Size]byte
	claims  *Claims // nil: negative entry
	reason  Reason  // for negative entries
	expires time.Time
	// pin is the JWKS key that verified claims; nil for HMAC and
	// introspection entries. A cached token is only as good as its key:
	// once the issuer stops publishing that key (rotated out, or withdrawn
	// after a compromise) the entry stops answering and the token is
	// verified afresh, which then fails.
	pin *keyPin
}

// keyPin names the key that verified a cached token and the key set
// version it was found in.
type keyPin struct {
	is  *issuer
	idx *keyIndex
	key *pubKey
}

// stillPublished reports whether the pinned key is in the issuer's current
// key set. The common case (set unchanged since verification) is a pointer
// comparison; after a refresh it is a scan of a handful of keys. It never
// allocates once the current set's index is built.
func (p *keyPin) stillPublished(ctx context.Context) bool {
	cur, err := p.is.keys(ctx)
	if err != nil {
		// No set at all cannot happen after one verified this token; keep
		// the entry rather than fail everything on a transient oddity.
		return true
	}
	if cur == p.idx {
		return true
	}
	for i := range cur.keys {
		if cur.keys[i].same(p.key) {
			return true
		}
	}
	return false
}

// NewVerifier builds a Verifier: it validates opts, discovers JWKS URLs
// where none is configured, and registers every JWKS with a jwk.Cache that
// refreshes in the background until ctx is done or Close is called. The
// first JWKS fetch is not awaited: a provider that is down at start makes
// its tokens fail closed (ErrUnavailable) until it is reachable.
func NewVerifier(ctx context.Context, opts Options) (*Verifier, error) {
	v := &Verifier{
		issuers:     make(map[string]*issuer, len(opts.Issuers)),
		maxSize:     opts.MaxSize,
		leeway:      opts.Leeway,
		refetch:     opts.RefetchInterval,
		cacheTTL:    opts.CacheTTL,
		groupsClaim: opts.GroupsClaim,
		revocation:  opts.Revocation,
		now:         opts.Now,
		logger:      opts.Logger,
	}
	if v.maxSize <= 0 {
		v.maxSize = defaultMaxSize
	}
	switch {
	case v.leeway == 0:
		v.leeway = defaultLeeway
	case v.leeway < 0:
		v.leeway = 0
	}
	if v.refetch <= 0 {
		v.refetch = defaultRefetchInterval
	}
	refresh := opts.RefreshInterval
	if refresh <= 0 {
		refresh = defaultRefreshInterval
	}
	if refresh < v.refetch {
		refresh = v.refetch
	}
	v.refresh = refresh
	if v.cacheTTL <= 0 {
		v.cacheTTL = defaultCacheTTL
	}
	if v.groupsClaim == "" {
		v.groupsClaim = "groups"
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.logger == nil {
		v.logger = slog.Default()
	}
	empty := map[subjectKey]time.Time{}
	v.revoked.Store(&empty)

	if len(opts.Issuers) == 0 && opts.Introspection == nil {
		return nil, errors.New("token: no issuers and no introspection configured")
	}
	var errs []error
	for i, io := range opts.Issuers {
		is, err := newIssuer(io)
		if err != nil {
			errs = append(errs, fmt.Errorf("token: issuers[%d]: %w", i, err))
			continue
		}
		if _, dup := v.issuers[is.name]; dup {
			errs = append(errs, fmt.Errorf("token: issuers[%d]: duplicate issuer %q", i, is.name))
			continue
		}
		v.issuers[is.name] = is
	}
	dp, err := newDPoPConfig(opts.DPoP)
	if err != nil {
		errs = append(errs, err)
	}
	v.dpop = dp
	if opts.Introspection != nil {
		in, err := newIntrospector(*opts.Introspection)
		if err != nil {
			errs = append(errs, err)
		}
		v.intro = in
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	v.replay = newReplayCache(dp.replaySize)

	size := opts.CacheSize
	if size <= 0 {
		size = defaultCacheSize
	}
	v.cache, err = ristretto.NewCache(&ristretto.Config[uint64, *cacheEntry]{
		NumCounters: size * 10,
		MaxCost:     size,
		BufferItems: 64,
	})
	if err != nil {
		return nil, fmt.Errorf("token: cache: %w", err)
	}

	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{
			Timeout: 10 * time.Second,
			// A JWKS URL that redirects elsewhere is a misconfiguration or
			// an attack; do not follow it to someone else's keys.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	v.fetcher = &guardedClient{inner: hc, logger: v.logger}

	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	v.cancel = cancel
	go func() {
		<-ctx.Done()
		cancel()
	}()
	v.jwks, err = jwk.NewCache(bg, httprc.NewClient())
	if err != nil {
		cancel()
		v.cache.Close()
		return nil, fmt.Errorf("token: jwk cache: %w", err)
	}
	for _, is := range v.issuers {
		is.cache = v.jwks
		if is.jwksURL == "" {
			url, err := discover(ctx, hc, is.name)
			switch {
			case errors.Is(err, errDiscoveryRefused):
				v.Close()
				return nil, err
			case err != nil:
				// The provider is down at start: keep starting (sessions,
				// public routes and other issuers work) and keep trying;
				// this issuer's tokens get 503 until then.
				v.logger.LogAttrs(ctx, slog.LevelWarn, "token: discovery failed; retrying in the background",
					slog.String("issuer", is.name), slog.String("error", err.Error()))
				go v.discoverLater(bg, hc, is)
				continue
			}
			is.jwksURL = url
		}
		if err := v.register(ctx, is, is.jwksURL); err != nil {
			v.Close()
			return nil, err
		}
	}
	return v, nil
}

// register adds url to the JWK cache and makes it the issuer's key source.
func (v *Verifier) register(ctx context.Context, is *issuer, url string) error {
	err := v.jwks.Register(ctx, url,
		jwk.WithHTTPClient(v.fetcher),
		jwk.WithMinInterval(v.refetch),
		jwk.WithMaxInterval(v.refresh),
		jwk.WithWaitReady(false),
	)
	if err != nil {
		return fmt.Errorf("token: register jwks for %s: %w", is.name, err)
	}
	res, err := v.jwks.LookupResource(ctx, url)
	if err != nil {
		return fmt.Errorf("token: register jwks for %s: %w", is.name, err)
	}
	is.src.Store(&keySource{url: url, res: res})
	return nil
}

// discoverLater retries discovery with backoff (1 s doubling to 30 s) until
// it succeeds or the verifier closes. A refused document is logged and
// retried too: the provider may be mid-deploy.
func (v *Verifier) discoverLater(ctx context.Context, hc *http.Client, is *issuer) {
	wait := time.Second
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		url, err := discover(ctx, hc, is.name)
		if err == nil {
			err = v.register(ctx, is, url)
		}
		if err == nil {
			v.logger.LogAttrs(ctx, slog.LevelInfo, "token: provider discovered", slog.String("issuer", is.name))
			return
		}
		v.logger.LogAttrs(ctx, slog.LevelWarn, "token: discovery still failing", slog.String("issuer", is.name), slog.String("error", err.Error()))
		wait = min(2*wait, 30*time.Second)
	}
}

// WaitReady blocks until every issuer's first JWKS fetch succeeded or ctx
// is done; use it for readiness probes. Verification does not need it:
// before the first fetch, tokens of that issuer fail closed.
func (v *Verifier) WaitReady(ctx context.Context) error {
	for _, is := range v.issuers {
		src := is.src.Load()
		if src == nil {
			return fmt.Errorf("token: %s not discovered yet", is.name)
		}
		if err := src.res.Ready(ctx); err != nil {
			return fmt.Errorf("token: jwks for %s not ready: %w", is.name, err)
		}
	}
	return nil
}

func newIssuer(o IssuerOptions) (*issuer, error) {
	if o.Issuer == "" {
		return nil, errors.New("issuer is required")
	}
	if len(o.Audiences) == 0 {
		return nil, fmt.Errorf("issuer %s: audiences are required", o.Issuer)
	}
	is := &issuer{
		name:      o.Issuer,
		jwksURL:   o.JWKSURL,
		audiences: slices.Clone(o.Audiences),
		algs:      map[string]algInfo{},
		typ:       o.RequireTyp,
		hmac:      slices.Clone(o.HMACSecret),
	}
	algs := o.Algorithms
	if len(algs) == 0 {
		algs = defaultAlgorithms
	}
	for _, a := range algs {
		ai, ok := knownAlgs[a]
		if !ok {
			return nil, fmt.Errorf("issuer %s: algorithm %q is not supported", o.Issuer, a)
		}
		if ai.kind == kindHMAC && len(o.HMACSecret) == 0 {
			return nil, fmt.Errorf("issuer %s: %s needs hmac_secret", o.Issuer, a)
		}
		is.algs[a] = ai
		is.algList = append(is.algList, a)
	}
	if len(o.HMACSecret) > 0 && len(o.HMACSecret) < 32 {
		return nil, fmt.Errorf("issuer %s: hmac_secret must be at least 32 bytes", o.Issuer)
	}
	return is, nil
}

// Close stops background JWKS refreshes and releases the caches.
func (v *Verifier) Close() {
	if v.cancel != nil {
		v.cancel()
	}
	if v.jwks != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = v.jwks.Shutdown(ctx)
		cancel()
	}
	if v.cache != nil {
		v.cache.Close()
	}
}

// JWKSFetches reports how many JWKS requests were made (all issuers).
func (v *Verifier) JWKSFetches() int64 { return v.fetcher.fetches.Load() }

// Verify checks raw (the token as sent, without the scheme) at time now.
// It returns the verified claims, or an *Error whose Reason says why not;
// technical failures carry ReasonUnavailable and must fail closed. Route
// specifics (which issuers, scopes, DPoP binding) are the caller's: see
// Middleware.
func (v *Verifier) Verify(ctx context.Context, raw []byte, now time.Time) (*Claims, error) {
	if len(raw) == 0 {
		return nil, ErrMalformed
	}
	// The size limit comes before hashing or parsing so a megabyte of junk
	// costs a length comparison.
	if len(raw) > v.maxSize {
		return nil, ErrTooLarge
	}
	digest := sha256.Sum256(raw)
	key := binary.LittleEndian.Uint64(digest[:8])
	if e, ok := v.cache.Get(key); ok && e.digest == digest {
		if now.Before(e.expires) && (e.pin == nil || e.pin.stillPublished(ctx)) {
			if e.claims == nil {
				return nil, &Error{Reason: e.reason}
			}
			if err := v.checkLive(ctx, e.claims, now); err != nil {
				return nil, err
			}
			return e.claims, nil
		}
		v.cache.Del(key)
	}

	var (
		c     *Claims
		pin   *keyPin
		until time.Time
		err   error
	)
	if bytes.Count(raw, dot) == 2 {
		c, pin, err = v.verifyJWT(ctx, raw, now)
		if err == nil {
			until = minTime(now.Add(v.cacheTTL), c.Expiry)
		}
	} else if v.intro != nil && isToken68(raw) {
		c, until, err = v.intro.introspect(ctx, raw, now, v.groupsClaim, v.leeway)
		if err != nil {
			var te *Error
			if errors.As(err, &te) && te.Reason == ReasonInactive {
				v.store(key, &cacheEntry{digest: digest, reason: ReasonInactive, expires: now.Add(v.intro.negTTL)}, now)
			}
			return nil, err
		}
	} else {
		return nil, reject(ReasonMalformed, "not a compact JWS")
	}
	if err != nil {
		return nil, err
	}
	if err := v.checkRevoked(ctx, c); err != nil {
		return nil, err
	}
	v.store(key, &cacheEntry{digest: digest, claims: c, expires: until, pin: pin}, now)
	return c, nil
}

var dot = []byte{'.'}

func (v *Verifier) store(key uint64, e *cacheEntry, now time.Time) {
	ttl := e.expires.Sub(now)
	if ttl <= 0 {
		return
	}
	v.cache.SetWithTTL(key, e, 1, ttl)
}

func minTime(a, b time.Time) time.Time {
	if !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}

// checkLive re-checks what can change while a token sits in the cache:
// the clock and revocation.
func (v *Verifier) checkLive(ctx context.Context, c *Claims, now time.Time) error {
	if !c.Expiry.IsZero() && !now.Before(c.Expiry.Add(v.leeway)) {
		return ErrExpired
	}
	return v.checkRevoked(ctx, c)
}

// checkRevoked rejects a token issued before its subject was revoked, here
// (RevokeSubject) or in the session store. A token without iat cannot prove
// it is newer and is rejected once its subject is revoked.
func (v *Verifier) checkRevoked(ctx context.Context, c *Claims) error {
	if at, ok := (*v.revoked.Load())[subjectKey{c.Issuer, c.Subject}]; ok && c.IssuedAt.Before(at) {
		return ErrRevoked
	}
	if v.revocation != nil {
		if at, ok := v.revocation.SubjectRevokedAt(ctx, c.Issuer, c.Subject); ok && c.IssuedAt.Before(at) {
			return ErrRevoked
		}
	}
	return nil
}

// RevokeSubject makes every token of iss/sub issued before now stop
// passing at once, cached or not, in this process. The session store's
// revocation (via Options.Revocation) covers other instances.
func (v *Verifier) RevokeSubject(iss, sub string) {
	now := v.now()
	v.revMu.Lock()
	defer v.revMu.Unlock()
	old := *v.revoked.Load()
	next := make(map[subjectKey]time.Time, len(old)+1)
	// Entries older than the longest a cached token can live no longer
	// matter for the cache; tokens still valid from before then are caught
	// by the session store's record.
	for k, t := range old {
		if now.Sub(t) < 24*time.Hour {
			next[k] = t
		}
	}
	next[subjectKey{iss, sub}] = now
	v.revoked.Store(&next)
}

func isToken68(b []byte) bool {
	for _, c := range b {
		if !isB64URLChar(c) && c != '.' && c != '~' && c != '+' && c != '/' && c != '=' {
			return false
		}
	}
	return true
}

// jwsHeader is the protected header. Pointer/raw fields tell absent from
// empty.
type jwsHeader struct {
	Alg  *string         `json:"alg"`
	Kid  *string         `json:"kid"`
	Typ  *string         `json:"typ"`
	Crit json.RawMessage `json:"crit"`
	B64  json.RawMessage `json:"b64"`
	JWK  json.RawMessage `json:"jwk"`
}

// parseJWS runs every structural check that comes before cryptography.
func parseJWS(raw []byte) (hdr jwsHeader, payload []byte, err error) {
	hs, ps, ss, err := splitCompact(raw)
	if err != nil {
		return hdr, nil, reject(ReasonMalformed, "%w", err)
	}
	hj, err := decodeJSONSegment(hs)
	if err != nil {
		return hdr, nil, reject(ReasonMalformed, "header: %w", err)
	}
	if err := json.Unmarshal(hj, &hdr); err != nil || hdr.Alg == nil {
		return hdr, nil, reject(ReasonMalformed, "header: bad or missing alg")
	}
	// RFC 7515 §4.1.11: a crit we do not understand invalidates the JWS;
	// we implement no extensions, and an empty crit list is itself
	// forbidden. b64 (RFC 7797) changes what is signed; refuse it.
	if hdr.Crit != nil {
		return hdr, nil, reject(ReasonCrit, "crit present")
	}
	if hdr.B64 != nil {
		return hdr, nil, reject(ReasonCrit, "b64 present")
	}
	payload, err = decodeJSONSegment(ps)
	if err != nil {
		return hdr, nil, reject(ReasonMalformed, "payload: %w", err)
	}
	if len(ss) == 0 {
		return hdr, nil, reject(ReasonBadSignature, "no signature")
	}
	if _, err := decodeSegment(ss); err != nil {
		return hdr, nil, reject(ReasonMalformed, "signature: %w", err)
	}
	return hdr, payload, nil
}

// verifyJWT verifies a compact JWS access token. pin is the JWKS key that
// verified it (nil for HMAC), for the verified-token cache.
func (v *Verifier) verifyJWT(ctx context.Context, raw []byte, now time.Time) (_ *Claims, pin *keyPin, _ error) {
	hdr, payload, err := parseJWS(raw)
	if err != nil {
		return nil, nil, err
	}
	var rc rawClaims
	if err := json.Unmarshal(payload, &rc); err != nil {
		return nil, nil, reject(ReasonMalformed, "claims: %w", err)
	}
	c, err := rc.toClaims(v.groupsClaim)
	if err != nil {
		return nil, nil, reject(ReasonMalformed, "claims: %w", err)
	}
	if c.Issuer == "" {
		return nil, nil, reject(ReasonMissingClaim, "no iss")
	}
	// Keys are per issuer (RFC 8725 §3.8): the token's own iss picks the
	// only key set its signature may be checked against.
	is, ok := v.issuers[c.Issuer]
	if !ok {
		return nil, nil, reject(ReasonBadIssuer, "untrusted issuer")
	}
	alg := *hdr.Alg
	ai, ok := is.algs[alg]
	if !ok {
		return nil, nil, reject(ReasonUnsupportedAlg, "alg not allowed for issuer")
	}
	if is.typ {
		// RFC 9068 §4: typ must be at+jwt (media types compare
		// case-insensitively; the application/ prefix may be present).
		if hdr.Typ == nil || !(strings.EqualFold(*hdr.Typ, "at+jwt") || strings.EqualFold(*hdr.Typ, "application/at+jwt")) {
			return nil, nil, reject(ReasonBadType, "typ is not at+jwt")
		}
	}
	if err := v.checkClaims(c, is.audiences, now); err != nil {
		return nil, nil, err
	}

	var (
		keys   []any
		pinned []*pubKey // parallel to keys; nil for the HMAC secret
		idx    *keyIndex
	)
	if ai.kind == kindHMAC {
		keys, pinned = []any{is.hmac}, []*pubKey{nil}
	} else {
		kid := ""
		if hdr.Kid != nil {
			kid = *hdr.Kid
		}
		idx, err = is.keys(ctx)
		if err != nil {
			return nil, nil, &Error{Reason: ReasonUnavailable, Cause: err}
		}
		found := idx.find(kid, alg, ai)
		if len(found) == 0 && kid != "" && is.refetch(ctx, now, v.refetch) {
			if idx, err = is.keys(ctx); err == nil {
				found = idx.find(kid, alg, ai)
			}
		}
		if len(found) == 0 {
			return nil, nil, reject(ReasonUnknownKey, "no matching key")
		}
		for _, k := range found {
			keys = append(keys, k.key)
			pinned = append(pinned, k)
		}
	}

	// jwx with every default that falls short of the RFCs overridden
	// explicitly: exp required (jwx accepts a token without it), issuer
	// pinned, our clock and leeway. jwt.Parse verifies compact
	// serialization only and refuses crit-bearing tokens on this path.
	clock := jwt.ClockFunc(func() time.Time { return now })
	var lastErr error
	for i, k := range keys {
		_, err := jwt.Parse(raw,
			jwt.WithKey(ai.alg, k),
			jwt.WithValidate(true),
			jwt.WithRequiredClaim("exp"),
			jwt.WithIssuer(is.name),
			jwt.WithAcceptableSkew(v.leeway),
			jwt.WithClock(clock),
		)
		if err == nil {
			if pinned[i] != nil {
				pin = &keyPin{is: is, idx: idx, key: pinned[i]}
			}
			return c, pin, nil
		}
		lastErr = err
	}
	switch {
	case errors.Is(lastErr, jwt.TokenExpiredError()):
		return nil, nil, &Error{Reason: ReasonExpired, Cause: lastErr}
	case errors.Is(lastErr, jwt.TokenNotYetValidError()), errors.Is(lastErr, jwt.InvalidIssuedAtError()):
		return nil, nil, &Error{Reason: ReasonNotYetValid, Cause: lastErr}
	case errors.Is(lastErr, jws.ErrCritPresent()):
		return nil, nil, &Error{Reason: ReasonCrit, Cause: lastErr}
	case errors.Is(lastErr, jwt.ValidateError()):
		return nil, nil, &Error{Reason: ReasonMissingClaim, Cause: lastErr}
	}
	return nil, nil, &Error{Reason: ReasonBadSignature, Cause: lastErr}
}

// checkClaims validates the registered claims (RFC 7519 §4.1, RFC 9068 §4).
func (v *Verifier) checkClaims(c *Claims, audiences []string, now time.Time) error {
	if c.Expiry.IsZero() {
		return reject(ReasonMissingClaim, "no exp")
	}
	if c.Subject == "" {
		return reject(ReasonMissingClaim, "no sub")
	}
	if !now.Before(c.Expiry.Add(v.leeway)) {
		return ErrExpired
	}
	if !c.NotBefore.IsZero() && now.Add(v.leeway).Before(c.NotBefore) {
		return ErrNotYetValid
	}
	if !c.IssuedAt.IsZero() && now.Add(v.leeway).Before(c.IssuedAt) {
		return ErrNotYetValid
	}
	if len(c.Audience) == 0 {
		return reject(ReasonMissingClaim, "no aud")
	}
	for _, a := range c.Audience {
		if slices.Contains(audiences, a) {
			return nil
		}
	}
	return ErrBadAudience
}
