// Package sso is edgeauth's OpenID Connect relying party: it sends browsers
// to the provider (authorization code flow with PKCE S256, state and nonce),
// completes the login at the callback, keeps sessions fresh with refresh
// tokens, and ends them on RP-initiated and back-channel logout.
//
// Trust boundary: everything arriving from the browser (query parameters,
// cookies, Origin/Referer, return_to) is untrusted and checked here; the
// provider is trusted only through what verifies against its discovered
// keys and issuer. Protocol mechanics are go-oidc and x/oauth2; this package
// adds what they leave to the caller (nonce, untrusted audiences, azp,
// at_hash, acr/auth_time for step-up, single-use state, logout tokens).
//
// Layout: sso.go, verify.go, txn.go and redirect.go are the core and do not
// touch fasthttp; middleware.go is the thin fasthttp adapter (StartLogin,
// Handler, Middleware).
//
// Start-up never fails because the provider is down: discovery retries in
// the background with backoff; until it succeeds, new logins get a 503 page
// while existing sessions keep working.
package sso

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/valyala/fasthttp"
	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"

	"github.com/edgeauth/edgeauth/middleware/session"
)

// Reserved paths this package serves (see Handler).
const (
	DefaultRedirectPath    = "/.edgeauth/callback"
	LogoutPath             = "/.edgeauth/logout"
	BackChannelLogoutPath  = "/.edgeauth/backchannel-logout"
	defaultMaxTransactions = 8
)

// Options configure the relying party. cmd/ fills it from the oidc: and
// session: config sections.
type Options struct {
	// Issuer is the provider's issuer URL (exact, as in its discovery
	// document). Required.
	Issuer string
	// ClientID and ClientSecret are our registration. Required.
	ClientID     string
	ClientSecret string
	// Scopes requested; nil means openid, email, profile, offline_access.
	// "openid" is always added.
	Scopes []string
	// RedirectPath is the callback path; "" means /.edgeauth/callback.
	RedirectPath string
	// ExternalURL is the scheme://host[:port] browsers use to reach us; the
	// callback URL is built from it. "" derives it from the request's scheme
	// and Host, which is safe only because the host must be in AllowedHosts.
	ExternalURL string
	// AllowedHosts are the hosts (host[:port], case-insensitive) of the
	// configured routes. They gate callback derivation and are the only
	// hosts absolute return_to/redirect URLs may name. Required when
	// ExternalURL is "".
	AllowedHosts []string
	// TrustedAudiences may appear in aud next to ClientID (OIDC Core
	// §3.1.3.7 (3)); nil means none: an ID token for anyone else is refused.
	TrustedAudiences []string
	// GroupsClaim names the claim holding group names; "" means "groups".
	GroupsClaim string
	// StepUpACR are the acr values a step-up asks for and accepts; nil means
	// any acr is accepted after a fresh authentication.
	StepUpACR []string
	// StepUpMaxAge is sent as max_age on step-up; zero sends prompt=login.
	StepUpMaxAge time.Duration
	// PostLogoutRedirectURL is where the provider sends the browser after
	// RP-initiated logout (must be registered there) and where a local
	// logout lands; "" means "/" locally and no post_logout_redirect_uri.
	PostLogoutRedirectURL string
	// Keys sign the pre-auth cookies, the default session cookie and logout
	// CSRF tokens; the first signs, all verify. At least one key of 32+
	// bytes is required.
	Keys [][]byte
	// SecureCookies sets Secure and the __Host- prefix (use under TLS).
	SecureCookies bool
	// Cookies reads and writes the session cookie; nil means the session
	// package's Codec (keyed by Keys) and Cookie (named CookieName).
	Cookies SessionCookies
	// CookieName of the default session cookie, without prefix; "" means
	// session.DefaultCookieName.
	CookieName string
	// Store keeps sessions, login transactions and the logout-token replay
	// set. Required.
	Store session.Store
	// SessionLifetime is the absolute session lifetime; zero means 12h.
	SessionLifetime time.Duration
	// IdleTimeout is recorded for the store's expiry; zero means 1h.
	IdleTimeout time.Duration
	// RefreshBefore refreshes tokens this long before they expire; zero
	// means 1m.
	RefreshBefore time.Duration
	// MaxTransactions bounds concurrent logins per browser (one pre-auth
	// cookie each, oldest evicted); zero means 8.
	MaxTransactions int
	// SigningAlgs allowed for ID and logout tokens; nil means RS256, RS384,
	// RS512, ES256, ES384, ES512, PS256, PS384, PS512, EdDSA (never none or
	// HS*).
	SigningAlgs []string
	// DiscoveryRetryMin/Max bound the discovery backoff; zero means 1s/30s.
	DiscoveryRetryMin time.Duration
	DiscoveryRetryMax time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger; nil discards.
	Logger *slog.Logger
	// HTTPClient talks to the provider; nil means a client with a 10s
	// timeout.
	HTTPClient *http.Client
	// OnLogin runs after a login or step-up succeeded and before the session
	// is stored; it may set device and location fields (risk binds devices
	// here). nil means none.
	OnLogin func(ctx *fasthttp.RequestCtx, sess *session.Session)
}

// StepUp asks for a stronger or fresher authentication of the current user.
type StepUp struct {
	// ACR values to request; nil means Options.StepUpACR.
	ACR []string
	// MaxAge to request; zero means Options.StepUpMaxAge.
	MaxAge time.Duration
}

// SessionCookies is how the RP reads and writes the session cookie, so the
// session package's codec can be plugged in.
type SessionCookies interface {
	// SessionID returns the verified session id carried by the request, or
	// false when there is none or it does not verify.
	SessionID(ctx *fasthttp.RequestCtx) (string, bool)
	// SetSession sets the session cookie for id.
	SetSession(ctx *fasthttp.RequestCtx, id string, expires time.Time)
	// ClearSession expires the session cookie.
	ClearSession(ctx *fasthttp.RequestCtx)
}

// RP is a configured relying party. It is safe for concurrent use.
type RP struct {
	opts         Options
	scopes       []string
	redirectPath string
	external     *url.URL
	allowed      map[string]struct{}
	postLogout   string
	now          func() time.Time
	log          *slog.Logger
	client       *http.Client
	cookies      SessionCookies
	txnKeys      keyring
	csrfKeys     keyring
	txnPrefix    string

	disc   atomic.Pointer[discovered]
	sf     singleflight.Group
	recent recentCache
	used   ttlSet // consumed states
	jtis   ttlSet // seen logout-token jti

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// discovered is what provider discovery yields; swapped in atomically once.
type discovered struct {
	provider       *oidc.Provider
	verifier       *oidc.IDTokenVerifier
	logoutVerifier *oidc.IDTokenVerifier
	oauth          oauth2.Config // without RedirectURL: it is per transaction
	endSession     string
	issRequired    bool
}

var defaultAlgs = []string{"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA"}

// New validates opts and starts provider discovery in the background. ctx
// bounds the background work; Close stops it too. New does not wait for the
// provider: use Ready or WaitReady.
func New(ctx context.Context, opts Options) (*RP, error) {
	var errs []error
	iss, err := url.Parse(opts.Issuer)
	if opts.Issuer == "" || err != nil || (iss.Scheme != "https" && iss.Scheme != "http") || iss.Host == "" {
		errs = append(errs, fmt.Errorf("sso: issuer %q must be an absolute http(s) URL", opts.Issuer))
	}
	if opts.ClientID == "" || opts.ClientSecret == "" {
		errs = append(errs, errors.New("sso: client_id and client_secret are required"))
	}
	if opts.Store == nil {
		errs = append(errs, errors.New("sso: a session store is required"))
	}
	if len(opts.Keys) == 0 {
		errs = append(errs, errors.New("sso: at least one cookie key is required"))
	}
	for i, k := range opts.Keys {
		if len(k) < 32 {
			errs = append(errs, fmt.Errorf("sso: key %d is %d bytes, want at least 32", i, len(k)))
		}
	}
	rp := &RP{opts: opts, allowed: make(map[string]struct{}), now: opts.Now, log: opts.Logger, client: opts.HTTPClient}
	for _, h := range opts.AllowedHosts {
		rp.allowed[strings.ToLower(h)] = struct{}{}
	}
	if opts.ExternalURL != "" {
		u, err := url.Parse(opts.ExternalURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || strings.TrimSuffix(u.Path, "/") != "" {
			errs = append(errs, fmt.Errorf("sso: external_url %q must be scheme://host[:port]", opts.ExternalURL))
		} else {
			rp.external = u
			rp.allowed[strings.ToLower(u.Host)] = struct{}{}
		}
	} else if len(opts.AllowedHosts) == 0 {
		errs = append(errs, errors.New("sso: allowed hosts are required when external_url is empty"))
	}
	if opts.PostLogoutRedirectURL != "" {
		u, err := url.Parse(opts.PostLogoutRedirectURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("sso: post_logout_redirect_url %q must be an absolute http(s) URL", opts.PostLogoutRedirectURL))
		}
		rp.postLogout = opts.PostLogoutRedirectURL
	}
	rp.redirectPath = opts.RedirectPath
	if rp.redirectPath == "" {
		rp.redirectPath = DefaultRedirectPath
	}
	if !strings.HasPrefix(rp.redirectPath, "/") {
		errs = append(errs, fmt.Errorf("sso: redirect path %q must start with /", rp.redirectPath))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	rp.scopes = opts.Scopes
	if rp.scopes == nil {
		rp.scopes = []string{oidc.ScopeOpenID, "email", "profile", oidc.ScopeOfflineAccess}
	}
	if !slices.Contains(rp.scopes, oidc.ScopeOpenID) {
		rp.scopes = append([]string{oidc.ScopeOpenID}, rp.scopes...)
	}
	if rp.opts.GroupsClaim == "" {
		rp.opts.GroupsClaim = "groups"
	}
	if rp.opts.SessionLifetime <= 0 {
		rp.opts.SessionLifetime = 12 * time.Hour
	}
	if rp.opts.IdleTimeout <= 0 {
		rp.opts.IdleTimeout = time.Hour
	}
	if rp.opts.RefreshBefore <= 0 {
		rp.opts.RefreshBefore = time.Minute
	}
	if rp.opts.MaxTransactions <= 0 {
		rp.opts.MaxTransactions = defaultMaxTransactions
	}
	if rp.opts.SigningAlgs == nil {
		rp.opts.SigningAlgs = defaultAlgs
	}
	if rp.opts.DiscoveryRetryMin <= 0 {
		rp.opts.DiscoveryRetryMin = time.Second
	}
	if rp.opts.DiscoveryRetryMax <= 0 {
		rp.opts.DiscoveryRetryMax = 30 * time.Second
	}
	if rp.now == nil {
		rp.now = time.Now
	}
	if rp.log == nil {
		rp.log = slog.New(slog.DiscardHandler)
	}
	if rp.client == nil {
		rp.client = &http.Client{Timeout: 10 * time.Second}
	}
	rp.txnKeys = newKeyring(opts.Keys, "txn")
	rp.csrfKeys = newKeyring(opts.Keys, "logout-csrf")
	rp.txnPrefix = "edgeauth_txn_"
	if opts.SecureCookies {
		rp.txnPrefix = "__Host-edgeauth_txn_"
	}
	rp.cookies = opts.Cookies
	if rp.cookies == nil {
		c, err := newSessionCookies(opts.CookieName, opts.Keys, opts.SecureCookies, rp.now)
		if err != nil {
			return nil, err
		}
		rp.cookies = c
	}
	rp.recent = recentCache{m: make(map[string]recentEntry)}
	rp.used = ttlSet{m: make(map[string]time.Time), max: 100_000}
	rp.jtis = ttlSet{m: make(map[string]time.Time), max: 100_000}
	rp.ctx, rp.cancel = context.WithCancel(ctx)
	rp.done = make(chan struct{})
	go rp.discoverLoop()
	return rp, nil
}

// Close stops background discovery.
func (rp *RP) Close() error {
	rp.cancel()
	<-rp.done
	return nil
}

// Ready reports whether provider discovery has succeeded.
func (rp *RP) Ready() bool { return rp.disc.Load() != nil }

// WaitReady blocks until discovery succeeded or ctx ends.
func (rp *RP) WaitReady(ctx context.Context) error {
	select {
	case <-rp.done:
		if rp.Ready() {
			return nil
		}
		return fmt.Errorf("%w: discovery stopped", ErrUnavailable)
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
}

// discoverLoop retries discovery with jittered exponential backoff until it
// succeeds or the RP is closed. It closes rp.done when it returns.
func (rp *RP) discoverLoop() {
	defer close(rp.done)
	delay := rp.opts.DiscoveryRetryMin
	for attempt := 1; ; attempt++ {
		err := rp.discover()
		if err == nil {
			rp.log.LogAttrs(rp.ctx, slog.LevelInfo, "sso: provider discovered", slog.String("issuer", rp.opts.Issuer))
			return
		}
		rp.log.LogAttrs(rp.ctx, slog.LevelWarn, "sso: provider discovery failed; new logins get 503 until it succeeds",
			slog.String("issuer", rp.opts.Issuer), slog.Int("attempt", attempt), slog.String("error", err.Error()))
		jitter := time.Duration(rand.Int64N(int64(delay)/2 + 1))
		t := time.NewTimer(delay/2 + jitter)
		select {
		case <-rp.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(delay*2, rp.opts.DiscoveryRetryMax)
	}
}

func (rp *RP) discover() error {
	ctx, cancel := context.WithTimeout(oidc.ClientContext(rp.ctx, rp.client), rp.client.Timeout+time.Second)
	defer cancel()
	p, err := oidc.NewProvider(ctx, rp.opts.Issuer)
	if err != nil {
		return fmt.Errorf("sso: discovery: %w", err)
	}
	var extra struct {
		EndSession  string `json:"end_session_endpoint"`
		IssRequired bool   `json:"authorization_response_iss_parameter_supported"`
	}
	if err := p.Claims(&extra); err != nil {
		return fmt.Errorf("sso: discovery document: %w", err)
	}
	if extra.EndSession != "" {
		if u, err := url.Parse(extra.EndSession); err != nil || (u.Scheme != "https" && u.Scheme != "http") {
			extra.EndSession = ""
		}
	}
	d := &discovered{
		provider: p,
		verifier: p.Verifier(&oidc.Config{ClientID: rp.opts.ClientID, SupportedSigningAlgs: rp.opts.SigningAlgs, Now: rp.now}),
		// Logout tokens are verified like ID tokens (§2.6 step 2–3),
		// including the client id in aud.
		logoutVerifier: p.Verifier(&oidc.Config{ClientID: rp.opts.ClientID, SupportedSigningAlgs: rp.opts.SigningAlgs, Now: rp.now}),
		oauth: oauth2.Config{ClientID: rp.opts.ClientID, ClientSecret: rp.opts.ClientSecret,
			Endpoint: p.Endpoint(), Scopes: rp.scopes},
		endSession:  extra.EndSession,
		issRequired: extra.IssRequired,
	}
	rp.disc.Store(d)
	return nil
}

// hashID is how session ids and subjects appear in logs.
func hashID(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:6])
}

// safeTarget validates a return_to or redirect target against our hosts.
func (rp *RP) safeTarget(raw string) string { return safeTarget(raw, rp.allowed) }

// SafeRedirectTarget is the package function extended with absolute
// http(s) URLs whose host is an allowed host.
func (rp *RP) SafeRedirectTarget(raw string) string { return rp.safeTarget(raw) }

// exchange redeems the code and verifies the result into a new session
// (core of the callback; no fasthttp). prev is the browser's current
// session, if any; it is required to match the subject on step-up.
func (rp *RP) exchange(ctx context.Context, d *discovered, txn *transaction, code string, prev *session.Session) (*session.Session, error) {
	conf := d.oauth
	conf.RedirectURL = txn.RedirectURI
	tok, err := conf.Exchange(oidc.ClientContext(ctx, rp.client), code, oauth2.VerifierOption(txn.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			return nil, fmt.Errorf("%w: code exchange refused: %s", ErrProvider, re.ErrorCode)
		}
		return nil, fmt.Errorf("%w: code exchange: %w", ErrUnavailable, err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, fmt.Errorf("%w: no id_token in token response", ErrIDToken)
	}
	idt, err := d.verifier.Verify(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIDToken, err)
	}
	var c idClaims
	var all map[string]json.RawMessage
	if err := idt.Claims(&c); err != nil {
		return nil, fmt.Errorf("%w: claims: %w", ErrIDToken, err)
	}
	if err := idt.Claims(&all); err != nil {
		return nil, fmt.Errorf("%w: claims: %w", ErrIDToken, err)
	}
	now := rp.now()
	if err := checkIDTokenClaims(idt.Audience, &c, expectation{clientID: rp.opts.ClientID, trusted: rp.opts.TrustedAudiences,
		nonce: txn.Nonce, stepUp: txn.StepUp, acr: txn.ACR, startedAt: txn.Created, maxAge: txn.MaxAge}, now); err != nil {
		return nil, err
	}
	// at_hash is optional in the code flow, but when present it must bind
	// the access token to this ID token (OIDC Core §3.1.3.8).
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			return nil, fmt.Errorf("%w: at_hash: %w", ErrIDToken, err)
		}
	}
	s := &session.Session{
		ID:           session.NewID(),
		Issuer:       idt.Issuer,
		Subject:      idt.Subject,
		ACR:          c.ACR,
		AMR:          c.AMR,
		IDToken:      raw,
		RefreshToken: tok.RefreshToken,
		TokenExpiry:  rp.tokenExpiry(tok, idt.Expiry),
		CreatedAt:    now,
		LastSeen:     now,
		ExpiresAt:    now.Add(rp.opts.SessionLifetime),
	}
	if c.AuthTime != 0 {
		s.AuthTime = time.Unix(c.AuthTime, 0)
	}
	fillIdentity(s, &c, all, rp.opts.GroupsClaim)
	if txn.StepUp && prev != nil {
		// Step-up upgrades the same session: same person, new id (no
		// fixation), the device binding and absolute lifetime carried over.
		if prev.Subject != s.Subject || prev.Issuer != s.Issuer {
			return nil, fmt.Errorf("%w: step-up signed in a different subject", ErrStepUp)
		}
		s.CreatedAt = prev.CreatedAt
		s.ExpiresAt = prev.ExpiresAt
		s.IP, s.Country, s.DeviceID, s.Fingerprint = prev.IP, prev.Country, prev.DeviceID, prev.Fingerprint
	}
	return s, nil
}

// refreshCooldown stops a session whose provider is unreachable from
// retrying a refresh on every request.
const refreshCooldown = 30 * time.Second

// MaybeRefresh returns sess unchanged while its tokens are fresh. Within
// RefreshBefore of TokenExpiry, and with a refresh token, it refreshes: once
// per session however many requests arrive at the same time (single-flight
// keyed by session id); all of them get the refreshed session, so a provider
// that rotates refresh tokens never sees the old one twice.
//
// A refresh the provider refuses (invalid_grant, revoked) ends the session:
// it is deleted and ErrSessionEnded returned. A provider that cannot be
// reached does not end it: the session keeps working until its own
// lifetime, and the refresh is retried after a cooldown.
func (rp *RP) MaybeRefresh(ctx context.Context, sess *session.Session) (*session.Session, error) {
	now := rp.now()
	if sess.RefreshToken == "" || sess.TokenExpiry.IsZero() || sess.TokenExpiry.Sub(now) > rp.opts.RefreshBefore {
		return sess, nil
	}
	if s, ok := rp.recent.get(sess.ID, now); ok {
		return s, nil
	}
	v, err, _ := rp.sf.Do(sess.ID, func() (any, error) {
		// A flight that finished just before this one started already did
		// the work; the store may not show it yet (asynchronous caches).
		if s, ok := rp.recent.get(sess.ID, rp.now()); ok {
			return s, nil
		}
		return rp.refresh(sess)
	})
	if err != nil {
		return nil, err
	}
	return v.(*session.Session), nil
}

func (rp *RP) refresh(sess *session.Session) (*session.Session, error) {
	d := rp.disc.Load()
	if d == nil {
		return sess, nil
	}
	// The flight outlives the request that started it; bound it on its own.
	ctx, cancel := context.WithTimeout(oidc.ClientContext(rp.ctx, rp.client), rp.client.Timeout+time.Second)
	defer cancel()
	tok, err := d.oauth.TokenSource(ctx, &oauth2.Token{RefreshToken: sess.RefreshToken, Expiry: time.Unix(1, 0)}).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			rp.log.LogAttrs(ctx, slog.LevelInfo, "sso: refresh refused; session ended",
				slog.String("session", hashID(sess.ID)), slog.String("error_code", re.ErrorCode))
			return nil, rp.endSession(ctx, sess, ErrSessionEnded)
		}
		rp.log.LogAttrs(ctx, slog.LevelWarn, "sso: refresh failed; provider unreachable, session kept",
			slog.String("session", hashID(sess.ID)), slog.String("error", err.Error()))
		rp.recent.put(sess.ID, sess, rp.now().Add(refreshCooldown))
		return sess, nil
	}
	n := sess.Clone()
	if tok.RefreshToken != "" {
		n.RefreshToken = tok.RefreshToken
	}
	n.TokenExpiry = rp.tokenExpiry(tok, time.Time{})
	if raw, _ := tok.Extra("id_token").(string); raw != "" {
		idt, err := d.verifier.Verify(ctx, raw)
		if err != nil || idt.Subject != sess.Subject || idt.Issuer != sess.Issuer {
			rp.log.LogAttrs(ctx, slog.LevelWarn, "sso: refreshed id token rejected; session ended",
				slog.String("session", hashID(sess.ID)))
			return nil, rp.endSession(ctx, sess, fmt.Errorf("%w: refreshed id token rejected", ErrSessionEnded))
		}
		var c idClaims
		var all map[string]json.RawMessage
		if idt.Claims(&c) == nil && idt.Claims(&all) == nil {
			if err := checkAudience(idt.Audience, c.AZP, rp.opts.ClientID, rp.opts.TrustedAudiences); err != nil {
				return nil, rp.endSession(ctx, sess, fmt.Errorf("%w: %w", ErrSessionEnded, err))
			}
			// Group membership may have changed; acr and auth_time are
			// those of the original authentication (RFC 9470 §6.1) and stay.
			sid := n.SID
			fillIdentity(n, &c, all, rp.opts.GroupsClaim)
			if n.SID == "" {
				n.SID = sid
			}
		}
		n.IDToken = raw
		if n.TokenExpiry.IsZero() {
			n.TokenExpiry = idt.Expiry
		}
	}
	n.Version++
	if err := rp.opts.Store.Put(ctx, n); err != nil {
		// The provider has rotated the refresh token; the new one lives
		// only in memory until the store recovers.
		rp.log.LogAttrs(ctx, slog.LevelError, "sso: store refreshed session", slog.String("session", hashID(sess.ID)),
			slog.String("error", err.Error()))
	}
	// Remember the result at least for the cooldown, so requests that
	// still read the pre-refresh record do not refresh again.
	until := n.TokenExpiry.Add(-rp.opts.RefreshBefore)
	if floor := rp.now().Add(refreshCooldown); until.Before(floor) {
		until = floor
	}
	rp.recent.put(sess.ID, n, until)
	return n, nil
}

// tokenExpiry is when the tokens of a token response expire, on our clock:
// expires_in counted from now (x/oauth2's Expiry uses the wall clock, not
// the injected one), else the ID token's exp.
func (rp *RP) tokenExpiry(tok *oauth2.Token, idExp time.Time) time.Time {
	if tok.ExpiresIn > 0 {
		return rp.now().Add(time.Duration(tok.ExpiresIn) * time.Second)
	}
	if !tok.Expiry.IsZero() {
		return tok.Expiry
	}
	return idExp
}

func (rp *RP) endSession(ctx context.Context, sess *session.Session, cause error) error {
	if err := rp.opts.Store.Delete(ctx, sess.ID); err != nil {
		rp.log.LogAttrs(ctx, slog.LevelError, "sso: delete session", slog.String("session", hashID(sess.ID)),
			slog.String("error", err.Error()))
	}
	rp.recent.put(sess.ID, nil, rp.now().Add(refreshCooldown))
	return cause
}

// handleLogoutToken validates a back-channel logout token (Back-Channel
// Logout 1.0 §2.6) and revokes the sessions it names (§2.7).
func (rp *RP) handleLogoutToken(ctx context.Context, raw string) (int, error) {
	d := rp.disc.Load()
	if d == nil {
		return 0, fmt.Errorf("%w: provider keys unknown", ErrUnavailable)
	}
	tok, err := d.logoutVerifier.Verify(ctx, raw)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrLogoutToken, err)
	}
	var all map[string]json.RawMessage
	if err := tok.Claims(&all); err != nil {
		return 0, fmt.Errorf("%w: claims: %w", ErrLogoutToken, err)
	}
	now := rp.now()
	lc, err := checkLogoutClaims(all, tok.Audience, rp.opts.ClientID, rp.opts.TrustedAudiences, now)
	if err != nil {
		return 0, err
	}
	// Replay (§2.6 step 7): remember the jti until the token could no
	// longer pass iat/exp checks anyway.
	until := now.Add(maxLogoutTokenAge)
	if lc.Expiry.Before(until) {
		until = lc.Expiry
	}
	until = until.Add(clockSkew)
	key := "sso:jti:" + stateHash(lc.Issuer+"\x00"+lc.JTI)
	if !rp.jtis.add(key, now, until) {
		return 0, ErrLogoutTokenUsed
	}
	if _, err := rp.opts.Store.GetBlob(ctx, key); err == nil {
		return 0, ErrLogoutTokenUsed
	}
	if err := rp.opts.Store.PutBlob(ctx, key, []byte{1}, until.Sub(now)); err != nil {
		rp.log.LogAttrs(ctx, slog.LevelWarn, "sso: record logout jti", slog.String("error", err.Error()))
	}
	var n int
	if lc.SID != "" {
		n, err = rp.opts.Store.DeleteSID(ctx, lc.Issuer, lc.SID)
	} else {
		n, err = rp.opts.Store.DeleteSubject(ctx, lc.Issuer, lc.Subject)
	}
	if err != nil {
		return 0, fmt.Errorf("sso: revoke sessions: %w", err)
	}
	rp.log.LogAttrs(ctx, slog.LevelInfo, "sso: back-channel logout", slog.Int("sessions", n),
		slog.String("subject", hashID(lc.Subject)), slog.Bool("by_sid", lc.SID != ""))
	return n, nil
}

// recentCache remembers the outcome of a refresh per session id for a short
// while, so requests that read the pre-refresh session from the store do
// not refresh again with a rotated-out token. nil means "ended".
type recentCache struct {
	mu sync.Mutex
	m  map[string]recentEntry
}

type recentEntry struct {
	s     *session.Session
	until time.Time
}

const maxRecent = 100_000

func (c *recentCache) get(id string, now time.Time) (*session.Session, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[id]
	if !ok || now.After(e.until) {
		return nil, false
	}
	if e.s == nil {
		return nil, false
	}
	return e.s, true
}

func (c *recentCache) put(id string, s *session.Session, until time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxRecent {
		now := time.Now()
		for k, e := range c.m {
			if now.After(e.until) || len(c.m) >= maxRecent {
				delete(c.m, k)
			}
		}
	}
	c.m[id] = recentEntry{s: s, until: until}
}

// ttlSet is a bounded set of keys with expiry, used for single-use states
// and seen jti values within this instance.
type ttlSet struct {
	mu  sync.Mutex
	m   map[string]time.Time
	max int
}

// add inserts key until the given time and reports whether it was absent.
func (t *ttlSet) add(key string, now, until time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if exp, ok := t.m[key]; ok && now.Before(exp) {
		return false
	}
	if len(t.m) >= t.max {
		for k, exp := range t.m {
			if !now.Before(exp) {
				delete(t.m, k)
			}
		}
		// Still full: drop arbitrary entries rather than grow without
		// bound; the store-side record still catches replays.
		for k := range t.m {
			if len(t.m) < t.max {
				break
			}
			delete(t.m, k)
		}
	}
	t.m[key] = until
	return true
}
