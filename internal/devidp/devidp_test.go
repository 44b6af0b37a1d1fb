package devidp

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"
)

const testRedirect = "http://127.0.0.1:1/cb" // never dialled: the test stops at the redirect

// startProvider runs a provider on a real loopback listener.
func startProvider(t *testing.T, opts Options) *Provider {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts.Issuer = "http://" + ln.Addr().String()
	if opts.Clients == nil {
		opts.Clients = []Client{{ID: "rp", Secret: "s3cret", RedirectURIs: []string{testRedirect}}}
	}
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, p) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return p
}

func TestDiscovery(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Options{})
	resp, err := http.Get(p.Issuer() + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Issuer                   string   `json:"issuer"`
		JWKS                     string   `json:"jwks_uri"`
		EndSession               string   `json:"end_session_endpoint"`
		CodeChallengeMethods     []string `json:"code_challenge_methods_supported"`
		BackchannelLogout        bool     `json:"backchannel_logout_supported"`
		BackchannelLogoutSession bool     `json:"backchannel_logout_session_supported"`
		GrantTypes               []string `json:"grant_types_supported"`
		IDTokenSigningAlgs       []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if doc.Issuer != p.Issuer() || doc.JWKS == "" || doc.EndSession == "" {
		t.Fatalf("discovery = %+v", doc)
	}
	if diff := cmp.Diff([]string{"S256"}, doc.CodeChallengeMethods); diff != "" {
		t.Errorf("code_challenge_methods (-want +got):\n%s", diff)
	}
	if !doc.BackchannelLogout || !doc.BackchannelLogoutSession {
		t.Errorf("back-channel logout not advertised: %+v", doc)
	}
	if diff := cmp.Diff([]string{"RS256"}, doc.IDTokenSigningAlgs); diff != "" {
		t.Errorf("algs (-want +got):\n%s", diff)
	}
}

var hiddenID = regexp.MustCompile(`name="id" value="([^"]+)"`)

// login drives the browser part of the code flow with a real HTTP client:
// authorize → login form → POST → redirect carrying the code. It returns the
// redirect URL the provider sent the browser to.
func browserLogin(t *testing.T, authURL, user, pass, mfa string, wantMFAField bool) *url.URL {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), testRedirect) {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	resp, err := c.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := hiddenID.FindSubmatch(body)
	if resp.StatusCode != 200 || m == nil {
		t.Fatalf("login page: status %d body %s", resp.StatusCode, body)
	}
	if got := strings.Contains(string(body), `name="mfa"`); got != wantMFAField {
		t.Fatalf("MFA field shown = %v, want %v", got, wantMFAField)
	}
	form := url.Values{"id": {string(m[1])}, "username": {user}, "password": {pass}}
	if mfa != "" {
		form.Set("mfa", mfa)
	}
	resp, err = c.PostForm(resp.Request.URL.Scheme+"://"+resp.Request.URL.Host+"/login", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("after login: status %d", resp.StatusCode)
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestCodeFlow(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Options{})
	ctx := context.Background()
	prov, err := oidc.NewProvider(ctx, p.Issuer())
	if err != nil {
		t.Fatal(err)
	}
	conf := oauth2.Config{ClientID: "rp", ClientSecret: "s3cret", Endpoint: prov.Endpoint(),
		RedirectURL: testRedirect, Scopes: []string{oidc.ScopeOpenID, "email", "profile", "groups", oidc.ScopeOfflineAccess}}
	verifier := prov.Verifier(&oidc.Config{ClientID: "rp"})

	tests := []struct {
		name      string
		user      string
		pass      string
		mfa       string
		opts      []oauth2.AuthCodeOption
		wantMFA   bool
		wantACR   string
		wantAMR   []string
		wantGroup []string
	}{
		{name: "password", user: "alice", pass: "alice-password", wantACR: "pwd", wantAMR: []string{"pwd"},
			wantGroup: []string{"staff", "admins"}},
		{name: "mfa requested and given", user: "alice", pass: "alice-password", mfa: DemoMFACode,
			opts: []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("acr_values", "mfa")}, wantMFA: true,
			wantACR: "mfa", wantAMR: []string{"pwd", "otp"}, wantGroup: []string{"staff", "admins"}},
		{name: "prompt login shows mfa, not given", user: "bob", pass: "bob-password",
			opts:    []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("prompt", "login")},
			wantMFA: true, wantACR: "pwd", wantAMR: []string{"pwd"}, wantGroup: []string{"contractors"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pkce := oauth2.GenerateVerifier()
			state, nonce := "st-"+tc.name, "n-"+tc.name
			opts := append([]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(pkce), oidc.Nonce(nonce)}, tc.opts...)
			loc := browserLogin(t, conf.AuthCodeURL(state, opts...), tc.user, tc.pass, tc.mfa, tc.wantMFA)
			if got := loc.Query().Get("state"); got != state {
				t.Fatalf("state = %q", got)
			}
			code := loc.Query().Get("code")
			// Without the verifier the code must not redeem (PKCE).
			if _, err := conf.Exchange(ctx, code); err == nil {
				t.Fatal("exchange without code_verifier succeeded")
			}
			tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(pkce))
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			raw, _ := tok.Extra("id_token").(string)
			idt, err := verifier.Verify(ctx, raw)
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
				t.Errorf("at_hash: %v", err)
			}
			var cl struct {
				Nonce    string   `json:"nonce"`
				ACR      string   `json:"acr"`
				AMR      []string `json:"amr"`
				AuthTime int64    `json:"auth_time"`
				SID      string   `json:"sid"`
				Email    string   `json:"email"`
				Groups   []string `json:"groups"`
			}
			if err := idt.Claims(&cl); err != nil {
				t.Fatal(err)
			}
			if cl.Nonce != nonce || cl.ACR != tc.wantACR || cl.SID == "" || cl.Email == "" ||
				time.Since(time.Unix(cl.AuthTime, 0)) > time.Minute {
				t.Errorf("claims = %+v", cl)
			}
			if diff := cmp.Diff(tc.wantAMR, cl.AMR); diff != "" {
				t.Errorf("amr (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantGroup, cl.Groups); diff != "" {
				t.Errorf("groups (-want +got):\n%s", diff)
			}
			// Code replay fails (RFC 6749 §4.1.2).
			if _, err := conf.Exchange(ctx, code, oauth2.VerifierOption(pkce)); err == nil {
				t.Error("code replay succeeded")
			}
			// Refresh rotates: the new token works, the old one no longer does.
			if tok.RefreshToken == "" {
				t.Fatal("no refresh token")
			}
			old := tok.RefreshToken
			tok.Expiry = time.Now().Add(-time.Minute)
			nt, err := conf.TokenSource(ctx, tok).Token()
			if err != nil {
				t.Fatalf("refresh: %v", err)
			}
			if nt.RefreshToken == "" || nt.RefreshToken == old {
				t.Errorf("refresh token not rotated")
			}
			if _, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: old}).Token(); err == nil {
				t.Error("rotated-out refresh token still works")
			}
			// userinfo answers for the new access token.
			ui, err := prov.UserInfo(ctx, oauth2.StaticTokenSource(nt))
			if err != nil || ui.Email != cl.Email {
				t.Errorf("userinfo = %+v, %v", ui, err)
			}
		})
	}
	if s := p.Stats(); s.RefreshRequests < 3 || s.Logins != 3 {
		t.Errorf("stats = %+v", s)
	}
}

func TestLoginRejectsBadCredentials(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Options{})
	prov, err := oidc.NewProvider(context.Background(), p.Issuer())
	if err != nil {
		t.Fatal(err)
	}
	conf := oauth2.Config{ClientID: "rp", ClientSecret: "s3cret", Endpoint: prov.Endpoint(),
		RedirectURL: testRedirect, Scopes: []string{oidc.ScopeOpenID}}
	for _, tc := range []struct{ name, user, pass, mfa string }{
		{"wrong password", "alice", "nope", ""},
		{"unknown user", "mallory", "alice-password", ""},
		{"wrong mfa", "alice", "alice-password", "000000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Get(conf.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			m := hiddenID.FindSubmatch(body)
			if m == nil {
				t.Fatalf("no form: %s", body)
			}
			resp, err = http.PostForm(p.Issuer()+"/login", url.Values{"id": {string(m[1])},
				"username": {tc.user}, "password": {tc.pass}, "mfa": {tc.mfa}})
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("status = %d, want 401", resp.StatusCode)
			}
		})
	}
}

func TestBackChannelLogoutDelivery(t *testing.T) {
	t.Parallel()
	got := make(chan string, 1)
	rp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.PostFormValue("logout_token")
	}))
	defer rp.Close()
	p := startProvider(t, Options{Clients: []Client{{ID: "rp", Secret: "s3cret",
		RedirectURIs: []string{testRedirect}, BackChannelLogoutURI: rp.URL}}})
	ctx := context.Background()
	prov, err := oidc.NewProvider(ctx, p.Issuer())
	if err != nil {
		t.Fatal(err)
	}
	conf := oauth2.Config{ClientID: "rp", ClientSecret: "s3cret", Endpoint: prov.Endpoint(),
		RedirectURL: testRedirect, Scopes: []string{oidc.ScopeOpenID}}
	loc := browserLogin(t, conf.AuthCodeURL("s", oauth2.S256ChallengeOption("x"+strings.Repeat("a", 50))), "bob", "bob-password", "", false)
	if loc.Query().Get("code") == "" {
		t.Fatal("no code")
	}
	if err := p.LogoutUser(ctx, "u-bob"); err != nil {
		t.Fatal(err)
	}
	raw := <-got
	// The logout token verifies with the provider's published keys.
	tok, err := prov.Verifier(&oidc.Config{ClientID: "rp", SkipExpiryCheck: false}).Verify(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	var cl struct {
		SID    string                    `json:"sid"`
		Events map[string]map[string]any `json:"events"`
		JTI    string                    `json:"jti"`
		Nonce  *string                   `json:"nonce"`
	}
	if err := tok.Claims(&cl); err != nil {
		t.Fatal(err)
	}
	if tok.Subject != "u-bob" || cl.SID == "" || cl.JTI == "" || cl.Nonce != nil || cl.Events[backChannelLogoutEvent] == nil {
		t.Errorf("logout token claims = %+v sub=%q", cl, tok.Subject)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"no issuer", Options{}},
		{"issuer with path", Options{Issuer: "http://127.0.0.1:1/x"}},
		{"client without secret", Options{Issuer: "http://127.0.0.1:1", Clients: []Client{{ID: "a", RedirectURIs: []string{"http://x/cb"}}}}},
		{"user without password", Options{Issuer: "http://127.0.0.1:1", Users: []User{{Subject: "s", Username: "u"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.opts); err == nil {
				t.Error("New succeeded")
			}
		})
	}
}
