package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/edgeauth/edgeauth/config"
	"github.com/edgeauth/edgeauth/middleware"
	"github.com/edgeauth/edgeauth/middleware/audit"
	"github.com/edgeauth/edgeauth/middleware/clientip"
	"github.com/edgeauth/edgeauth/middleware/identity"
	"github.com/edgeauth/edgeauth/middleware/policy"
	"github.com/edgeauth/edgeauth/middleware/reqstate"
	"github.com/edgeauth/edgeauth/middleware/risk"
	"github.com/edgeauth/edgeauth/middleware/risk/device"
	"github.com/edgeauth/edgeauth/middleware/risk/geoip"
	"github.com/edgeauth/edgeauth/middleware/session"
	"github.com/edgeauth/edgeauth/middleware/session/admin"
	"github.com/edgeauth/edgeauth/middleware/session/redisstore"
	"github.com/edgeauth/edgeauth/middleware/sso"
	"github.com/edgeauth/edgeauth/middleware/token"
	"github.com/edgeauth/edgeauth/proxy"
	"github.com/edgeauth/edgeauth/proxy/errpage"
)

// services holds what lives as long as the process: the session store,
// the relying party, the token verifier, the risk engine, the assertion
// signer and the audit stream. Routes are rebuilt from it on every reload;
// a reload that changes these sections needs a restart (logged).
type services struct {
	logger *slog.Logger

	secure     bool // cookies get Secure and the __Host- prefix
	sessKeys   [][]byte
	store      session.Store
	memStore   *session.MemoryStore // nil with Redis
	snapshot   string
	codec      *session.Codec
	cookie     *session.Cookie
	rp         *sso.RP
	verifier   *token.Verifier
	riskSvc    *risk.Service
	riskMW     *risk.MiddlewareOptions
	locator    *geoip.Reader
	loginRisk  int // score at which a fresh login must step up before it is trusted
	stepUpACR  []string
	maxFails   int
	signer     *identity.Signer
	recorder   *audit.Recorder
	adminToken []byte
	issuer     string // the OIDC issuer, default for admin calls
	srv        atomic.Pointer[proxy.Server]
	closers    []func()
}

func newServices(ctx context.Context, cfg *config.Config, logger *slog.Logger, reg prometheus.Registerer) (_ *services, err error) {
	s := &services{logger: logger, snapshot: cfg.Session.SnapshotFile, maxFails: cfg.Risk.MaxStepUpFailures, issuer: cfg.OIDC.Issuer}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	s.secure = cfg.TLS.Enabled() || strings.HasPrefix(cfg.ExternalURL, "https://")

	// Audit first: every other part may emit events.
	var auditOut io.Writer = os.Stdout
	if cfg.Audit.File != "" {
		f, err := os.OpenFile(cfg.Audit.File, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, fmt.Errorf("audit file: %w", err)
		}
		s.closers = append(s.closers, func() { f.Close() })
		auditOut = f
	}
	s.recorder, err = audit.New(audit.Options{
		Writer:     auditOut,
		Registerer: reg,
		Logger:     logger,
		Alerts: audit.AlertOptions{
			URL:    cfg.Audit.Alerts.URL,
			Secret: []byte(cfg.Audit.Alerts.Secret.Reveal()),
			On:     cfg.Audit.Alerts.On,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	s.closers = append(s.closers, func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.recorder.Close(cctx)
	})

	for _, k := range cfg.Session.Secrets {
		s.sessKeys = append(s.sessKeys, []byte(k.Reveal()))
	}
	if len(s.sessKeys) == 0 {
		// Only reachable when nothing needs sessions; keys are still used
		// for the device cookie, so make a process-local one.
		k := make([]byte, 32)
		if _, err := rand.Read(k); err != nil {
			return nil, err
		}
		s.sessKeys = [][]byte{k}
	}
	if err := s.buildStore(ctx, cfg, logger); err != nil {
		return nil, err
	}
	if s.codec, err = session.NewCodec(s.sessKeys); err != nil {
		return nil, err
	}
	if s.cookie, err = session.NewCookie(session.CookieOptions{Name: cfg.Session.CookieName, Secure: s.secure}); err != nil {
		return nil, err
	}

	if err := s.buildRisk(cfg, logger); err != nil {
		return nil, err
	}
	if cfg.OIDC.Enabled() {
		if err := s.buildRP(ctx, cfg, logger); err != nil {
			return nil, err
		}
	}
	if len(cfg.Tokens.Issuers) > 0 || cfg.Tokens.Introspection.URL != "" {
		if err := s.buildVerifier(ctx, cfg, logger); err != nil {
			return nil, err
		}
	}
	if cfg.IdentityHeaders.Assertion != "" {
		iss := cfg.ExternalURL
		if iss == "" {
			iss = "edgeauth"
		}
		s.signer, err = identity.NewSigner(identity.SignerOptions{
			Issuer: iss, KeyFile: cfg.IdentityHeaders.AssertionKeyFile, TTL: cfg.IdentityHeaders.AssertionTTL.D(),
		})
		if err != nil {
			return nil, fmt.Errorf("assertion signer: %w", err)
		}
	}
	s.adminToken = []byte(strings.TrimSpace(cfg.Admin.Token.Reveal()))
	return s, nil
}

func (s *services) buildStore(ctx context.Context, cfg *config.Config, logger *slog.Logger) error {
	if cfg.Session.Store == config.StoreRedis {
		var tlsConf *tls.Config
		if cfg.Redis.TLS.Enabled {
			tlsConf = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.Redis.TLS.InsecureSkipVerify}
			if cfg.Redis.TLS.CAFile != "" {
				pem, err := os.ReadFile(cfg.Redis.TLS.CAFile)
				if err != nil {
					return fmt.Errorf("redis tls ca_file: %w", err)
				}
				pool := x509.NewCertPool()
				if !pool.AppendCertsFromPEM(pem) {
					return fmt.Errorf("redis tls ca_file %s: no certificates", cfg.Redis.TLS.CAFile)
				}
				tlsConf.RootCAs = pool
			}
		}
		rs, err := redisstore.New(ctx, redisstore.Options{
			Addrs: cfg.Redis.Addrs, MasterName: cfg.Redis.SentinelMaster,
			Username: cfg.Redis.Username, Password: cfg.Redis.Password.Reveal(), DB: cfg.Redis.DB, TLS: tlsConf,
			L1TTL: cfg.Redis.L1TTL.D(), OutageGrace: cfg.Redis.OutageGrace.D(),
			Lifetime: cfg.Session.Lifetime.D(), IdleTimeout: cfg.Session.IdleTimeout.D(),
			Logger: logger,
			OnDegraded: func(kind string) {
				logger.LogAttrs(context.Background(), slog.LevelWarn, "degraded decision: redis unavailable", slog.String("kind", kind))
			},
		})
		if err != nil {
			return fmt.Errorf("redis session store: %w", err)
		}
		rs.OnRevoke(func(issuer, subject, sessionID string) {
			if sessionID == "" && s.verifier != nil {
				s.verifier.RevokeSubject(issuer, subject)
			}
		})
		s.store = rs
		s.closers = append(s.closers, func() { rs.Close() })
		return nil
	}
	ms, err := session.NewMemoryStore(session.MemoryOptions{
		Budget: int64(cfg.Session.MemoryBudget), IdleTimeout: cfg.Session.IdleTimeout.D(),
		Lifetime: cfg.Session.Lifetime.D(), Logger: logger,
	})
	if err != nil {
		return fmt.Errorf("memory session store: %w", err)
	}
	s.store, s.memStore = ms, ms
	s.closers = append(s.closers, func() { ms.Close() })
	if s.snapshot != "" {
		n, err := ms.Restore(s.snapshot, s.sessKeys)
		switch {
		case err == nil:
			logger.Info("sessions restored from snapshot", "sessions", n)
		case errors.Is(err, session.ErrSnapshotMissing):
			logger.Info("no session snapshot to restore", "file", s.snapshot)
		default:
			// A stale or tampered snapshot is ignored: users sign in again.
			logger.Warn("session snapshot ignored", "file", s.snapshot, "err", err)
		}
	}
	return nil
}

func (s *services) buildRisk(cfg *config.Config, logger *slog.Logger) error {
	if cfg.GeoIP.City == "" && cfg.GeoIP.ASN == "" && cfg.GeoIP.AnonymousIP == "" && !anyRisk(cfg) {
		return nil
	}
	var loc geoip.Locator // nil: every location unknown (device and history rules still work)
	if cfg.GeoIP.City != "" || cfg.GeoIP.ASN != "" || cfg.GeoIP.AnonymousIP != "" {
		r, err := geoip.New(geoip.Options{CityPath: cfg.GeoIP.City, ASNPath: cfg.GeoIP.ASN, AnonymousIPPath: cfg.GeoIP.AnonymousIP, Logger: logger})
		if err != nil {
			return err // already "geoip: <kind> database <file>: ..."
		}
		s.locator, loc = r, r
		s.closers = append(s.closers, func() { r.Close() })
	}
	eng, err := newRiskEngine(cfg)
	if err != nil {
		return err
	}
	svc, err := risk.NewService(risk.ServiceOptions{Engine: eng, Locator: loc, Store: s.store, NotFound: session.ErrNotFound, Logger: logger})
	if err != nil {
		return fmt.Errorf("risk: %w", err)
	}
	s.riskSvc = svc
	s.closers = append(s.closers, svc.Close)
	codec, err := device.NewCookieCodec(s.sessKeys)
	if err != nil {
		return fmt.Errorf("device cookie: %w", err)
	}
	s.riskMW = &risk.MiddlewareOptions{
		Service: svc, Cookie: codec, CookieName: cfg.Risk.DeviceCookie.Name,
		CookieLifetime: cfg.Risk.DeviceCookie.Lifetime.D(), Insecure: !s.secure, Logger: logger,
		ShadowDecision: policy.ShadowDecision,
	}
	s.loginRisk = loginRiskThreshold(cfg)
	return nil
}

// anyRisk reports whether a route scores risk even without GeoIP (device
// and history signals still work).
func anyRisk(cfg *config.Config) bool {
	for _, r := range cfg.Routes {
		if r.Auth == config.AuthRequired && r.RiskMode != config.RiskOff {
			return true
		}
	}
	return false
}

func (s *services) buildRP(ctx context.Context, cfg *config.Config, logger *slog.Logger) error {
	var hosts []string
	for _, r := range cfg.Routes {
		if r.Host != "" && r.Host != "*" && !strings.HasPrefix(r.Host, "*.") {
			hosts = append(hosts, r.Host)
		}
	}
	hosts = append(hosts, listenHosts(cfg.Listen)...)
	external := cfg.ExternalURL
	if cfg.OIDC.RedirectURL != "" {
		if u, err := url.Parse(cfg.OIDC.RedirectURL); err == nil {
			external = u.Scheme + "://" + u.Host
		}
	}
	redirectPath := ""
	if cfg.OIDC.RedirectURL != "" {
		if u, err := url.Parse(cfg.OIDC.RedirectURL); err == nil {
			redirectPath = u.Path
		}
	}
	s.stepUpACR = cfg.OIDC.StepUp.ACRValues
	rp, err := sso.New(ctx, sso.Options{
		Issuer: cfg.OIDC.Issuer, ClientID: cfg.OIDC.ClientID, ClientSecret: cfg.OIDC.ClientSecret.Reveal(),
		Scopes: cfg.OIDC.Scopes, RedirectPath: redirectPath, ExternalURL: external, AllowedHosts: hosts,
		GroupsClaim: cfg.OIDC.GroupsClaim, StepUpACR: cfg.OIDC.StepUp.ACRValues, StepUpMaxAge: cfg.OIDC.StepUp.MaxAge.D(),
		PostLogoutRedirectURL: cfg.OIDC.PostLogoutRedirectURL, Keys: s.sessKeys, SecureCookies: s.secure,
		CookieName: cfg.Session.CookieName, Store: s.store,
		SessionLifetime: cfg.Session.Lifetime.D(), IdleTimeout: cfg.Session.IdleTimeout.D(),
		Logger: logger, OnLogin: s.onLogin,
	})
	if err != nil {
		return fmt.Errorf("oidc: %w", err)
	}
	s.rp = rp
	s.closers = append(s.closers, func() { rp.Close() })
	return nil
}

// listenHosts turns the listen address into the host[:port] forms a
// browser may use for it, so a single-host setup needs no route hosts.
func listenHosts(listen string) []string {
	ap, err := netip.ParseAddrPort(listen)
	if err != nil {
		return nil
	}
	port := fmt.Sprint(ap.Port())
	out := []string{ap.Addr().String() + ":" + port}
	if ap.Addr().IsLoopback() {
		out = append(out, "localhost:"+port)
	}
	return out
}

func (s *services) buildVerifier(ctx context.Context, cfg *config.Config, logger *slog.Logger) error {
	opts := token.Options{
		MaxSize: int(cfg.Tokens.MaxSize), Leeway: cfg.Tokens.Leeway.D(), RefetchInterval: cfg.Tokens.RefetchInterval.D(),
		CacheSize: int64(cfg.Tokens.CacheSize), GroupsClaim: cfg.OIDC.GroupsClaim,
		DPoP:       token.DPoPOptions{IATWindow: cfg.Tokens.DPoP.IATWindow.D()},
		Revocation: s.store, Logger: logger,
	}
	for _, is := range cfg.Tokens.Issuers {
		opts.Issuers = append(opts.Issuers, token.IssuerOptions{
			Issuer: is.Issuer, JWKSURL: is.JWKSURL, Audiences: is.Audiences, Algorithms: is.Algorithms,
			RequireTyp: is.RequireTyp, HMACSecret: []byte(is.HMACSecret.Reveal()),
		})
	}
	if in := cfg.Tokens.Introspection; in.URL != "" {
		iss := cfg.OIDC.Issuer
		if len(cfg.Tokens.Issuers) > 0 {
			iss = cfg.Tokens.Issuers[0].Issuer
		}
		opts.Introspection = &token.IntrospectionOptions{
			URL: in.URL, ClientID: in.ClientID, ClientSecret: in.ClientSecret.Reveal(), Issuer: iss, CacheTTL: in.CacheTTL.D(),
		}
	}
	v, err := token.NewVerifier(ctx, opts)
	if err != nil {
		return fmt.Errorf("tokens: %w", err)
	}
	s.verifier = v
	s.closers = append(s.closers, v.Close)
	return nil
}

// Close releases everything in reverse order of construction.
func (s *services) Close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}

// beforeExit runs after the listeners drained: the memory store is written
// to its snapshot so a restart does not sign everyone out.
func (s *services) beforeExit(logger *slog.Logger) {
	if s.memStore == nil || s.snapshot == "" {
		return
	}
	if err := s.memStore.Snapshot(s.snapshot, s.sessKeys[0]); err != nil {
		logger.Error("session snapshot failed; sessions will not survive the restart", "file", s.snapshot, "err", err)
		return
	}
	logger.Info("sessions written to snapshot", "file", s.snapshot)
}

// onClientHello computes the connection's JA4 fingerprint once, at the
// handshake; the proxy keeps it with the connection and tlsFingerprint
// copies it into each request's state for the risk step.
func (s *services) onClientHello(hello *tls.ClientHelloInfo) string {
	if s.riskMW == nil {
		return ""
	}
	return device.JA4(hello)
}

// tlsFingerprint puts the connection's JA4 into the request state. The
// server is only known after the routes were built, hence the pointer.
func (s *services) tlsFingerprint(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		if srv := s.srv.Load(); srv != nil {
			if tag := srv.ConnTag(ctx); tag != "" {
				reqstate.Get(ctx).TLSFingerprint = tag
			}
		}
		next(ctx)
	}
}

func (s *services) adminHandlers() map[string]fasthttp.RequestHandler {
	if len(s.adminToken) == 0 {
		return nil
	}
	var forget func(ctx context.Context, iss, sub string) error
	if s.riskSvc != nil {
		forget = s.riskSvc.ForgetDevices
	}
	h, err := admin.New(admin.Options{
		Store: s.store, Token: s.adminToken, Issuer: s.issuer, ForgetDevices: forget, Logger: s.logger,
		Audit: func(action, sub, detail string, ok bool) {
			decision := "allow"
			if !ok {
				decision = "deny"
			}
			s.recorder.Emit(audit.Event{Time: time.Now(), Type: "admin", Subject: sub, Decision: decision, DenyReason: action, Detail: detail})
		},
	})
	if err != nil {
		s.logger.Error("admin API disabled", "err", err)
		return nil
	}
	return map[string]fasthttp.RequestHandler{
		"/admin/": h.Handle,
		// The Go profiler, behind the admin token: "profile before
		// optimising" should work on a production instance too.
		"/debug/pprof/": h.Protect(pprofHandler()),
	}
}

func pprofHandler() fasthttp.RequestHandler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return fasthttpadaptor.NewFastHTTPHandler(mux)
}

// buildRoutes compiles cfg's routes with the auth pipeline in front of each.
func (s *services) buildRoutes(cfg *config.Config, metrics *proxy.Metrics) (*proxy.Routes, error) {
	trusted, err := parsePrefixes(cfg.TrustedProxies)
	if err != nil {
		return nil, err
	}
	clientIPOpts := clientip.Options{Trusted: trusted, Header: string(cfg.ClientIPHeader)}
	byName := make(map[string]config.Route, len(cfg.Routes))
	opts := make([]proxy.RouteOptions, 0, len(cfg.Routes))
	for _, r := range cfg.Routes {
		byName[r.Name] = r
		upstreams := r.Upstreams
		if r.Upstream != "" {
			upstreams = []string{r.Upstream}
		}
		opts = append(opts, proxy.RouteOptions{
			Name: r.Name, Host: r.Host, PathPrefix: r.Path, Upstreams: upstreams, HostHeader: r.HostHeader,
			ConnectTimeout: r.Timeouts.Connect.D(), ReadTimeout: r.Timeouts.Read.D(),
			WriteTimeout: r.Timeouts.Write.D(), IdleTimeout: r.Timeouts.Idle.D(),
			MaxConns: r.MaxConns, MaxBodyBytes: int(r.MaxBodyBytes),
		})
	}
	reserved, err := s.reservedHandler(clientIPOpts)
	if err != nil {
		return nil, err
	}
	return proxy.NewRoutes(proxy.RoutesConfig{
		Routes: opts, DefaultRoute: cfg.DefaultRoute, Reserved: reserved,
		TrustedProxies: trusted, Metrics: metrics, Logger: s.logger,
		Wrap: func(ro proxy.RouteOptions, forward fasthttp.RequestHandler) (fasthttp.RequestHandler, error) {
			return s.wrapRoute(cfg, byName[ro.Name], clientIPOpts, forward)
		},
	})
}

// reservedHandler serves /.edgeauth/*: the assertion JWKS and the relying
// party's endpoints. The client IP is resolved first because the login
// hook scores the login's risk.
func (s *services) reservedHandler(cip clientip.Options) (fasthttp.RequestHandler, error) {
	var rpHandler fasthttp.RequestHandler
	if s.rp != nil {
		rpHandler = s.rp.Handler()
	}
	mux := func(ctx *fasthttp.RequestCtx) {
		if s.signer != nil && string(ctx.Path()) == identity.JWKSPath {
			s.signer.HandleJWKS(ctx)
			return
		}
		if rpHandler != nil {
			rpHandler(ctx)
			return
		}
		errpage.Write(ctx, fasthttp.StatusNotFound, "not_found", "There is nothing here.")
	}
	ipMW, err := clientip.Middleware(cip)
	if err != nil {
		return nil, fmt.Errorf("client ip: %w", err)
	}
	return middleware.Chain(mux, ipMW, s.tlsFingerprint), nil
}

// wrapRoute builds one route's pipeline in front of its forwarder. Every
// step is built here, so a config problem fails the build (and a reload
// keeps the old routes) instead of surfacing mid-request.
func (s *services) wrapRoute(cfg *config.Config, r config.Route, cip clientip.Options, forward fasthttp.RequestHandler) (fasthttp.RequestHandler, error) {
	var steps middleware.Steps
	var err error
	wrapErr := func(step string, err error) error { return fmt.Errorf("route %q: %s: %w", r.Name, step, err) }

	h := cfg.IdentityHeaders
	identityMW, err := identity.Middleware(identity.Options{
		Headers: identity.Headers{
			User: orOff(h.User), Email: orOff(h.Email), Groups: orOff(h.Groups),
			PreferredUsername: orOff(h.PreferredUsername), Assertion: orOff(h.Assertion),
		},
		Signer: s.signer, RouteName: r.Name, Logger: s.logger,
	})
	if err != nil {
		return nil, wrapErr("identity", err)
	}
	steps.Identity = identityMW
	if r.Auth == config.AuthNone {
		// A public route makes no auth decision: no client address to
		// resolve, no session, no policy to ask. Identity still strips
		// inbound identity headers, so an app can trust them on every
		// route. Skipping the rest saved a tenth of the proxy's CPU per
		// request on public traffic.
		return steps.Build(forward), nil
	}
	ipMW, err := clientip.Middleware(cip)
	if err != nil {
		return nil, wrapErr("client ip", err)
	}
	steps.ClientIP = func(next fasthttp.RequestHandler) fasthttp.RequestHandler {
		return ipMW(s.tlsFingerprint(next))
	}
	if steps.Audit, err = audit.Middleware(s.recorder, audit.MiddlewareOptions{Route: r.Name, Shadow: policy.ShadowDecision}); err != nil {
		return nil, wrapErr("audit", err)
	}
	if s.rp != nil {
		if steps.Session, err = session.Middleware(session.MiddlewareOptions{
			Codec: s.codec, Cookie: s.cookie, Store: s.store, Logger: s.logger, OnStoreError: s.sessionStoreError,
			Refresh: s.rp.MaybeRefresh,
		}); err != nil {
			return nil, wrapErr("session", err)
		}
	}
	if s.verifier != nil && r.Bearer {
		if steps.Token, err = token.Middleware(s.verifier, token.RouteOptions{
			Issuers: r.TokenIssuers, RequiredScopes: r.Scopes, ExternalOrigin: s.externalOrigin(cfg, r),
		}, s.logger); err != nil {
			return nil, wrapErr("tokens", err)
		}
	}
	if s.riskMW != nil && r.RiskMode != config.RiskOff && r.Auth == config.AuthRequired {
		if steps.Risk, err = risk.Middleware(*s.riskMW); err != nil {
			return nil, wrapErr("risk", err)
		}
	}
	rule, err := policyRule(cfg, r, r.RiskMode)
	if err != nil {
		return nil, wrapErr("policy", err)
	}
	var ch policy.Challenger = policy.APIChallenger{}
	if s.rp != nil {
		ch = &challenger{s: s, realm: r.Name}
	}
	if steps.Policy, err = policy.Middleware(rule, ch, s.logger); err != nil {
		return nil, wrapErr("policy", err)
	}
	return steps.Build(forward), nil
}

// policyRule builds a route's policy rule with the given risk mode. The
// proxy uses the route's own mode; `edgeauth risk replay` builds every rule
// with enforce, to show what enforcing would decide.
func policyRule(cfg *config.Config, r config.Route, riskMode config.RiskMode) (*policy.Rule, error) {
	mode, err := policy.ParseRiskMode(string(riskMode))
	if err != nil {
		return nil, err
	}
	return policy.NewRule(policy.RouteOptions{
		Name: r.Name, AuthNone: r.Auth == config.AuthNone, Public: r.Public,
		AllowEmails: r.Allow.Emails, AllowEmailDomains: r.Allow.EmailDomains, AllowGroups: r.Allow.Groups, AllowClaims: r.Allow.Claims,
		RequireACR: r.ACR, MaxAuthAge: r.MaxAuthAge.D(), StepUpAt: r.StepUpAt, DenyAt: r.DenyAt, RiskMode: mode,
		StepUpACR: cfg.OIDC.StepUp.ACRValues, StepUpMaxAge: cfg.OIDC.StepUp.MaxAge.D(),
		HardDenyReasons: []string{"country_not_allowed"},
	})
}

// orOff maps a configured empty header name to identity's "off" marker.
func orOff(name string) string {
	if name == "" {
		return "-"
	}
	return name
}

// externalOrigin is the origin DPoP proofs must name for a route: the
// configured external URL, else the route's host under the listener's
// scheme. Never the client's Host header.
func (s *services) externalOrigin(cfg *config.Config, r config.Route) string {
	if cfg.ExternalURL != "" {
		return strings.TrimSuffix(cfg.ExternalURL, "/")
	}
	scheme := "http"
	if cfg.TLS.Enabled() {
		scheme = "https"
	}
	host := r.Host
	if host == "" || host == "*" || strings.HasPrefix(host, "*.") {
		host = cfg.Listen
	}
	return scheme + "://" + host
}

// sessionStoreError answers 503 when the store is down and the request has
// a session cookie: signing the user out (or starting a login that cannot
// complete) would lose their place for nothing.
func (s *services) sessionStoreError(ctx *fasthttp.RequestCtx, err error) bool {
	if !errors.Is(err, session.ErrUnavailable) {
		return false
	}
	errpage.Write(ctx, fasthttp.StatusServiceUnavailable, "session_store_unavailable",
		"Sign-in is temporarily unavailable. Please try again in a minute.")
	return true
}

// onLogin runs in the callback after the provider authenticated the user
// and before the session is stored. It scores the login itself: a login
// that is risky (new country, impossible travel, …) and did not already
// use the step-up factor is not trusted yet, so its device and location are
// not recorded and the first request asks for the step-up. A login or
// step-up that passes binds the device, records the location and marks the
// address as accepted for this session.
func (s *services) onLogin(ctx *fasthttp.RequestCtx, sess *session.Session) {
	if s.riskSvc == nil {
		return
	}
	st := reqstate.Get(ctx)
	var a risk.Assessment
	req := risk.Request{
		Issuer: sess.Issuer, Subject: sess.Subject, IP: st.ClientIP,
		Traits: device.Traits{
			UserAgent: ctx.Request.Header.UserAgent(), AcceptLanguage: ctx.Request.Header.Peek("Accept-Language"),
			SecCHUA: ctx.Request.Header.Peek("Sec-CH-UA"), SecCHUAPlatform: ctx.Request.Header.Peek("Sec-CH-UA-Platform"),
			SecCHUAMobile: ctx.Request.Header.Peek("Sec-CH-UA-Mobile"),
			JA4:           st.TLSFingerprint,
		},
	}
	if id, err := s.riskMW.Cookie.Decode(ctx.Request.Header.Cookie(s.riskMW.CookieName)); err == nil {
		req.DeviceID = id
	}
	s.riskSvc.Assess(ctx, &req, time.Now(), &a)
	sess.Fingerprint = a.Fingerprint
	sess.Country = a.Location.Country
	strong := len(s.stepUpACR) == 0 || slices.Contains(s.stepUpACR, sess.ACR)
	if a.Result.HardDeny || (a.Result.Score >= s.loginRisk && !strong) {
		sess.IP = "" // nothing accepted: the first request will ask for step-up
		s.recorder.Emit(audit.Event{
			Time: time.Now(), Type: "login", RequestID: errpage.RequestID(ctx), Subject: sess.Subject, Issuer: sess.Issuer,
			ClientIP: st.ClientIP, Country: a.Location.Country, City: a.Location.City, ASN: a.Location.ASN,
			Score: a.Result.Score, Reasons: reasonStrings(&a.Result), Decision: "step_up", DenyReason: "login_not_trusted_yet",
		})
		return
	}
	fp, err := risk.BindDevice(ctx, s.riskMW, sess.Issuer, sess.Subject)
	if err != nil {
		s.logger.Warn("risk: binding device at login failed", "err", err)
		return
	}
	sess.Fingerprint = fp
	sess.DeviceID = st.DeviceID
	sess.IP = st.ClientIP.String()
	sess.StepUpFailures = 0
}

func reasonStrings(r *risk.Result) []string {
	out := make([]string, 0, r.N)
	for _, x := range r.List() {
		out = append(out, x.String())
	}
	return out
}

// challenger answers policy's login and step-up decisions for browsers
// through the relying party. Without one (bearer-only setups) routes use
// policy.APIChallenger.
type challenger struct {
	s     *services
	realm string
}

func (c *challenger) Login(ctx *fasthttp.RequestCtx) {
	c.s.rp.StartLogin(ctx, string(ctx.RequestURI()), nil)
}

// StepUp counts the step-up against the session: a step-up that is failed
// or abandoned again and again (someone holding a stolen cookie cannot pass
// the second factor) ends the session and raises an alert instead of
// redirecting forever.
func (c *challenger) StepUp(ctx *fasthttp.RequestCtx, acr []string, maxAge time.Duration) {
	s := c.s
	st := reqstate.Get(ctx)
	if st.Method == reqstate.MethodSession && s.maxFails > 0 {
		if sess, err := s.store.Get(ctx, st.SessionID); err == nil {
			next := sess.Clone()
			next.StepUpFailures++
			if next.StepUpFailures > s.maxFails {
				_ = s.store.Delete(ctx, st.SessionID)
				s.cookie.Clear(ctx)
				st.Decision, st.DenyReason = reqstate.DecisionDeny, "step_up_failed"
				s.recorder.Emit(audit.Event{
					Time: time.Now(), Type: "step_up", RequestID: errpage.RequestID(ctx), Route: c.realm,
					Subject: sess.Subject, Issuer: sess.Issuer, SessionID: audit.HashID(st.SessionID), ClientIP: st.ClientIP,
					Country: st.Location.Country, City: st.Location.City, ASN: st.Location.ASN,
					Score: st.RiskScore, Reasons: append([]string(nil), st.Reasons()...),
					Decision: "deny", DenyReason: "step_up_failed", Detail: "session revoked after repeated step-up attempts",
				})
				errpage.Write(ctx, fasthttp.StatusForbidden, "step_up_failed",
					"This session was ended because the additional verification was not completed. Please sign in again.")
				return
			}
			_ = s.store.Put(ctx, next)
		}
	}
	s.rp.StartLogin(ctx, string(ctx.RequestURI()), &sso.StepUp{ACR: acr, MaxAge: maxAge})
}

func parsePrefixes(cidrs []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(cidrs))
	for _, c := range cidrs {
		if !strings.Contains(c, "/") {
			a, err := netip.ParseAddr(c)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: %w", c, err)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: %w", c, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
