package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Validate checks c and returns every problem at once (errors.Join of
// *FieldError, sorted by line), or nil. It is pure: no file is opened and
// no name is resolved, so it is safe to run on a reload candidate and in
// tests. Files named by the config are checked by whoever opens them.
func (c *Config) Validate() error {
	return joinSorted(c.problems())
}

// v collects problems for one Validate run.
type v struct {
	c    *Config
	errs []*FieldError
}

func (x *v) add(path, value, format string, args ...any) {
	p := format
	if len(args) > 0 {
		p = fmt.Sprintf(format, args...)
	}
	x.errs = append(x.errs, &FieldError{Path: path, Value: value, Problem: p, Line: x.c.lineOf(path)})
}

func (c *Config) problems() []*FieldError {
	x := &v{c: c}
	x.log()
	x.listeners()
	x.server()
	x.identityHeaders()
	x.oidc()
	x.session()
	x.redis()
	x.tokens()
	x.risk()
	x.audit()
	x.routes()
	return x.errs
}

func oneOf[T ~string](x *v, path string, got T, allowed ...T) {
	if slices.Contains(allowed, got) {
		return
	}
	names := make([]string, len(allowed))
	for i, a := range allowed {
		names[i] = string(a)
	}
	x.add(path, string(got), "must be one of %s", strings.Join(names, ", "))
}

func (x *v) positive(path string, d Duration) {
	if d <= 0 {
		x.add(path, d.String(), "must be positive")
	}
}

func (x *v) nonNegative(path string, d Duration) {
	if d < 0 {
		x.add(path, d.String(), "must not be negative")
	}
}

func (x *v) positiveSize(path string, b ByteSize) {
	if b <= 0 {
		x.add(path, b.String(), "must be positive")
	}
}

func (x *v) positiveInt(path string, n int) {
	if n <= 0 {
		x.add(path, strconv.Itoa(n), "must be positive")
	}
}

func (x *v) log() {
	oneOf(x, "log.level", x.c.Log.Level, LogDebug, LogInfo, LogWarn, LogError)
	oneOf(x, "log.format", x.c.Log.Format, LogJSON, LogText)
}

func (x *v) listeners() {
	c := x.c
	if c.Listen == "" {
		x.add("listen", "", "required")
	} else {
		x.addr("listen", c.Listen, false)
	}
	if c.Admin.Listen != "" {
		x.addr("admin.listen", c.Admin.Listen, false)
		if c.Admin.Listen == c.Listen {
			x.add("admin.listen", c.Admin.Listen, "must differ from listen")
		}
	}
	switch {
	case c.TLS.CertFile != "" && c.TLS.KeyFile == "":
		x.add("tls.key_file", "", "required when tls.cert_file is set")
	case c.TLS.CertFile == "" && c.TLS.KeyFile != "":
		x.add("tls.cert_file", "", "required when tls.key_file is set")
	}
	if c.ExternalURL != "" {
		x.url("external_url", c.ExternalURL, urlRule{anyHTTP: true, noPath: true})
	}
	if !c.Admin.Token.IsZero() && c.Admin.Token.Len() < 32 {
		x.add(secretPath("admin.token", c.Admin.TokenFile), "", "token is %d bytes, must be at least 32 (the admin API refuses shorter ones)", c.Admin.Token.Len())
	}
	for i, p := range c.TrustedProxies {
		x.cidr(fmt.Sprintf("trusted_proxies[%d]", i), p)
	}
	oneOf(x, "client_ip_header", c.ClientIPHeader, ClientIPXForwardedFor, ClientIPForwarded, ClientIPNone)
}

// secretPath names the key an operator would edit: the *_file when the
// secret came from one.
func secretPath(path, file string) string {
	if file != "" {
		return path + "_file"
	}
	return path
}

// addr checks host:port. needHost requires a host (outbound addresses).
func (x *v) addr(path, s string, needHost bool) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		x.add(path, s, "must be host:port")
		return
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		x.add(path, s, "port must be a number from 0 to 65535")
	}
	if host == "" {
		if needHost {
			x.add(path, s, "host required")
		}
		return
	}
	if _, err := netip.ParseAddr(host); err != nil && !validHostname(host) {
		x.add(path, s, "invalid host")
	}
}

func (x *v) cidr(path, s string) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			x.add(path, s, "must be a CIDR such as 10.0.0.0/8 or an IP address")
			return
		}
		// A prefix with host bits set (10.0.0.1/8) is nearly always a
		// typo for something narrower or wider; refuse to guess.
		if p != p.Masked() {
			x.add(path, s, "host bits set (did you mean %s?)", p.Masked())
		}
		return
	}
	if _, err := netip.ParseAddr(s); err != nil {
		x.add(path, s, "must be a CIDR such as 10.0.0.0/8 or an IP address")
	}
}

// urlRule says which URLs a key accepts.
type urlRule struct {
	anyHTTP bool // http allowed for any host (else only loopback)
	noPath  bool // only "" or "/" as path (origins, upstreams)
}

func (x *v) url(path, s string, r urlRule) {
	u, err := url.Parse(s)
	if err != nil {
		x.add(path, s, "invalid URL")
		return
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !r.anyHTTP && !isLoopback(u.Hostname()) {
			x.add(path, s, "must use https (http is allowed only for loopback hosts)")
			return
		}
	default:
		x.add(path, s, "unsupported scheme")
		return
	}
	switch {
	case u.Host == "" || u.Hostname() == "":
		x.add(path, s, "host required")
	case u.User != nil:
		x.add(path, s, "must not contain credentials")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#"):
		x.add(path, s, "must not have a query or fragment")
	case r.noPath && u.Path != "" && u.Path != "/":
		x.add(path, s, "must not have a path")
	default:
		if p := u.Port(); p != "" {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				x.add(path, s, "port must be a number from 1 to 65535")
			}
		}
	}
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// validHostname accepts RFC 1123 host names (letters, digits, hyphens,
// dots; labels 1..63; total <= 253).
func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			ch := label[i]
			if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-') {
				return false
			}
		}
	}
	return true
}

// validToken reports whether s is an RFC 9110 §5.6.2 token (header and
// cookie names).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(ch)) {
			return false
		}
	}
	return true
}

func (x *v) server() {
	s := x.c.Server
	x.positive("server.read_timeout", s.ReadTimeout)
	x.positive("server.write_timeout", s.WriteTimeout)
	x.positive("server.idle_timeout", s.IdleTimeout)
	x.positive("server.header_timeout", s.HeaderTimeout)
	x.positive("server.shutdown_timeout", s.ShutdownTimeout)
	x.positiveSize("server.max_header_bytes", s.MaxHeaderBytes)
	x.positiveSize("server.max_body_bytes", s.MaxBodyBytes)
	x.positiveInt("server.max_conns", s.MaxConns)
}

func (x *v) identityHeaders() {
	h := x.c.IdentityHeaders
	seen := map[string]string{}
	for _, e := range []struct{ key, val string }{
		{"user", h.User}, {"email", h.Email}, {"groups", h.Groups},
		{"preferred_username", h.PreferredUsername}, {"assertion", h.Assertion},
	} {
		path := "identity_headers." + e.key
		if e.val == "" {
			if e.key != "assertion" {
				x.add(path, "", "required")
			}
			continue
		}
		if !validToken(e.val) {
			x.add(path, e.val, "invalid header name")
			continue
		}
		// Two identities in one header would let one overwrite the other
		// after stripping; header names compare case-insensitively.
		low := strings.ToLower(e.val)
		if prev, dup := seen[low]; dup {
			x.add(path, e.val, "same header as identity_headers.%s", prev)
		}
		seen[low] = e.key
	}
	if h.Assertion != "" {
		x.positive("identity_headers.assertion_ttl", h.AssertionTTL)
	}
}

func (x *v) oidc() {
	o := x.c.OIDC
	if !o.Enabled() {
		if o.ClientID != "" || !o.ClientSecret.IsZero() || o.ClientSecretFile != "" || o.RedirectURL != "" {
			x.add("oidc.issuer", "", "required when oidc is configured")
		}
		return
	}
	x.url("oidc.issuer", o.Issuer, urlRule{})
	if o.ClientID == "" {
		x.add("oidc.client_id", "", "required")
	}
	if o.ClientSecret.IsZero() && o.ClientSecretFile == "" {
		x.add("oidc.client_secret", "", "required (or client_secret_file)")
	}
	if !slices.Contains(o.Scopes, "openid") {
		x.add("oidc.scopes", strings.Join(o.Scopes, " "), "must contain openid")
	}
	if o.RedirectURL != "" {
		x.url("oidc.redirect_url", o.RedirectURL, urlRule{})
	}
	if o.PostLogoutRedirectURL != "" {
		x.url("oidc.post_logout_redirect_url", o.PostLogoutRedirectURL, urlRule{})
	}
	if o.GroupsClaim == "" {
		x.add("oidc.groups_claim", "", "required")
	}
	for i, a := range o.StepUp.ACRValues {
		if a == "" || strings.ContainsAny(a, " \t") {
			x.add(fmt.Sprintf("oidc.step_up.acr_values[%d]", i), a, "must be a non-empty value without spaces")
		}
	}
	x.nonNegative("oidc.step_up.max_age", o.StepUp.MaxAge)
	x.positive("oidc.discovery_timeout", o.DiscoveryTimeout)
}

func (x *v) session() {
	s := x.c.Session
	if !validToken(s.CookieName) {
		x.add("session.cookie_name", s.CookieName, "invalid cookie name")
	}
	if x.c.OIDC.Enabled() && len(s.Secrets) == 0 && s.SecretsFile == "" {
		x.add("session.secrets", "", "required when oidc is set (or secrets_file)")
	}
	for i, sec := range s.Secrets {
		// Cookie HMAC keys: RFC 8725 §3.5 / RFC 2104 want keys at least
		// as long as the hash output; a short key makes forgery a brute
		// force away.
		if sec.Len() < 32 {
			if s.SecretsFile != "" {
				x.add("session.secrets_file", "", "key %d is %d bytes, must be at least 32", i+1, sec.Len())
			} else {
				x.add(fmt.Sprintf("session.secrets[%d]", i), "", "secret is %d bytes, must be at least 32", sec.Len())
			}
		}
	}
	x.positive("session.lifetime", s.Lifetime)
	x.positive("session.idle_timeout", s.IdleTimeout)
	if s.IdleTimeout > s.Lifetime && s.Lifetime > 0 {
		x.add("session.idle_timeout", s.IdleTimeout.String(), "must not exceed session.lifetime (%s)", s.Lifetime)
	}
	oneOf(x, "session.store", s.Store, StoreMemory, StoreRedis)
	x.positiveSize("session.memory_budget", s.MemoryBudget)
}

func (x *v) redis() {
	r := x.c.Redis
	if x.c.Session.Store == StoreRedis && len(r.Addrs) == 0 {
		x.add("redis.addrs", "", "required when session.store is redis")
	}
	for i, a := range r.Addrs {
		x.addr(fmt.Sprintf("redis.addrs[%d]", i), a, true)
	}
	if r.DB < 0 {
		x.add("redis.db", strconv.Itoa(r.DB), "must not be negative")
	}
	if r.SentinelMaster != "" && len(r.Addrs) == 0 {
		x.add("redis.addrs", "", "required when redis.sentinel_master is set")
	}
	x.positive("redis.l1_ttl", r.L1TTL)
	x.nonNegative("redis.outage_grace", r.OutageGrace)
}

// jwsAlgorithms are the algorithms a token issuer may allow. "none" is not
// among them, ever (RFC 8725 §3.2).
var jwsAlgorithms = []string{
	"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512", "EdDSA", "HS256", "HS384", "HS512",
}

func (x *v) tokens() {
	t := x.c.Tokens
	x.positiveSize("tokens.max_size", t.MaxSize)
	x.nonNegative("tokens.leeway", t.Leeway)
	if t.Leeway.D().Minutes() > 5 {
		x.add("tokens.leeway", t.Leeway.String(), "must be at most 5m (RFC 7519 §4.1.4: a few minutes)")
	}
	x.positive("tokens.refetch_interval", t.RefetchInterval)
	x.positiveInt("tokens.cache_size", t.CacheSize)
	seen := map[string]int{}
	for i, is := range t.Issuers {
		p := fmt.Sprintf("tokens.issuers[%d]", i)
		if is.Issuer == "" {
			x.add(p+".issuer", "", "required")
		} else {
			x.url(p+".issuer", is.Issuer, urlRule{})
			if j, dup := seen[is.Issuer]; dup {
				x.add(p+".issuer", is.Issuer, "duplicate of tokens.issuers[%d]", j)
			}
			seen[is.Issuer] = i
		}
		if is.JWKSURL != "" {
			x.url(p+".jwks_url", is.JWKSURL, urlRule{})
		}
		if len(is.Audiences) == 0 {
			x.add(p+".audiences", "", "at least one audience is required (RFC 8725 §3.9)")
		}
		for j, a := range is.Audiences {
			if a == "" {
				x.add(fmt.Sprintf("%s.audiences[%d]", p, j), "", "must not be empty")
			}
		}
		if len(is.Algorithms) == 0 {
			x.add(p+".algorithms", "", "at least one algorithm is required")
		}
		hasHS := false
		for j, a := range is.Algorithms {
			ap := fmt.Sprintf("%s.algorithms[%d]", p, j)
			switch {
			case strings.EqualFold(a, "none"):
				x.add(ap, a, "unsigned tokens are never accepted (RFC 8725 §3.2)")
			case !slices.Contains(jwsAlgorithms, a):
				// Exact case on purpose: case-insensitive alg checks
				// were bypassed with "noNE" (RFC 8725bis).
				x.add(ap, a, "unsupported algorithm (one of %s; exact case)", strings.Join(jwsAlgorithms, ", "))
			case strings.HasPrefix(a, "HS"):
				hasHS = true
				if is.HMACSecret.IsZero() && is.HMACSecretFile == "" {
					x.add(ap, a, "HMAC algorithms need hmac_secret or hmac_secret_file for this issuer")
				}
			}
		}
		if !is.HMACSecret.IsZero() {
			if is.HMACSecret.Len() < 32 {
				x.add(secretPath(p+".hmac_secret", is.HMACSecretFile), "", "secret is %d bytes, must be at least 32 (RFC 8725 §3.5)", is.HMACSecret.Len())
			}
			if !hasHS {
				x.add(secretPath(p+".hmac_secret", is.HMACSecretFile), "", "set but algorithms has no HS256, HS384 or HS512")
			}
		}
	}
	in := t.Introspection
	if in.URL == "" {
		if in.ClientID != "" || !in.ClientSecret.IsZero() || in.ClientSecretFile != "" {
			x.add("tokens.introspection.url", "", "required when introspection is configured")
		}
	} else {
		x.url("tokens.introspection.url", in.URL, urlRule{})
		if in.ClientID == "" {
			x.add("tokens.introspection.client_id", "", "required (RFC 7662 §2.1: the endpoint requires client authentication)")
		}
		if in.ClientSecret.IsZero() && in.ClientSecretFile == "" {
			x.add("tokens.introspection.client_secret", "", "required (or client_secret_file)")
		}
	}
	x.nonNegative("tokens.introspection.cache_ttl", in.CacheTTL)
	x.positive("tokens.dpop.iat_window", t.DPoP.IATWindow)
}

func validCountry(s string) bool {
	return len(s) == 2 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z'
}

func (x *v) risk() {
	r := x.c.Risk
	if r.ImpossibleTravelKmh <= 0 {
		x.add("risk.impossible_travel_kmh", strconv.FormatFloat(r.ImpossibleTravelKmh, 'g', -1, 64), "must be positive")
	}
	x.positiveInt("risk.history.max_devices", r.History.MaxDevices)
	x.positiveInt("risk.history.max_countries", r.History.MaxCountries)
	x.positiveInt("risk.history.max_asns", r.History.MaxASNs)
	x.positive("risk.history.ttl", r.History.TTL)
	for _, w := range []struct {
		key string
		n   int
	}{
		{"new_device", r.Rules.NewDevice}, {"new_country", r.Rules.NewCountry}, {"new_asn", r.Rules.NewASN},
		{"impossible_travel", r.Rules.ImpossibleTravel}, {"anonymous_ip", r.Rules.AnonymousIP},
		{"fingerprint_changed", r.Rules.FingerprintChanged},
	} {
		if w.n < 0 || w.n > 100 {
			x.add("risk.rules."+w.key, strconv.Itoa(w.n), "must be from 0 to 100")
		}
	}
	deny := map[string]bool{}
	for i, cc := range r.CountryDeny {
		if !validCountry(cc) {
			x.add(fmt.Sprintf("risk.country_deny[%d]", i), cc, "must be an ISO 3166-1 alpha-2 code in upper case, such as US")
		}
		deny[cc] = true
	}
	for i, cc := range r.CountryAllow {
		p := fmt.Sprintf("risk.country_allow[%d]", i)
		if !validCountry(cc) {
			x.add(p, cc, "must be an ISO 3166-1 alpha-2 code in upper case, such as US")
		} else if deny[cc] {
			x.add(p, cc, "also in risk.country_deny")
		}
	}
	for i, asn := range r.ASNDeny {
		if asn == 0 {
			x.add(fmt.Sprintf("risk.asn_deny[%d]", i), "0", "must be a positive AS number")
		}
	}
	x.positiveInt("risk.max_step_up_failures", r.MaxStepUpFailures)
	if !validToken(r.DeviceCookie.Name) {
		x.add("risk.device_cookie.name", r.DeviceCookie.Name, "invalid cookie name")
	} else if r.DeviceCookie.Name == x.c.Session.CookieName {
		x.add("risk.device_cookie.name", r.DeviceCookie.Name, "must differ from session.cookie_name")
	}
	x.positive("risk.device_cookie.lifetime", r.DeviceCookie.Lifetime)
}

func (x *v) audit() {
	a := x.c.Audit.Alerts
	if a.URL == "" {
		if !a.Secret.IsZero() || a.SecretFile != "" {
			x.add("audit.alerts.url", "", "required when audit.alerts.secret is set")
		}
		return
	}
	x.url("audit.alerts.url", a.URL, urlRule{})
	if a.Secret.IsZero() && a.SecretFile == "" {
		x.add("audit.alerts.secret", "", "required when audit.alerts.url is set (or secret_file)")
	} else if !a.Secret.IsZero() && a.Secret.Len() < 32 {
		x.add(secretPath("audit.alerts.secret", a.SecretFile), "", "secret is %d bytes, must be at least 32", a.Secret.Len())
	}
	for i, e := range a.On {
		if !slices.Contains(AlertEvents, e) {
			x.add(fmt.Sprintf("audit.alerts.on[%d]", i), e, "must be a decision (allow, login, step_up, step_up_failed, deny) or a reason code listed in deploy/CONFIG.md")
		}
	}
}

// reservedPrefix is the proxy's own path space (callback, logout, jwks).
const reservedPrefix = "/.edgeauth"

// routePath checks a route path or public prefix.
func (x *v) routePath(path, p string) {
	switch {
	case p == "":
		x.add(path, "", "required")
	case p[0] != '/':
		x.add(path, p, "must start with /")
	case strings.ContainsAny(p, "?#"):
		x.add(path, p, "must not contain ? or #")
	case strings.ContainsFunc(p, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		x.add(path, p, "must not contain spaces or control characters")
	case slices.Contains(strings.Split(p, "/"), "..") || slices.Contains(strings.Split(p, "/"), "."):
		// Dot segments are removed by normalisation before matching, so a
		// prefix containing them can never match what it says.
		x.add(path, p, "must not contain . or .. segments")
	case p == reservedPrefix || strings.HasPrefix(p, reservedPrefix+"/"):
		x.add(path, p, "is reserved for the proxy's own endpoints")
	}
}

// routeHost checks an exact host, *.suffix, or ""/"*" (any host).
func (x *v) routeHost(path, h string) {
	if h == "" || h == "*" {
		return
	}
	name := h
	if rest, ok := strings.CutPrefix(h, "*."); ok {
		name = rest
		if !strings.Contains(strings.TrimSuffix(name, "."), ".") {
			// "*.com" would match every .com site behind this proxy.
			x.add(path, h, "wildcard must have at least two labels after *.")
			return
		}
	}
	if strings.Contains(name, ":") {
		if _, err := netip.ParseAddr(strings.Trim(name, "[]")); err == nil && !strings.HasPrefix(h, "*.") {
			return
		}
		x.add(path, h, "must be a host name without port")
		return
	}
	if _, err := netip.ParseAddr(name); err == nil && name == h {
		return
	}
	if !validHostname(name) {
		x.add(path, h, "must be a host name, *.suffix, or * (any host)")
	}
}

func (x *v) routes() {
	c := x.c
	if len(c.Routes) == 0 {
		x.add("routes", "", "at least one route is required")
	}
	names := map[string]int{}
	hostPaths := map[string]int{}
	issuers := map[string]bool{}
	for _, is := range c.Tokens.Issuers {
		issuers[is.Issuer] = true
	}
	authAvailable := c.OIDC.Enabled() || len(c.Tokens.Issuers) > 0 || c.Tokens.Introspection.URL != ""
	for i, r := range c.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		name := r.Name
		if name == "" {
			name = "route-" + strconv.Itoa(i)
		}
		if !validRouteName(name) {
			x.add(p+".name", name, "must be letters, digits, '.', '_' or '-'")
		}
		if j, dup := names[name]; dup {
			x.add(p+".name", name, "duplicate of routes[%d].name", j)
		}
		names[name] = i
		x.routeHost(p+".host", r.Host)
		x.routePath(p+".path", r.Path)
		host := strings.ToLower(r.Host)
		if host == "" {
			host = "*"
		}
		key := host + " " + r.Path
		if j, dup := hostPaths[key]; dup {
			x.add(p+".path", r.Path, "host %q and path already used by routes[%d]", host, j)
		}
		hostPaths[key] = i
		switch {
		case r.Upstream == "" && len(r.Upstreams) == 0:
			x.add(p+".upstream", "", "required (or upstreams)")
		case r.Upstream != "" && len(r.Upstreams) > 0:
			x.add(p+".upstreams", "", "set only one of upstream and upstreams")
		case r.Upstream != "":
			x.url(p+".upstream", r.Upstream, urlRule{anyHTTP: true, noPath: true})
		}
		for j, u := range r.Upstreams {
			x.url(fmt.Sprintf("%s.upstreams[%d]", p, j), u, urlRule{anyHTTP: true, noPath: true})
		}
		switch r.HostHeader {
		case HostHeaderPreserve, HostHeaderUpstream:
		case "":
			x.add(p+".host_header", "", "must be preserve, upstream or a host name")
		default:
			hh := r.HostHeader
			if h, _, err := net.SplitHostPort(hh); err == nil {
				hh = h
			}
			if _, err := netip.ParseAddr(hh); err != nil && !validHostname(hh) {
				x.add(p+".host_header", r.HostHeader, "must be preserve, upstream or a host name")
			}
		}
		x.positive(p+".timeouts.connect", r.Timeouts.Connect)
		x.positive(p+".timeouts.read", r.Timeouts.Read)
		x.positive(p+".timeouts.write", r.Timeouts.Write)
		x.positive(p+".timeouts.idle", r.Timeouts.Idle)
		x.positiveInt(p+".max_conns", r.MaxConns)
		if r.MaxBodyBytes < 0 {
			x.add(p+".max_body_bytes", r.MaxBodyBytes.String(), "must not be negative")
		}
		oneOf(x, p+".auth", r.Auth, AuthRequired, AuthNone)
		if r.Auth == AuthRequired && !authAvailable {
			x.add(p+".auth", string(r.Auth), "needs oidc or tokens.issuers configured")
		}
		for j, pub := range r.Public {
			x.routePath(fmt.Sprintf("%s.public[%d]", p, j), pub)
		}
		x.allow(p+".allow", r.Allow)
		for j, a := range r.ACR {
			if a == "" {
				x.add(fmt.Sprintf("%s.acr[%d]", p, j), "", "must not be empty")
			}
		}
		x.nonNegative(p+".max_auth_age", r.MaxAuthAge)
		if r.StepUpAt < 0 || r.StepUpAt > 100 {
			x.add(p+".step_up_at", strconv.Itoa(r.StepUpAt), "must be from 0 to 100")
		}
		if r.DenyAt < 0 || r.DenyAt > 100 {
			x.add(p+".deny_at", strconv.Itoa(r.DenyAt), "must be from 0 to 100")
		}
		if r.StepUpAt > 0 && r.DenyAt > 0 && r.StepUpAt > r.DenyAt {
			x.add(p+".step_up_at", strconv.Itoa(r.StepUpAt), "must not exceed deny_at (%d)", r.DenyAt)
		}
		oneOf(x, p+".risk_mode", r.RiskMode, RiskEnforce, RiskShadow, RiskOff)
		for j, s := range r.Scopes {
			if s == "" || strings.ContainsAny(s, " \t") {
				x.add(fmt.Sprintf("%s.scopes[%d]", p, j), s, "must be a non-empty scope without spaces")
			}
		}
		for j, ti := range r.TokenIssuers {
			if !issuers[ti] {
				x.add(fmt.Sprintf("%s.token_issuers[%d]", p, j), ti, "not in tokens.issuers")
			}
		}
	}
	if c.DefaultRoute != "" {
		if _, ok := names[c.DefaultRoute]; !ok {
			x.add("default_route", c.DefaultRoute, "no route has this name")
		}
	}
}

func validRouteName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '.' || ch == '_' || ch == '-') {
			return false
		}
	}
	return true
}

func (x *v) allow(p string, a Allow) {
	for i, e := range a.Emails {
		if at := strings.IndexByte(e, '@'); at <= 0 || at == len(e)-1 {
			x.add(fmt.Sprintf("%s.emails[%d]", p, i), e, "must be an email address")
		}
	}
	for i, d := range a.EmailDomains {
		if strings.Contains(d, "@") || !validHostname(d) {
			x.add(fmt.Sprintf("%s.email_domains[%d]", p, i), d, "must be a domain such as example.com")
		}
	}
	for i, g := range a.Groups {
		if g == "" {
			x.add(fmt.Sprintf("%s.groups[%d]", p, i), "", "must not be empty")
		}
	}
	keys := make([]string, 0, len(a.Claims))
	for k := range a.Claims {
		keys = append(keys, k)
	}
	slices.Sort(keys) // map order would make the error order random
	for _, k := range keys {
		vals := a.Claims[k]
		if k == "" {
			x.add(p+".claims", "", "claim names must not be empty")
		}
		if len(vals) == 0 {
			x.add(p+".claims."+k, "", "at least one value is required")
		}
	}
}
