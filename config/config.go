// Package config is edgeauth's configuration: the YAML schema as typed
// structs, strict decoding, ${ENV} expansion, *_file secrets, defaults and
// validation.
//
// Contract: Load and Parse return a Config only when the document decodes
// cleanly; the error they return lists every problem at once (errors.Join of
// *FieldError), each naming the key path and the line it came from, e.g.
//
//	routes[2].upstream: "htp://x": unsupported scheme (line 31)
//
// A Config that came with a non-nil error must not be used to serve. Validate
// is pure (no file system, no network) and can be run again on a Config
// built in code. Compiling a Config into runtime objects (route tables,
// CIDR sets, clients) belongs to the packages that use it, not here.
//
// Trust boundary: the config file and the environment are trusted to say
// what the operator wants, but not to be well-formed. The decoder bounds
// what a hostile or broken file can cost: a size limit (MaxFileSize), no
// YAML aliases (billion-laughs expansion), a nesting limit, exactly one
// document. Secret values are held in Secret, which never prints, and no
// error message ever contains one.
//
// This package must not import proxy or middleware packages: they receive
// plain values from cmd/edgeauth.
package config

import "time"

// Config is the whole configuration file. Field comments state the value a
// field has when the key is absent (the default from Default, or the zero
// value when there is none).
type Config struct {
	// Log configures the process log. Default: level info, format json.
	Log Log `yaml:"log"`
	// Listen is the main listener address host:port. Default
	// "127.0.0.1:8080"; set ":8443" (all interfaces) deliberately.
	Listen string `yaml:"listen"`
	// TLS turns the main listener into HTTPS when both files are set.
	// Zero: plain HTTP.
	TLS TLS `yaml:"tls"`
	// ExternalURL is the scheme://host[:port] the proxy is reached at, used
	// for callbacks and DPoP htu when a route has no better source. Never
	// derived from client-sent headers. Zero: derived per route.
	ExternalURL string `yaml:"external_url"`
	// Admin configures the admin listener (/metrics, /healthz, /readyz,
	// admin API).
	Admin Admin `yaml:"admin"`
	// TrustedProxies lists CIDRs (or single IPs) of proxies whose
	// forwarding headers are believed. Zero: none, forwarding headers are
	// ignored and the TCP peer is the client.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// ClientIPHeader names the one forwarding header read from trusted
	// proxies: x-forwarded-for, forwarded or none. Default x-forwarded-for.
	ClientIPHeader ClientIPHeader `yaml:"client_ip_header"`
	// Server holds listener limits and timeouts.
	Server Server `yaml:"server"`
	// IdentityHeaders names the headers set toward upstreams.
	IdentityHeaders IdentityHeaders `yaml:"identity_headers"`
	// OIDC configures browser SSO. Zero (no issuer): SSO is off.
	OIDC OIDC `yaml:"oidc"`
	// Session configures session cookies and the session store.
	Session Session `yaml:"session"`
	// Redis is used when session.store is redis.
	Redis Redis `yaml:"redis"`
	// Tokens configures bearer token verification. Zero (no issuers, no
	// introspection URL): bearer tokens are not accepted.
	Tokens Tokens `yaml:"tokens"`
	// GeoIP names the MaxMind databases. Zero: no location signals.
	GeoIP GeoIP `yaml:"geoip"`
	// Risk configures signals, weights and lists.
	Risk Risk `yaml:"risk"`
	// Audit configures the audit stream and alert webhooks.
	Audit Audit `yaml:"audit"`
	// Routes are matched by host, then longest path prefix. An empty
	// name becomes "route-N" (N = index in the list).
	Routes []Route `yaml:"routes"`
	// DefaultRoute names the route used for unknown hosts. Zero: 404.
	DefaultRoute string `yaml:"default_route"`

	// lines maps key paths ("routes[2].upstream") to the line they were
	// read from, so that Validate can name lines. Nil for a Config built
	// in code; errors then carry no line.
	lines map[string]int
}

// LogLevel is the minimum level logged.
type LogLevel string

// Log levels.
const (
	LogDebug LogLevel = "debug"
	LogInfo  LogLevel = "info"
	LogWarn  LogLevel = "warn"
	LogError LogLevel = "error"
)

// LogFormat selects the slog handler.
type LogFormat string

// Log formats.
const (
	LogJSON LogFormat = "json"
	LogText LogFormat = "text"
)

// Log configures the process log.
type Log struct {
	// Level is debug, info, warn or error. Default info.
	Level LogLevel `yaml:"level"`
	// Format is json or text. Default json.
	Format LogFormat `yaml:"format"`
}

// TLS names the certificate and key files of the main listener. Both or
// neither must be set. The files are read (and re-read on change) by the
// proxy, not at config load.
type TLS struct {
	// CertFile is a PEM certificate chain. Zero: plain HTTP.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key. Zero: plain HTTP.
	KeyFile string `yaml:"key_file"`
}

// Enabled reports whether the main listener serves HTTPS.
func (t TLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// Admin configures the admin listener.
type Admin struct {
	// Listen is host:port. Default "127.0.0.1:9090". Empty disables the
	// admin listener.
	Listen string `yaml:"listen"`
	// Token guards the admin API (sessions, revocation); at least 16
	// bytes. Zero (and no token_file): the admin API is off, /metrics and
	// health endpoints still serve.
	Token Secret `yaml:"token"`
	// TokenFile holds Token; exactly one of token and token_file.
	TokenFile string `yaml:"token_file"`
}

// ClientIPHeader selects which forwarding header carries the client IP.
type ClientIPHeader string

// Client IP header choices.
const (
	ClientIPXForwardedFor ClientIPHeader = "x-forwarded-for"
	ClientIPForwarded     ClientIPHeader = "forwarded"
	ClientIPNone          ClientIPHeader = "none"
)

// Server holds main listener limits.
type Server struct {
	// ReadTimeout bounds reading a whole request. Default 30s.
	ReadTimeout Duration `yaml:"read_timeout"`
	// WriteTimeout bounds writing a whole response. Default 60s.
	WriteTimeout Duration `yaml:"write_timeout"`
	// IdleTimeout bounds keep-alive idle time. Default 90s.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// HeaderTimeout bounds reading the request head (slowloris). Default
	// 10s.
	HeaderTimeout Duration `yaml:"header_timeout"`
	// MaxHeaderBytes bounds the request head. Default 16KiB.
	MaxHeaderBytes ByteSize `yaml:"max_header_bytes"`
	// MaxBodyBytes is the request body limit for routes that set none.
	// Default 10MiB.
	MaxBodyBytes ByteSize `yaml:"max_body_bytes"`
	// MaxConns bounds concurrent client connections (fasthttp serves one
	// request per connection at a time, so this also bounds concurrent
	// requests). Default 100000.
	MaxConns int `yaml:"max_conns"`
	// ShutdownTimeout bounds draining on SIGTERM. Default 20s.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
}

// IdentityHeaders names the headers the proxy sets toward upstreams after
// stripping every inbound copy.
type IdentityHeaders struct {
	// User carries the subject. Default X-Auth-Request-User.
	User string `yaml:"user"`
	// Email carries the email claim. Default X-Auth-Request-Email.
	Email string `yaml:"email"`
	// Groups carries the groups, comma-separated. Default
	// X-Auth-Request-Groups.
	Groups string `yaml:"groups"`
	// PreferredUsername carries preferred_username. Default
	// X-Auth-Request-Preferred-Username.
	PreferredUsername string `yaml:"preferred_username"`
	// Assertion carries a signed JWT about the caller. Default
	// X-Edgeauth-Assertion; "" disables the assertion.
	Assertion string `yaml:"assertion"`
	// AssertionTTL is the assertion lifetime. Default 60s.
	AssertionTTL Duration `yaml:"assertion_ttl"`
	// AssertionKeyFile is a PEM EC P-256 private key. Zero: a key is
	// generated at start (assertions then change key on restart).
	AssertionKeyFile string `yaml:"assertion_key_file"`
}

// OIDC configures the relying party.
type OIDC struct {
	// Issuer is the provider's issuer URL; https, or http on a loopback
	// host. Zero: SSO is off.
	Issuer string `yaml:"issuer"`
	// ClientID is the client registered at the provider. Required with
	// issuer.
	ClientID string `yaml:"client_id"`
	// ClientSecret is the client secret; exactly one of client_secret and
	// client_secret_file is required with issuer.
	ClientSecret Secret `yaml:"client_secret"`
	// ClientSecretFile holds ClientSecret.
	ClientSecretFile string `yaml:"client_secret_file"`
	// Scopes requested at login. Default [openid, email, profile]; must
	// contain openid.
	Scopes []string `yaml:"scopes"`
	// RedirectURL is the callback URL registered at the provider. Zero:
	// derived from external_url or the route host + /.edgeauth/callback.
	RedirectURL string `yaml:"redirect_url"`
	// GroupsClaim names the claim carrying groups. Default "groups".
	GroupsClaim string `yaml:"groups_claim"`
	// PostLogoutRedirectURL is where the provider sends the user after
	// logout. Zero: the provider's default page.
	PostLogoutRedirectURL string `yaml:"post_logout_redirect_url"`
	// StepUp is what a step-up login asks for.
	StepUp StepUp `yaml:"step_up"`
	// DiscoveryTimeout bounds provider discovery at start. Default 10s.
	DiscoveryTimeout Duration `yaml:"discovery_timeout"`
}

// Enabled reports whether browser SSO is configured.
func (o OIDC) Enabled() bool { return o.Issuer != "" }

// StepUp is sent on a step-up login (RFC 9470 / OIDC Core §3.1.2.1).
type StepUp struct {
	// ACRValues requested, in order of preference. Zero: none requested
	// (prompt=login only).
	ACRValues []string `yaml:"acr_values"`
	// MaxAge is sent as max_age. Zero: not sent.
	MaxAge Duration `yaml:"max_age"`
}

// SessionStore selects the session store.
type SessionStore string

// Session stores.
const (
	StoreMemory SessionStore = "memory"
	StoreRedis  SessionStore = "redis"
)

// Session configures session cookies and storage.
type Session struct {
	// CookieName is the session cookie name; the __Host- prefix is added
	// under TLS. Default edgeauth_session.
	CookieName string `yaml:"cookie_name"`
	// Secrets are cookie-signing keys, each at least 32 bytes; the first
	// signs, all verify (rotation). Required when oidc is set; exactly
	// one of secrets and secrets_file.
	Secrets []Secret `yaml:"secrets"`
	// SecretsFile holds Secrets, one per line; blank lines and lines
	// starting with # are skipped.
	SecretsFile string `yaml:"secrets_file"`
	// Lifetime is the absolute session lifetime. Default 12h.
	Lifetime Duration `yaml:"lifetime"`
	// IdleTimeout ends a session unused this long. Default 1h.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// Store is memory or redis. Default memory.
	Store SessionStore `yaml:"store"`
	// MemoryBudget bounds the in-memory store (and the L1 in front of
	// Redis). Default 512MiB.
	MemoryBudget ByteSize `yaml:"memory_budget"`
	// SnapshotFile is where the memory store is saved on shutdown and
	// loaded at start. Zero: sessions are lost on restart.
	SnapshotFile string `yaml:"snapshot_file"`
}

// Redis configures the shared session store.
type Redis struct {
	// Addrs are host:port addresses: one = single node, several =
	// cluster, with sentinel_master = sentinels. Required when
	// session.store is redis.
	Addrs []string `yaml:"addrs"`
	// SentinelMaster is the Sentinel master name. Zero: no Sentinel.
	SentinelMaster string `yaml:"sentinel_master"`
	// Username is the ACL user. Zero: default user.
	Username string `yaml:"username"`
	// Password is the AUTH password; at most one of password and
	// password_file. Zero: no AUTH.
	Password Secret `yaml:"password"`
	// PasswordFile holds Password.
	PasswordFile string `yaml:"password_file"`
	// DB is the database number (not used by cluster). Default 0.
	DB int `yaml:"db"`
	// TLS configures TLS to Redis.
	TLS RedisTLS `yaml:"tls"`
	// L1TTL is how long a session read from Redis is trusted from the
	// local cache. Default 10s.
	L1TTL Duration `yaml:"l1_ttl"`
	// OutageGrace is how long L1 sessions keep working while Redis is
	// down. Default 5m.
	OutageGrace Duration `yaml:"outage_grace"`
}

// RedisTLS configures TLS toward Redis.
type RedisTLS struct {
	// Enabled turns TLS on. Default false.
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM CA bundle. Zero: system roots.
	CAFile string `yaml:"ca_file"`
	// InsecureSkipVerify disables certificate checks; for tests only.
	// Default false.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// Tokens configures bearer token verification.
type Tokens struct {
	// MaxSize rejects larger tokens before parsing. Default 8KiB.
	MaxSize ByteSize `yaml:"max_size"`
	// Leeway for exp/nbf/iat. Default 60s.
	Leeway Duration `yaml:"leeway"`
	// RefetchInterval is the minimum time between JWKS refetches caused
	// by an unknown kid. Default 30s.
	RefetchInterval Duration `yaml:"refetch_interval"`
	// CacheSize is the number of verified tokens cached. Default 100000.
	CacheSize int `yaml:"cache_size"`
	// Issuers are the trusted token issuers. Zero: no JWT is accepted.
	Issuers []TokenIssuer `yaml:"issuers"`
	// Introspection configures RFC 7662 for opaque tokens. Zero (no url):
	// off.
	Introspection Introspection `yaml:"introspection"`
	// DPoP configures RFC 9449 proof checks.
	DPoP DPoP `yaml:"dpop"`
}

// TokenIssuer is one trusted JWT issuer.
type TokenIssuer struct {
	// Issuer must equal the iss claim exactly; https, or http on a
	// loopback host. Required.
	Issuer string `yaml:"issuer"`
	// JWKSURL overrides discovery. Zero: from
	// {issuer}/.well-known/openid-configuration.
	JWKSURL string `yaml:"jwks_url"`
	// Audiences: aud must contain one of them. Required (RFC 8725 §3.9).
	Audiences []string `yaml:"audiences"`
	// Algorithms allowed, exact case. Default [RS256, ES256, EdDSA]; HS*
	// only with an HMAC secret; never none.
	Algorithms []string `yaml:"algorithms"`
	// RequireTyp requires typ at+jwt (RFC 9068). Default false because
	// some providers omit it.
	RequireTyp bool `yaml:"require_typ"`
	// HMACSecret enables HS256/384/512 for this issuer only; at least 32
	// bytes (RFC 8725 §3.5). At most one of hmac_secret and
	// hmac_secret_file. Zero: no HMAC.
	HMACSecret Secret `yaml:"hmac_secret"`
	// HMACSecretFile holds HMACSecret.
	HMACSecretFile string `yaml:"hmac_secret_file"`
}

// Introspection configures RFC 7662 token introspection.
type Introspection struct {
	// URL is the introspection endpoint. Zero: introspection is off.
	URL string `yaml:"url"`
	// ClientID authenticates the proxy at the endpoint. Required with url.
	ClientID string `yaml:"client_id"`
	// ClientSecret; exactly one of client_secret and client_secret_file
	// is required with url.
	ClientSecret Secret `yaml:"client_secret"`
	// ClientSecretFile holds ClientSecret.
	ClientSecretFile string `yaml:"client_secret_file"`
	// CacheTTL bounds how long a result is cached (never beyond exp).
	// Default 60s.
	CacheTTL Duration `yaml:"cache_ttl"`
}

// DPoP configures proof-of-possession checks.
type DPoP struct {
	// IATWindow is how far a proof's iat may be from now. Default 60s.
	IATWindow Duration `yaml:"iat_window"`
}

// GeoIP names MaxMind database files. They are opened by the risk package.
type GeoIP struct {
	// City is a GeoIP2/GeoLite2 City database. Zero: no location.
	City string `yaml:"city"`
	// ASN is a GeoLite2 ASN database. Zero: no ASN signals.
	ASN string `yaml:"asn"`
	// AnonymousIP is a GeoIP2 Anonymous IP database. Zero: no anonymous
	// network signal.
	AnonymousIP string `yaml:"anonymous_ip"`
}

// Risk configures scoring.
type Risk struct {
	// ImpossibleTravelKmh is the speed above which travel between two
	// logins is impossible. Default 1000.
	ImpossibleTravelKmh float64 `yaml:"impossible_travel_kmh"`
	// History bounds the per-user history.
	History RiskHistory `yaml:"history"`
	// Rules are the weights (0..100) added to the score when a signal
	// fires.
	Rules RiskRules `yaml:"rules"`
	// CountryDeny denies these ISO 3166-1 alpha-2 countries. Zero: none.
	CountryDeny []string `yaml:"country_deny"`
	// CountryAllow, when not empty, denies every other country. Zero: all
	// allowed.
	CountryAllow []string `yaml:"country_allow"`
	// ASNDeny denies these autonomous system numbers. Zero: none.
	ASNDeny []uint32 `yaml:"asn_deny"`
	// MaxStepUpFailures revokes the session after this many failed
	// step-ups. Default 3.
	MaxStepUpFailures int `yaml:"max_step_up_failures"`
	// DeviceCookie configures the long-lived device cookie.
	DeviceCookie DeviceCookie `yaml:"device_cookie"`
}

// RiskHistory bounds per-user history.
type RiskHistory struct {
	// MaxDevices remembered per user. Default 20.
	MaxDevices int `yaml:"max_devices"`
	// MaxCountries remembered per user. Default 20.
	MaxCountries int `yaml:"max_countries"`
	// MaxASNs remembered per user. Default 20.
	MaxASNs int `yaml:"max_asns"`
	// TTL of a user's history after last use. Default 720h.
	TTL Duration `yaml:"ttl"`
}

// RiskRules are per-signal weights, each 0..100; 0 disables the signal.
type RiskRules struct {
	// NewDevice: device not seen for this user. Default 30.
	NewDevice int `yaml:"new_device"`
	// NewCountry: country not seen for this user. Default 40.
	NewCountry int `yaml:"new_country"`
	// NewASN: network not seen for this user. Default 10.
	NewASN int `yaml:"new_asn"`
	// ImpossibleTravel: speed since last seen above the limit. Default 80.
	ImpossibleTravel int `yaml:"impossible_travel"`
	// AnonymousIP: VPN, Tor, hosting or public proxy. Default 60.
	AnonymousIP int `yaml:"anonymous_ip"`
	// FingerprintChanged: the session's device fingerprint changed.
	// Default 50.
	FingerprintChanged int `yaml:"fingerprint_changed"`
}

// DeviceCookie configures the device-binding cookie.
type DeviceCookie struct {
	// Name of the cookie. Default edgeauth_device.
	Name string `yaml:"name"`
	// Lifetime of the cookie. Default 8760h.
	Lifetime Duration `yaml:"lifetime"`
}

// Audit configures audit events and alerts.
type Audit struct {
	// File receives one JSON event per line. Zero: stdout, as a stream
	// separate from the logs.
	File string `yaml:"file"`
	// Alerts configures the webhook.
	Alerts Alerts `yaml:"alerts"`
}

// Alerts configures signed webhook alerts.
type Alerts struct {
	// URL receives POSTs; https, or http on a loopback host. Zero: no
	// alerts.
	URL string `yaml:"url"`
	// Secret signs each POST (HMAC); at least 32 bytes; exactly one of
	// secret and secret_file is required with url.
	Secret Secret `yaml:"secret"`
	// SecretFile holds Secret.
	SecretFile string `yaml:"secret_file"`
	// On lists the decisions that alert: allow, login, step_up,
	// step_up_failed, deny. Default [deny, step_up_failed].
	On []string `yaml:"on"`
}

// AlertEvents are the values accepted in audit.alerts.on: decisions, and
// the risk and policy reason codes an alert can be raised on (e.g.
// impossible_travel). The risk names mirror middleware/risk's reasons;
// cmd/edgeauth has a test that keeps the two lists in step (config must
// not import middleware).
var AlertEvents = []string{
	"allow", "login", "step_up", "step_up_failed", "deny",
	"new_device", "new_country", "new_asn", "impossible_travel", "anonymous_ip", "tor", "hosting",
	"country_denied", "country_not_allowed", "asn_denied", "fingerprint_changed", "client_hints_mismatch",
	"unknown_location", "assessment_unavailable", "initial_login",
	"not_allowed", "acr_required", "auth_too_old", "risk_step_up", "risk_too_high",
}

// AuthMode says whether a route needs authentication.
type AuthMode string

// Route auth modes.
const (
	AuthRequired AuthMode = "required"
	AuthNone     AuthMode = "none"
)

// RiskMode says what risk decisions do on a route.
type RiskMode string

// Route risk modes.
const (
	RiskEnforce RiskMode = "enforce"
	RiskShadow  RiskMode = "shadow"
	RiskOff     RiskMode = "off"
)

// Host header policies; any other value of Route.HostHeader is a literal
// host sent upstream.
const (
	HostHeaderPreserve = "preserve"
	HostHeaderUpstream = "upstream"
)

// Route is one protected application.
type Route struct {
	// Name identifies the route in logs, metrics and default_route.
	// Zero: "route-N" with N the index in routes.
	Name string `yaml:"name"`
	// Host is an exact host name, "*.suffix" (any subdomain, not the
	// bare suffix), or "" / "*" for any host. No port.
	Host string `yaml:"host"`
	// Path is the prefix matched (longest wins). Default "/".
	Path string `yaml:"path"`
	// Upstream is one http(s)://host:port; exactly one of upstream and
	// upstreams.
	Upstream string `yaml:"upstream"`
	// Upstreams are several addresses served round robin.
	Upstreams []string `yaml:"upstreams"`
	// HostHeader is preserve, upstream, or a literal host. Default
	// preserve.
	HostHeader string `yaml:"host_header"`
	// Timeouts toward the upstream.
	Timeouts RouteTimeouts `yaml:"timeouts"`
	// MaxConns per upstream address. Default 512.
	MaxConns int `yaml:"max_conns"`
	// MaxBodyBytes is the request body limit. Zero: server.max_body_bytes
	// (filled in by Parse).
	MaxBodyBytes ByteSize `yaml:"max_body_bytes"`
	// Auth is required or none (whole route public). Default required.
	Auth AuthMode `yaml:"auth"`
	// Public path prefixes served without authentication. Zero: none.
	Public []string `yaml:"public"`
	// Allow restricts who may pass. Zero: any authenticated user.
	Allow Allow `yaml:"allow"`
	// ACR requires one of these acr values always. Zero: any.
	ACR []string `yaml:"acr"`
	// MaxAuthAge requires auth_time within this. Zero: no limit.
	MaxAuthAge Duration `yaml:"max_auth_age"`
	// StepUpAt is the risk score (0..100) from which step-up is required.
	// Default 40; 0 disables score-based step-up.
	StepUpAt int `yaml:"step_up_at"`
	// DenyAt is the risk score (0..100) from which requests are denied.
	// Zero (default): behaviour signals never hard-deny; explicit lists
	// (countries, ASNs, failed step-ups) still do.
	DenyAt int `yaml:"deny_at"`
	// RiskMode is enforce, shadow (log only) or off. Default enforce.
	RiskMode RiskMode `yaml:"risk_mode"`
	// Scopes required in bearer tokens. Zero: none.
	Scopes []string `yaml:"scopes"`
	// TokenIssuers this route trusts, by tokens.issuers[].issuer. Zero:
	// all.
	TokenIssuers []string `yaml:"token_issuers"`
	// Bearer accepts Authorization: Bearer tokens. Default true.
	Bearer bool `yaml:"bearer"`
}

// RouteTimeouts bound upstream I/O.
type RouteTimeouts struct {
	// Connect bounds dialing. Default 5s.
	Connect Duration `yaml:"connect"`
	// Read bounds reading the response. Default 30s.
	Read Duration `yaml:"read"`
	// Write bounds writing the request. Default 30s.
	Write Duration `yaml:"write"`
	// Idle bounds keep-alive idle time. Default 90s.
	Idle Duration `yaml:"idle"`
}

// Allow restricts a route to matching principals. Lists are ORed: a
// principal passes if any list matches; all empty means any authenticated
// principal.
type Allow struct {
	// Emails allowed exactly (case-insensitive). Zero: none.
	Emails []string `yaml:"emails"`
	// EmailDomains allowed (the part after @). Zero: none.
	EmailDomains []string `yaml:"email_domains"`
	// Groups allowed. Zero: none.
	Groups []string `yaml:"groups"`
	// Claims maps a claim name to accepted values. Zero: none.
	Claims map[string][]string `yaml:"claims"`
}

// Default returns a Config holding every default. Parse decodes on top of
// it, so an absent key keeps its default.
func Default() *Config {
	return &Config{
		Log:            Log{Level: LogInfo, Format: LogJSON},
		Listen:         "127.0.0.1:8080",
		Admin:          Admin{Listen: "127.0.0.1:9090"},
		ClientIPHeader: ClientIPXForwardedFor,
		Server: Server{
			ReadTimeout:     Duration(30 * time.Second),
			WriteTimeout:    Duration(time.Minute),
			IdleTimeout:     Duration(90 * time.Second),
			HeaderTimeout:   Duration(10 * time.Second),
			MaxHeaderBytes:  16 << 10,
			MaxBodyBytes:    10 << 20,
			MaxConns:        100000,
			ShutdownTimeout: Duration(20 * time.Second),
		},
		IdentityHeaders: IdentityHeaders{
			User:              "X-Auth-Request-User",
			Email:             "X-Auth-Request-Email",
			Groups:            "X-Auth-Request-Groups",
			PreferredUsername: "X-Auth-Request-Preferred-Username",
			Assertion:         "X-Edgeauth-Assertion",
			AssertionTTL:      Duration(time.Minute),
		},
		OIDC: OIDC{
			Scopes:           []string{"openid", "email", "profile"},
			GroupsClaim:      "groups",
			DiscoveryTimeout: Duration(10 * time.Second),
		},
		Session: Session{
			CookieName:   "edgeauth_session",
			Lifetime:     Duration(12 * time.Hour),
			IdleTimeout:  Duration(time.Hour),
			Store:        StoreMemory,
			MemoryBudget: 512 << 20,
		},
		Redis: Redis{
			L1TTL:       Duration(10 * time.Second),
			OutageGrace: Duration(5 * time.Minute),
		},
		Tokens: Tokens{
			MaxSize:         8 << 10,
			Leeway:          Duration(time.Minute),
			RefetchInterval: Duration(30 * time.Second),
			CacheSize:       100000,
			Introspection:   Introspection{CacheTTL: Duration(time.Minute)},
			DPoP:            DPoP{IATWindow: Duration(time.Minute)},
		},
		Risk: Risk{
			ImpossibleTravelKmh: 1000,
			History:             RiskHistory{MaxDevices: 20, MaxCountries: 20, MaxASNs: 20, TTL: Duration(720 * time.Hour)},
			Rules: RiskRules{
				NewDevice: 30, NewCountry: 40, NewASN: 10,
				ImpossibleTravel: 80, AnonymousIP: 60, FingerprintChanged: 50,
			},
			MaxStepUpFailures: 3,
			DeviceCookie:      DeviceCookie{Name: "edgeauth_device", Lifetime: Duration(8760 * time.Hour)},
		},
		Audit: Audit{Alerts: Alerts{On: []string{"deny", "step_up_failed"}}},
	}
}

// RouteDefaults returns a Route holding every route default; each entry of
// routes is decoded on top of it.
func RouteDefaults() Route {
	return Route{
		Path:       "/",
		HostHeader: HostHeaderPreserve,
		Timeouts:   RouteTimeouts{Connect: Duration(5 * time.Second), Read: Duration(30 * time.Second), Write: Duration(30 * time.Second), Idle: Duration(90 * time.Second)},
		MaxConns:   512,
		Auth:       AuthRequired,
		StepUpAt:   40,
		RiskMode:   RiskEnforce,
		Bearer:     true,
	}
}

// TokenIssuerDefaults returns a TokenIssuer holding the issuer defaults.
func TokenIssuerDefaults() TokenIssuer {
	return TokenIssuer{Algorithms: []string{"RS256", "ES256", "EdDSA"}}
}
