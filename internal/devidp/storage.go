package devidp

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// storage is the in-memory op.Storage. One mutex guards every map: this is a
// development provider and clarity beats throughput.
type storage struct {
	key           signingKey
	clients       map[string]Client
	users         map[string]User // by subject
	byName        map[string]string
	tokenLifetime time.Duration

	mu       sync.Mutex
	requests map[string]*authRequest
	codes    map[string]string // code → auth request id
	tokens   map[string]*accessToken
	refresh  map[string]*refreshToken
	sessions map[string]*idpSession // sid → session

	codeExchanges   atomic.Int64
	refreshRequests atomic.Int64
	logins          atomic.Int64
}

type idpSession struct {
	sid, subject, clientID string
}

type signingKey struct {
	id        string
	algorithm jose.SignatureAlgorithm
	key       *rsa.PrivateKey
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return k.algorithm }
func (k *signingKey) Key() any                                    { return k.key }
func (k *signingKey) ID() string                                  { return k.id }

type publicKey struct{ k *signingKey }

func (p publicKey) ID() string                         { return p.k.id }
func (p publicKey) Algorithm() jose.SignatureAlgorithm { return p.k.algorithm }
func (p publicKey) Use() string                        { return "sig" }
func (p publicKey) Key() any                           { return &p.k.key.PublicKey }

var (
	_ op.Storage                   = (*storage)(nil)
	_ op.CanSetUserinfoFromRequest = (*storage)(nil)
)

func newStorage(opts Options, key *rsa.PrivateKey) (*storage, error) {
	s := &storage{
		key:           signingKey{id: keyID(key), algorithm: jose.RS256, key: key},
		clients:       make(map[string]Client, len(opts.Clients)),
		users:         make(map[string]User, len(opts.Users)),
		byName:        make(map[string]string, len(opts.Users)),
		tokenLifetime: opts.TokenLifetime,
		requests:      make(map[string]*authRequest),
		codes:         make(map[string]string),
		tokens:        make(map[string]*accessToken),
		refresh:       make(map[string]*refreshToken),
		sessions:      make(map[string]*idpSession),
	}
	for _, c := range opts.Clients {
		if c.ID == "" || c.Secret == "" || len(c.RedirectURIs) == 0 {
			return nil, fmt.Errorf("devidp: client %q needs an id, a secret and redirect URIs", c.ID)
		}
		s.clients[c.ID] = c
	}
	for _, u := range opts.Users {
		if u.Subject == "" || u.Username == "" || u.Password == "" {
			return nil, fmt.Errorf("devidp: user %q needs a subject, a username and a password", u.Username)
		}
		s.users[u.Subject] = u
		s.byName[u.Username] = u.Subject
	}
	return s, nil
}

// authRequest is one authorization request and, once the login form was
// submitted, its authentication result.
type authRequest struct {
	id            string
	clientID      string
	redirectURI   string
	state         string
	nonce         string
	scopes        []string
	responseType  oidc.ResponseType
	responseMode  oidc.ResponseMode
	codeChallenge *oidc.CodeChallenge
	acrValues     []string
	reauth        bool // prompt=login or max_age given: a fresh login is demanded

	done     bool
	subject  string
	authTime time.Time
	acr      string
	amr      []string
	sid      string
}

func (a *authRequest) GetID() string                         { return a.id }
func (a *authRequest) GetACR() string                        { return a.acr }
func (a *authRequest) GetAMR() []string                      { return a.amr }
func (a *authRequest) GetAudience() []string                 { return []string{a.clientID} }
func (a *authRequest) GetAuthTime() time.Time                { return a.authTime }
func (a *authRequest) GetClientID() string                   { return a.clientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return a.codeChallenge }
func (a *authRequest) GetNonce() string                      { return a.nonce }
func (a *authRequest) GetRedirectURI() string                { return a.redirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType    { return a.responseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode    { return a.responseMode }
func (a *authRequest) GetScopes() []string                   { return a.scopes }
func (a *authRequest) GetState() string                      { return a.state }
func (a *authRequest) GetSubject() string                    { return a.subject }
func (a *authRequest) Done() bool                            { return a.done }

// wantsMFA reports whether the login form should ask for the second factor.
func (a *authRequest) wantsMFA() bool {
	return a.reauth || slices.Contains(a.acrValues, "mfa")
}

type accessToken struct {
	id, subject, clientID, sid string
	scopes                     []string
	expires                    time.Time
}

// refreshToken is the grant behind a refresh token; acr/amr/auth_time stay
// those of the original authentication (RFC 9470 §6.1).
type refreshToken struct {
	token, subject, clientID, sid string
	scopes, amr                   []string
	authTime                      time.Time
	expires                       time.Time
}

func (r *refreshToken) GetAMR() []string             { return r.amr }
func (r *refreshToken) GetAudience() []string        { return []string{r.clientID} }
func (r *refreshToken) GetAuthTime() time.Time       { return r.authTime }
func (r *refreshToken) GetClientID() string          { return r.clientID }
func (r *refreshToken) GetScopes() []string          { return r.scopes }
func (r *refreshToken) GetSubject() string           { return r.subject }
func (r *refreshToken) SetCurrentScopes(sc []string) { r.scopes = sc }

// checkLogin authenticates the login form for auth request id. mfa is the
// submitted code, "" when none was given.
func (s *storage) checkLogin(id, username, password, mfa string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	req, ok := s.requests[id]
	if !ok {
		return errUnknownRequest
	}
	sub, ok := s.byName[username]
	u := s.users[sub]
	if !ok || !constantEqual(u.Password, password) {
		return errBadCredentials
	}
	acr, amr := "pwd", []string{"pwd"}
	if mfa != "" {
		if u.MFACode == "" || !constantEqual(u.MFACode, mfa) {
			return errBadMFA
		}
		acr, amr = "mfa", []string{"pwd", "otp"}
	}
	req.subject = sub
	req.authTime = time.Now()
	req.acr, req.amr = acr, amr
	req.sid = randomID()
	req.done = true
	s.sessions[req.sid] = &idpSession{sid: req.sid, subject: sub, clientID: req.clientID}
	s.logins.Add(1)
	return nil
}

var (
	errUnknownRequest = errors.New("unknown or expired login request")
	errBadCredentials = errors.New("invalid username or password")
	errBadMFA         = errors.New("invalid MFA code")
)

func (s *storage) request(id string) (*authRequest, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.requests[id]
	return r, ok
}

// endSessions removes every provider session and refresh token of subject
// and returns the removed sessions.
func (s *storage) endSessions(subject string) []idpSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []idpSession
	for sid, sess := range s.sessions {
		if sess.subject == subject {
			out = append(out, *sess)
			delete(s.sessions, sid)
		}
	}
	for k, rt := range s.refresh {
		if rt.subject == subject {
			delete(s.refresh, k)
		}
	}
	return out
}

func (s *storage) CreateAuthRequest(_ context.Context, r *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	if slices.Contains([]string(r.Prompt), oidc.PromptNone) {
		// There is no provider-side SSO session to reuse: the login form
		// is always shown, so prompt=none can never succeed.
		return nil, oidc.ErrLoginRequired()
	}
	req := &authRequest{
		id:           randomID(),
		clientID:     r.ClientID,
		redirectURI:  r.RedirectURI,
		state:        r.State,
		nonce:        r.Nonce,
		scopes:       r.Scopes,
		responseType: r.ResponseType,
		responseMode: r.ResponseMode,
		acrValues:    r.ACRValues,
		reauth:       slices.Contains([]string(r.Prompt), oidc.PromptLogin) || r.MaxAge != nil,
	}
	if r.CodeChallenge != "" {
		req.codeChallenge = &oidc.CodeChallenge{Challenge: r.CodeChallenge, Method: r.CodeChallengeMethod}
	}
	s.mu.Lock()
	s.requests[req.id] = req
	s.mu.Unlock()
	return req, nil
}

func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	if r, ok := s.request(id); ok {
		return r, nil
	}
	return nil, errUnknownRequest
}

func (s *storage) AuthRequestByCode(_ context.Context, code string) (op.AuthRequest, error) {
	s.codeExchanges.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.codes[code]
	if !ok {
		return nil, errors.New("code invalid or already used")
	}
	r, ok := s.requests[id]
	if !ok {
		return nil, errUnknownRequest
	}
	return r, nil
}

func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code] = id
	return nil
}

// DeleteAuthRequest runs after the code was exchanged: removing the code
// makes a replayed code fail (RFC 6749 §4.1.2).
func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.requests, id)
	for code, rid := range s.codes {
		if rid == id {
			delete(s.codes, code)
		}
	}
	return nil
}

func (s *storage) newAccessToken(subject, clientID, sid string, scopes []string) *accessToken {
	t := &accessToken{id: randomID(), subject: subject, clientID: clientID, sid: sid, scopes: scopes,
		expires: time.Now().Add(s.tokenLifetime)}
	s.mu.Lock()
	s.tokens[t.id] = t
	s.mu.Unlock()
	return t
}

func (s *storage) CreateAccessToken(_ context.Context, req op.TokenRequest) (string, time.Time, error) {
	var clientID, sid string
	switch r := req.(type) {
	case *authRequest:
		clientID, sid = r.clientID, r.sid
	case *refreshToken:
		clientID, sid = r.clientID, r.sid
	}
	t := s.newAccessToken(req.GetSubject(), clientID, sid, req.GetScopes())
	return t.id, t.expires, nil
}

// CreateAccessAndRefreshTokens issues a refresh token on code exchange and
// rotates it on refresh: the presented token is deleted, so reusing it fails.
func (s *storage) CreateAccessAndRefreshTokens(_ context.Context, req op.TokenRequest, current string) (string, string, time.Time, error) {
	var grant refreshToken
	switch r := req.(type) {
	case *authRequest:
		grant = refreshToken{subject: r.subject, clientID: r.clientID, sid: r.sid, scopes: r.scopes,
			amr: r.amr, authTime: r.authTime}
	case *refreshToken:
		grant = *r
	default:
		return "", "", time.Time{}, fmt.Errorf("devidp: unsupported token request %T", req)
	}
	if current != "" {
		s.mu.Lock()
		_, ok := s.refresh[current]
		delete(s.refresh, current)
		s.mu.Unlock()
		if !ok {
			return "", "", time.Time{}, op.ErrInvalidRefreshToken
		}
	}
	t := s.newAccessToken(grant.subject, grant.clientID, grant.sid, grant.scopes)
	grant.token = randomID() + randomID()
	grant.expires = time.Now().Add(12 * time.Hour)
	s.mu.Lock()
	s.refresh[grant.token] = &grant
	s.mu.Unlock()
	return t.id, grant.token, t.expires, nil
}

func (s *storage) TokenRequestByRefreshToken(_ context.Context, token string) (op.RefreshTokenRequest, error) {
	s.refreshRequests.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refresh[token]
	if !ok || time.Now().After(rt.expires) {
		return nil, op.ErrInvalidRefreshToken
	}
	c := *rt
	return &c, nil
}

func (s *storage) TerminateSession(_ context.Context, userID, clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sid, sess := range s.sessions {
		if sess.subject == userID && sess.clientID == clientID {
			delete(s.sessions, sid)
		}
	}
	for k, rt := range s.refresh {
		if rt.subject == userID && rt.clientID == clientID {
			delete(s.refresh, k)
		}
	}
	return nil
}

func (s *storage) RevokeToken(_ context.Context, tokenOrID, _, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.tokens[tokenOrID]; ok && t.clientID == clientID {
		delete(s.tokens, tokenOrID)
	}
	if rt, ok := s.refresh[tokenOrID]; ok && rt.clientID == clientID {
		delete(s.refresh, tokenOrID)
	}
	return nil
}

func (s *storage) GetRefreshTokenInfo(_ context.Context, _ string, token string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refresh[token]
	if !ok {
		return "", "", op.ErrInvalidRefreshToken
	}
	return rt.subject, rt.token, nil
}

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) { return &s.key, nil }

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{s.key.algorithm}, nil
}

func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{publicKey{&s.key}}, nil
}

func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	c, ok := s.clients[id]
	if !ok {
		return nil, errors.New("client not found")
	}
	return &opClient{c: c, lifetime: s.tokenLifetime}, nil
}

func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	c, ok := s.clients[id]
	if !ok || !constantEqual(c.Secret, secret) {
		return errors.New("invalid client credentials")
	}
	return nil
}

// SetUserinfoFromScopes is deprecated by the op package; the work happens in
// SetUserinfoFromRequest.
func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

func (s *storage) SetUserinfoFromRequest(_ context.Context, ui *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	var sid string
	switch r := req.(type) {
	case *authRequest:
		sid = r.sid
	case *refreshToken:
		sid = r.sid
	}
	if err := s.setUserinfo(ui, req.GetSubject(), scopes); err != nil {
		return err
	}
	if sid != "" {
		ui.AppendClaims("sid", sid)
	}
	return nil
}

func (s *storage) SetUserinfoFromToken(_ context.Context, ui *oidc.UserInfo, tokenID, _, _ string) error {
	s.mu.Lock()
	t, ok := s.tokens[tokenID]
	s.mu.Unlock()
	if !ok || time.Now().After(t.expires) {
		return errors.New("token invalid or expired")
	}
	return s.setUserinfo(ui, t.subject, t.scopes)
}

func (s *storage) setUserinfo(ui *oidc.UserInfo, subject string, scopes []string) error {
	u, ok := s.users[subject]
	if !ok {
		return errors.New("user not found")
	}
	ui.Subject = u.Subject
	for _, sc := range scopes {
		switch sc {
		case oidc.ScopeEmail:
			ui.Email = u.Email
			ui.EmailVerified = true
		case oidc.ScopeProfile:
			ui.Name = u.Name
			ui.PreferredUsername = u.Username
		case "groups":
			ui.AppendClaims("groups", append([]string{}, u.Groups...))
		}
	}
	return nil
}

func (s *storage) SetIntrospectionFromToken(_ context.Context, ir *oidc.IntrospectionResponse, tokenID, _, clientID string) error {
	s.mu.Lock()
	t, ok := s.tokens[tokenID]
	s.mu.Unlock()
	if !ok || time.Now().After(t.expires) || t.clientID != clientID {
		return errors.New("token invalid")
	}
	ui := new(oidc.UserInfo)
	if err := s.setUserinfo(ui, t.subject, t.scopes); err != nil {
		return err
	}
	ir.SetUserInfo(ui)
	ir.Scope = t.scopes
	ir.ClientID = t.clientID
	ir.Expiration = oidc.FromTime(t.expires)
	return nil
}

func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("devidp: JWT profile grant not supported")
}

func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("devidp: JWT profile grant not supported")
}

func (s *storage) Health(context.Context) error { return nil }

// opClient adapts Client to op.Client: a confidential web client using the
// code flow with refresh tokens, whose ID tokens carry the userinfo claims
// (email, groups) so the relying party needs no userinfo call.
type opClient struct {
	c        Client
	lifetime time.Duration
}

func (o *opClient) GetID() string                       { return o.c.ID }
func (o *opClient) RedirectURIs() []string              { return o.c.RedirectURIs }
func (o *opClient) PostLogoutRedirectURIs() []string    { return o.c.PostLogoutRedirectURIs }
func (o *opClient) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (o *opClient) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethodBasic }
func (o *opClient) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (o *opClient) LoginURL(id string) string            { return "/login?id=" + id }
func (o *opClient) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeBearer }
func (o *opClient) IDTokenLifetime() time.Duration       { return o.lifetime }
func (o *opClient) DevMode() bool                        { return false }
func (o *opClient) IsScopeAllowed(scope string) bool     { return scope == "groups" }
func (o *opClient) IDTokenUserinfoClaimsAssertion() bool { return true }
func (o *opClient) ClockSkew() time.Duration             { return 0 }
func (o *opClient) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken}
}
func (o *opClient) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (o *opClient) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
