// Package devidp is a small OpenID Connect provider for development, demos
// and tests. The protocol (discovery, JWKS, authorize, token with PKCE and
// refresh-token rotation, userinfo, end_session) is zitadel/oidc's op
// package; this package only supplies an in-memory Storage, a login page and
// OIDC Back-Channel Logout 1.0 delivery.
//
// Trust boundary: none. Users, passwords and MFA codes are plain strings in
// memory, the signing key is generated at start and lost at exit, and the
// login form has no rate limiting. It exists so that edgeauth can be run and
// tested end to end on loopback with nothing else installed; never point a
// production edgeauth at it.
package devidp

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Client is a relying party registered at the provider.
type Client struct {
	ID     string
	Secret string
	// RedirectURIs must match the authorization request's redirect_uri
	// exactly.
	RedirectURIs []string
	// PostLogoutRedirectURIs are the allowed post_logout_redirect_uri values
	// of RP-initiated logout; nil allows none.
	PostLogoutRedirectURIs []string
	// BackChannelLogoutURI receives logout tokens from LogoutUser; "" means
	// the client is not notified.
	BackChannelLogoutURI string
}

// User is a person who can sign in.
type User struct {
	Subject  string // sub claim; stable id
	Username string // what is typed into the login form
	Password string
	Email    string
	Name     string
	Groups   []string
	// MFACode is the one fixed second factor; "" means the user cannot
	// complete an MFA login (acr stays "pwd").
	MFACode string
}

// Options configure a Provider.
type Options struct {
	// Issuer is the absolute issuer URL without a path, e.g.
	// http://127.0.0.1:9000. Required. http is allowed (dev only).
	Issuer  string
	Clients []Client
	// Users; nil means DemoUsers().
	Users []User
	// TokenLifetime is the lifetime of access and ID tokens; zero means 5m.
	TokenLifetime time.Duration
	// HTTPClient delivers back-channel logout tokens; nil means a client
	// with a 5s timeout.
	HTTPClient *http.Client
	// Logger; nil discards.
	Logger *slog.Logger
}

// Demo credentials, printed by `edgeauth demo`. They are public on purpose.
const (
	DemoClientID     = "edgeauth-demo"
	DemoClientSecret = "edgeauth-demo-secret"
	// DemoMFACode is the second factor of every demo user.
	DemoMFACode = "123456"
)

// DemoUsers returns the demo accounts: alice (password "alice-password",
// groups staff and admins) and bob (password "bob-password", group
// contractors), both with MFA code DemoMFACode.
func DemoUsers() []User {
	return []User{
		{Subject: "u-alice", Username: "alice", Password: "alice-password", Email: "alice@example.com",
			Name: "Alice Example", Groups: []string{"staff", "admins"}, MFACode: DemoMFACode},
		{Subject: "u-bob", Username: "bob", Password: "bob-password", Email: "bob@example.com",
			Name: "Bob Example", Groups: []string{"contractors"}, MFACode: DemoMFACode},
	}
}

// Stats counts requests that reached the provider; tests use them to prove
// that the relying party single-flights its refreshes.
type Stats struct {
	CodeExchanges   int64
	RefreshRequests int64
	Logins          int64
}

// Provider is a running development OIDC provider; it is an http.Handler.
type Provider struct {
	issuer  string
	store   *storage
	handler http.Handler
	client  *http.Client
	log     *slog.Logger
}

// New builds a provider. It does not listen; serve it with net/http or use
// Run.
func New(opts Options) (*Provider, error) {
	iss, err := url.Parse(opts.Issuer)
	if err != nil || (iss.Scheme != "http" && iss.Scheme != "https") || iss.Host == "" {
		return nil, fmt.Errorf("devidp: issuer %q must be an absolute http(s) URL", opts.Issuer)
	}
	if strings.TrimSuffix(iss.Path, "/") != "" || iss.RawQuery != "" || iss.Fragment != "" {
		return nil, fmt.Errorf("devidp: issuer %q must not have a path, query or fragment", opts.Issuer)
	}
	issuer := strings.TrimSuffix(opts.Issuer, "/")
	if opts.Users == nil {
		opts.Users = DemoUsers()
	}
	if opts.TokenLifetime <= 0 {
		opts.TokenLifetime = 5 * time.Minute
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("devidp: generate signing key: %w", err)
	}
	st, err := newStorage(opts, key)
	if err != nil {
		return nil, err
	}
	var cryptoKey [32]byte
	if _, err := rand.Read(cryptoKey[:]); err != nil {
		return nil, fmt.Errorf("devidp: generate token key: %w", err)
	}
	cfg := &op.Config{
		CryptoKey:                         cryptoKey,
		CryptoKeyId:                       "devidp",
		DefaultLogoutRedirectURI:          "/logged-out",
		CodeMethodS256:                    true,
		AuthMethodPost:                    true,
		GrantTypeRefreshToken:             true,
		BackChannelLogoutSupported:        true,
		BackChannelLogoutSessionSupported: true,
		SupportedClaims: []string{"sub", "aud", "exp", "iat", "iss", "auth_time", "nonce", "acr", "amr",
			"azp", "at_hash", "sid", "email", "email_verified", "name", "preferred_username", "groups"},
	}
	// WithAllowInsecure: the op package refuses http issuers otherwise; we
	// run on plain http on 127.0.0.1.
	provider, err := op.NewProvider(cfg, st, op.StaticIssuer(issuer), op.WithAllowInsecure())
	if err != nil {
		return nil, fmt.Errorf("devidp: build provider: %w", err)
	}
	p := &Provider{issuer: issuer, store: st, client: opts.HTTPClient, log: opts.Logger}
	lg := &login{store: st, callback: op.AuthCallbackURL(provider)}
	interceptor := op.NewIssuerInterceptor(provider.IssuerFromRequest)
	mux := http.NewServeMux()
	mux.Handle("/login", interceptor.HandlerFunc(lg.serveHTTP))
	mux.HandleFunc("/logged-out", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, `<!doctype html><title>Signed out</title><p>You are signed out of the development provider.</p>`)
	})
	mux.Handle("/", provider)
	p.handler = mux
	return p, nil
}

// ServeHTTP serves every endpoint of the provider.
func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.handler.ServeHTTP(w, r) }

// Issuer returns the issuer URL.
func (p *Provider) Issuer() string { return p.issuer }

// Stats returns the request counters.
func (p *Provider) Stats() Stats {
	return Stats{
		CodeExchanges:   p.store.codeExchanges.Load(),
		RefreshRequests: p.store.refreshRequests.Load(),
		Logins:          p.store.logins.Load(),
	}
}

// backChannelLogoutEvent is the events member of a logout token
// (OIDC Back-Channel Logout 1.0 §2.4).
const backChannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// LogoutUser ends every provider session of subject and POSTs a signed
// logout token (with sub and sid) to the back-channel logout URI of each
// client the user signed in to. It returns the joined delivery errors; a
// client answering anything but 200/204 is an error.
func (p *Provider) LogoutUser(ctx context.Context, subject string) error {
	sessions := p.store.endSessions(subject)
	var errs []error
	now := time.Now()
	for _, s := range sessions {
		c, ok := p.store.clients[s.clientID]
		if !ok || c.BackChannelLogoutURI == "" {
			continue
		}
		tok, err := p.SignLogoutToken(map[string]any{
			"iss":    p.issuer,
			"sub":    s.subject,
			"sid":    s.sid,
			"aud":    s.clientID,
			"iat":    now.Unix(),
			"exp":    now.Add(2 * time.Minute).Unix(),
			"jti":    randomID(),
			"events": map[string]any{backChannelLogoutEvent: map[string]any{}},
		})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := p.postLogoutToken(ctx, c.BackChannelLogoutURI, tok); err != nil {
			errs = append(errs, fmt.Errorf("devidp: back-channel logout to client %q: %w", c.ID, err))
		}
	}
	return errors.Join(errs...)
}

// PostLogoutToken delivers a raw logout token to uri as OIDC Back-Channel
// Logout 1.0 §2.5 prescribes. Tests use it with tokens from SignClaims.
func (p *Provider) PostLogoutToken(ctx context.Context, uri, token string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, uri,
		strings.NewReader(url.Values{"logout_token": {token}}.Encode()))
	if err != nil {
		return 0, fmt.Errorf("devidp: logout request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("devidp: post logout token: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, nil
}

func (p *Provider) postLogoutToken(ctx context.Context, uri, token string) error {
	code, err := p.PostLogoutToken(ctx, uri, token)
	if err != nil {
		return err
	}
	if code != http.StatusOK && code != http.StatusNoContent {
		return fmt.Errorf("status %d", code)
	}
	return nil
}

// SignLogoutToken signs claims with the provider's current key and the
// header typ "logout+jwt".
func (p *Provider) SignLogoutToken(claims map[string]any) (string, error) {
	return p.SignClaims(claims, "logout+jwt")
}

// SignClaims is a test hook: it signs arbitrary claims (with JWS header typ,
// omitted when "") using the provider's signing key, so tests can forge
// tokens that verify against the published JWKS but break other rules.
func (p *Provider) SignClaims(claims map[string]any, typ string) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("devidp: marshal claims: %w", err)
	}
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	k := p.store.key
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.algorithm,
		Key: jose.JSONWebKey{Key: k.key, KeyID: k.id}}, opts)
	if err != nil {
		return "", fmt.Errorf("devidp: signer: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("devidp: sign: %w", err)
	}
	return jws.CompactSerialize()
}

// Run listens on listenAddr (use 127.0.0.1:PORT) and serves a provider
// until ctx is cancelled. An empty opts.Issuer becomes http://<bound addr>,
// so listenAddr may use port 0 only when the caller does not need to know
// the issuer in advance; use Serve with your own listener otherwise.
func Run(ctx context.Context, listenAddr string, opts Options) error {
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return fmt.Errorf("devidp: listen: %w", err)
	}
	if opts.Issuer == "" {
		opts.Issuer = "http://" + ln.Addr().String()
	}
	p, err := New(opts)
	if err != nil {
		ln.Close()
		return err
	}
	return Serve(ctx, ln, p)
}

// Serve serves p on ln until ctx is cancelled, then shuts down gracefully
// (5s bound). It closes ln.
func Serve(ctx context.Context, ln net.Listener, p *Provider) error {
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = srv.Shutdown(sctx)
			cancel()
		case <-done:
		}
	}()
	err := srv.Serve(ln)
	close(done)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("devidp: serve: %w", err)
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func keyID(k *rsa.PrivateKey) string {
	h := sha256.Sum256(k.PublicKey.N.Bytes())
	return hex.EncodeToString(h[:8])
}
