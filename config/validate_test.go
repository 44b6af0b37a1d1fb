package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// validConfig returns a Config built in code that passes Validate: SSO, a
// token issuer, and one route.
func validConfig() *Config {
	c := Default()
	c.OIDC.Issuer = "https://login.example.com"
	c.OIDC.ClientID = "edgeauth"
	c.OIDC.ClientSecret = NewSecret("client-secret")
	c.Session.Secrets = []Secret{NewSecret(strings.Repeat("k", 32))}
	c.Tokens.Issuers = []TokenIssuer{TokenIssuerDefaults()}
	c.Tokens.Issuers[0].Issuer = "https://login.example.com"
	c.Tokens.Issuers[0].Audiences = []string{"api"}
	r := RouteDefaults()
	r.Name = "app"
	r.Host = "app.example.com"
	r.Upstream = "http://10.0.0.5:8080"
	c.Routes = []Route{r}
	return c
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   []string // problems in order; nil = valid
	}{
		{name: "valid", mutate: func(*Config) {}},
		{
			name: "loopback http issuer is allowed for the demo",
			mutate: func(c *Config) {
				c.OIDC.Issuer = "http://127.0.0.1:5556/dex"
				c.Tokens.Issuers[0].Issuer = "http://localhost:5556"
			},
		},
		{
			name:   "http issuer on a network host",
			mutate: func(c *Config) { c.OIDC.Issuer = "http://login.example.com" },
			want:   []string{`oidc.issuer: "http://login.example.com": must use https (http is allowed only for loopback hosts)`},
		},
		{
			name: "listen addresses",
			mutate: func(c *Config) {
				c.Listen = "8080"
				c.Admin.Listen = "127.0.0.1:99999"
			},
			want: []string{
				`listen: "8080": must be host:port`,
				`admin.listen: "127.0.0.1:99999": port must be a number from 0 to 65535`,
			},
		},
		{
			name:   "admin on the main listener",
			mutate: func(c *Config) { c.Admin.Listen = c.Listen },
			want:   []string{`admin.listen: "127.0.0.1:8080": must differ from listen`},
		},
		{
			name:   "tls cert without key",
			mutate: func(c *Config) { c.TLS.CertFile = "/etc/tls.crt" },
			want:   []string{`tls.key_file: required when tls.cert_file is set`},
		},
		{
			name:   "tls key without cert",
			mutate: func(c *Config) { c.TLS.KeyFile = "/etc/tls.key" },
			want:   []string{`tls.cert_file: required when tls.key_file is set`},
		},
		{
			name: "trusted proxies",
			mutate: func(c *Config) {
				c.TrustedProxies = []string{"10.0.0.0/8", "192.168.1.1", "::1/128", "10.1.2.3/16", "10.0.0.0/33"}
			},
			want: []string{
				`trusted_proxies[3]: "10.1.2.3/16": host bits set (did you mean 10.1.0.0/16?)`,
				`trusted_proxies[4]: "10.0.0.0/33": must be a CIDR such as 10.0.0.0/8 or an IP address`,
			},
		},
		{
			name: "enums",
			mutate: func(c *Config) {
				c.Log.Format = "xml"
				c.ClientIPHeader = "x-real-ip"
				c.Session.Store = "etcd"
				c.Routes[0].Auth = "maybe"
				c.Routes[0].RiskMode = "loud"
			},
			want: []string{
				`log.format: "xml": must be one of json, text`,
				`client_ip_header: "x-real-ip": must be one of x-forwarded-for, forwarded, none`,
				`session.store: "etcd": must be one of memory, redis`,
				`routes[0].auth: "maybe": must be one of required, none`,
				`routes[0].risk_mode: "loud": must be one of enforce, shadow, off`,
			},
		},
		{
			name: "non-positive timeouts and sizes",
			mutate: func(c *Config) {
				c.Server.ReadTimeout = 0
				c.Server.MaxHeaderBytes = 0
				c.Server.MaxConns = -1
				c.Routes[0].Timeouts.Connect = Duration(-1)
				c.Tokens.Leeway = Duration(10 * 60e9)
			},
			want: []string{
				`server.read_timeout: "0s": must be positive`,
				`server.max_header_bytes: "0": must be positive`,
				`server.max_conns: "-1": must be positive`,
				`tokens.leeway: "10m0s": must be at most 5m (RFC 7519 §4.1.4: a few minutes)`,
				`routes[0].timeouts.connect: "-1ns": must be positive`,
			},
		},
		{
			name: "route hosts",
			mutate: func(c *Config) {
				hosts := []string{"*.example.com", "", "*", "10.0.0.1", "bad_host", "*.com", "app.example.com:8443", "*.*.example.com"}
				for i, h := range hosts {
					r := c.Routes[0]
					r.Name = "r" + string(rune('a'+i))
					r.Host = h
					r.Path = "/" + r.Name + "/" // "" and "*" are the same host
					c.Routes = append(c.Routes, r)
				}
				c.Routes = c.Routes[1:]
			},
			want: []string{
				`routes[4].host: "bad_host": must be a host name, *.suffix, or * (any host)`,
				`routes[5].host: "*.com": wildcard must have at least two labels after *.`,
				`routes[6].host: "app.example.com:8443": must be a host name without port`,
				`routes[7].host: "*.*.example.com": must be a host name, *.suffix, or * (any host)`,
			},
		},
		{
			name: "route paths",
			mutate: func(c *Config) {
				c.Routes[0].Path = "/.edgeauth/callback"
				c.Routes[0].Public = []string{"/static/", "static", "/a/../b", "/x?y", "/a b", ""}
			},
			want: []string{
				`routes[0].path: "/.edgeauth/callback": is reserved for the proxy's own endpoints`,
				`routes[0].public[1]: "static": must start with /`,
				`routes[0].public[2]: "/a/../b": must not contain . or .. segments`,
				`routes[0].public[3]: "/x?y": must not contain ? or #`,
				`routes[0].public[4]: "/a b": must not contain spaces or control characters`,
				`routes[0].public[5]: required`,
			},
		},
		{
			name: "upstreams",
			mutate: func(c *Config) {
				c.Routes[0].Upstream = ""
				c.Routes[0].Upstreams = []string{"https://10.0.0.5", "http://user:pw@10.0.0.6", "http:///x", "http://10.0.0.7/#f", "unix:///sock", "http://10.0.0.8:0"}
			},
			want: []string{
				`routes[0].upstreams[1]: "http://user:pw@10.0.0.6": must not contain credentials`,
				`routes[0].upstreams[2]: "http:///x": host required`,
				`routes[0].upstreams[3]: "http://10.0.0.7/#f": must not have a query or fragment`,
				`routes[0].upstreams[4]: "unix:///sock": unsupported scheme`,
				`routes[0].upstreams[5]: "http://10.0.0.8:0": port must be a number from 1 to 65535`,
			},
		},
		{
			name: "upstream and upstreams both, and neither",
			mutate: func(c *Config) {
				c.Routes[0].Upstreams = []string{"http://10.0.0.6"}
				r := RouteDefaults()
				r.Path = "/b/"
				c.Routes = append(c.Routes, r)
			},
			want: []string{
				`routes[0].upstreams: set only one of upstream and upstreams`,
				`routes[1].upstream: required (or upstreams)`,
			},
		},
		{
			name: "duplicate names and host+path pairs, default route",
			mutate: func(c *Config) {
				r := c.Routes[0]
				r.Host = "APP.example.com"
				c.Routes = append(c.Routes, r)
				c.DefaultRoute = "missing"
			},
			want: []string{
				`routes[1].name: "app": duplicate of routes[0].name`,
				`routes[1].path: "/": host "app.example.com" and path already used by routes[0]`,
				`default_route: "missing": no route has this name`,
			},
		},
		{
			name: "empty route name is route-N",
			mutate: func(c *Config) {
				c.Routes[0].Name = ""
				c.DefaultRoute = "route-0"
			},
		},
		{
			name: "auth required without an identity provider",
			mutate: func(c *Config) {
				c.OIDC = Default().OIDC
				c.Session.Secrets = nil
				c.Tokens.Issuers = nil
			},
			want: []string{`routes[0].auth: "required": needs oidc or tokens.issuers configured`},
		},
		{
			name: "oidc needs client and secrets",
			mutate: func(c *Config) {
				c.OIDC.ClientID = ""
				c.OIDC.ClientSecret = Secret{}
				c.OIDC.Scopes = []string{"email"}
				c.Session.Secrets = nil
			},
			want: []string{
				`oidc.client_id: required`,
				`oidc.client_secret: required (or client_secret_file)`,
				`oidc.scopes: "email": must contain openid`,
				`session.secrets: required when oidc is set (or secrets_file)`,
			},
		},
		{
			name: "oidc settings without issuer",
			mutate: func(c *Config) {
				c.OIDC.Issuer = ""
			},
			want: []string{`oidc.issuer: required when oidc is configured`},
		},
		{
			name:   "short session secret",
			mutate: func(c *Config) { c.Session.Secrets = append(c.Session.Secrets, NewSecret("too-short")) },
			want:   []string{`session.secrets[1]: secret is 9 bytes, must be at least 32`},
		},
		{
			name: "risk weights, thresholds and countries",
			mutate: func(c *Config) {
				c.Risk.Rules.NewCountry = 101
				c.Risk.Rules.NewASN = -1
				c.Risk.CountryDeny = []string{"US", "usa", "de"}
				c.Risk.CountryAllow = []string{"US", "FR"}
				c.Routes[0].StepUpAt = 80
				c.Routes[0].DenyAt = 60
			},
			want: []string{
				`risk.rules.new_country: "101": must be from 0 to 100`,
				`risk.rules.new_asn: "-1": must be from 0 to 100`,
				`risk.country_deny[1]: "usa": must be an ISO 3166-1 alpha-2 code in upper case, such as US`,
				`risk.country_deny[2]: "de": must be an ISO 3166-1 alpha-2 code in upper case, such as US`,
				`risk.country_allow[0]: "US": also in risk.country_deny`,
				`routes[0].step_up_at: "80": must not exceed deny_at (60)`,
			},
		},
		{
			name: "token issuers",
			mutate: func(c *Config) {
				is := TokenIssuerDefaults()
				is.Issuer = "https://login.example.com"
				is.Algorithms = []string{"none", "rs256", "HS256"}
				c.Tokens.Issuers = append(c.Tokens.Issuers, is)
				c.Routes[0].TokenIssuers = []string{"https://other.example.com"}
			},
			want: []string{
				`tokens.issuers[1].issuer: "https://login.example.com": duplicate of tokens.issuers[0]`,
				`tokens.issuers[1].audiences: at least one audience is required (RFC 8725 §3.9)`,
				`tokens.issuers[1].algorithms[0]: "none": unsigned tokens are never accepted (RFC 8725 §3.2)`,
				`tokens.issuers[1].algorithms[1]: "rs256": unsupported algorithm (one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA, HS256, HS384, HS512; exact case)`,
				`tokens.issuers[1].algorithms[2]: "HS256": HMAC algorithms need hmac_secret or hmac_secret_file for this issuer`,
				`routes[0].token_issuers[0]: "https://other.example.com": not in tokens.issuers`,
			},
		},
		{
			name: "short hmac secret",
			mutate: func(c *Config) {
				c.Tokens.Issuers[0].Algorithms = []string{"HS256"}
				c.Tokens.Issuers[0].HMACSecret = NewSecret("short")
			},
			want: []string{`tokens.issuers[0].hmac_secret: secret is 5 bytes, must be at least 32 (RFC 8725 §3.5)`},
		},
		{
			name: "introspection and alerts need secrets",
			mutate: func(c *Config) {
				c.Tokens.Introspection.URL = "https://login.example.com/introspect"
				c.Audit.Alerts.URL = "https://alerts.example.com/hook"
				c.Audit.Alerts.On = []string{"deny", "everything"}
			},
			want: []string{
				`tokens.introspection.client_id: required (RFC 7662 §2.1: the endpoint requires client authentication)`,
				`tokens.introspection.client_secret: required (or client_secret_file)`,
				`audit.alerts.secret: required when audit.alerts.url is set (or secret_file)`,
				`audit.alerts.on[1]: "everything": must be a decision (allow, login, step_up, step_up_failed, deny) or a reason code listed in deploy/CONFIG.md`,
			},
		},
		{
			name:   "redis store needs addresses",
			mutate: func(c *Config) { c.Session.Store = StoreRedis; c.Redis.Addrs = nil },
			want:   []string{`redis.addrs: required when session.store is redis`},
		},
		{
			name: "identity header names",
			mutate: func(c *Config) {
				c.IdentityHeaders.Email = "x-auth-request-user"
				c.IdentityHeaders.Groups = "X Groups"
				c.IdentityHeaders.Assertion = ""
			},
			want: []string{
				`identity_headers.email: "x-auth-request-user": same header as identity_headers.user`,
				`identity_headers.groups: "X Groups": invalid header name`,
			},
		},
		{
			name:   "no routes",
			mutate: func(c *Config) { c.Routes = nil },
			want:   []string{`routes: at least one route is required`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := validConfig()
			tt.mutate(c)
			var got []string
			for _, p := range Problems(c.Validate()) {
				got = append(got, p.Error())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}
