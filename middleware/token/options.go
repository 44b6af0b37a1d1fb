package token

import (
	"context"
	"log/slog"
	"net/http"
	"time"
)

// RevocationChecker reports when all tokens of a subject were revoked.
// session.Store satisfies it; it is declared here so that token does not
// depend on session. ok is false when the subject was never revoked.
type RevocationChecker interface {
	SubjectRevokedAt(ctx context.Context, issuer, subject string) (time.Time, bool)
}

// Options configures a Verifier. cmd/ fills it from the tokens: section of
// the YAML config.
type Options struct {
	// Issuers are the trusted token issuers. At least one is required
	// unless Introspection is set.
	Issuers []IssuerOptions
	// MaxSize is the largest token accepted before any parsing.
	// Zero means 8 KiB.
	MaxSize int
	// Leeway is the clock skew allowed on exp, nbf and iat. Zero means 60s;
	// a negative value means no leeway.
	Leeway time.Duration
	// RefetchInterval is the minimum time between JWKS fetches triggered by
	// an unknown kid, per issuer. Zero means 30s.
	RefetchInterval time.Duration
	// RefreshInterval is the longest time between periodic JWKS refreshes.
	// Zero means 15m.
	RefreshInterval time.Duration
	// CacheSize bounds the number of verified tokens kept. Zero means 100000.
	CacheSize int64
	// CacheTTL caps how long a verified token is served from cache (never
	// beyond its exp). Zero means 5m.
	CacheTTL time.Duration
	// GroupsClaim names the claim that carries groups. Zero means "groups".
	GroupsClaim string
	// Introspection enables RFC 7662 for opaque (non-JWT) tokens. Nil means
	// opaque tokens are rejected as malformed.
	Introspection *IntrospectionOptions
	// DPoP configures proof checking. The zero value is usable.
	DPoP DPoPOptions
	// Revocation is consulted on every request, cached or not. Nil means
	// only RevokeSubject revocations apply.
	Revocation RevocationChecker
	// HTTPClient fetches discovery documents and JWKS. Nil means a client
	// with a 10s timeout that does not follow redirects.
	HTTPClient *http.Client
	// Logger receives JWKS refresh failures. Nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock for RevokeSubject and background bookkeeping. Nil
	// means time.Now. (Verify takes the request time as an argument.)
	Now func() time.Time
}

// IssuerOptions is one trusted issuer.
type IssuerOptions struct {
	// Issuer is compared byte for byte with the iss claim. Required.
	Issuer string
	// JWKSURL is where the issuer's keys are. Empty means discover it from
	// Issuer + "/.well-known/openid-configuration" when the Verifier is
	// built.
	JWKSURL string
	// Audiences: the aud claim must contain at least one. Required (RFC
	// 8725 §3.9: an issuer serving several RPs must be audience-checked).
	Audiences []string
	// Algorithms is the exact-case allow-list of JWS algorithms. Empty
	// means RS256, ES256, EdDSA. "none" is always refused; HS256/384/512 are
	// allowed only together with HMACSecret.
	Algorithms []string
	// RequireTyp enforces typ "at+jwt" (RFC 9068 §4). False means typ is
	// not checked, for providers that omit it.
	RequireTyp bool
	// HMACSecret enables HS* for this issuer only. It is never combined
	// with JWKS keys, and must be at least 32 bytes (RFC 8725 §3.5).
	// Empty means no HMAC.
	HMACSecret []byte
}

// IntrospectionOptions configures RFC 7662 introspection of opaque tokens.
type IntrospectionOptions struct {
	// URL of the introspection endpoint. Required.
	URL string
	// ClientID and ClientSecret authenticate us with client_secret_basic
	// (RFC 7662 §2.1 requires the endpoint to authenticate callers).
	ClientID     string
	ClientSecret string
	// Issuer is the issuer attributed to introspected tokens; a response
	// with a different iss is rejected. Required.
	Issuer string
	// Audiences, when non-empty, must intersect the response's aud.
	// Empty means aud is not checked (many servers omit it).
	Audiences []string
	// CacheTTL bounds how long an active result is reused (never beyond
	// exp). Zero means 60s.
	CacheTTL time.Duration
	// NegativeTTL is how long an inactive result is remembered. Zero means 5s.
	NegativeTTL time.Duration
	// Timeout bounds one introspection call. Zero means 5s.
	Timeout time.Duration
	// HTTPClient makes the calls. Nil means a client with Timeout that does
	// not follow redirects.
	HTTPClient *http.Client
}

// DPoPOptions configures RFC 9449 proof checks.
type DPoPOptions struct {
	// IATWindow is how far a proof's iat may be from now, either way.
	// Zero means 60s.
	IATWindow time.Duration
	// Algorithms allowed for proofs (asymmetric only). Empty means RS256,
	// PS256, ES256, ES384, EdDSA.
	Algorithms []string
	// ReplayCacheSize bounds remembered jtis; when full, new proofs are
	// refused (fail closed) until entries age out. Zero means 100000.
	ReplayCacheSize int
}

const (
	defaultMaxSize         = 8 << 10
	defaultLeeway          = 60 * time.Second
	defaultRefetchInterval = 30 * time.Second
	defaultRefreshInterval = 15 * time.Minute
	defaultCacheSize       = 100_000
	defaultCacheTTL        = 5 * time.Minute
	defaultIntroTTL        = 60 * time.Second
	defaultNegativeTTL     = 5 * time.Second
	defaultIntroTimeout    = 5 * time.Second
	defaultDPoPWindow      = 60 * time.Second
	defaultReplaySize      = 100_000
)

var (
	defaultAlgorithms     = []string{"RS256", "ES256", "EdDSA"}
	defaultDPoPAlgorithms = []string{"RS256", "PS256", "ES256", "ES384", "EdDSA"}
)
