package sso

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"

	"github.com/edgeauth/edgeauth/internal/devidp"
)

func TestLoginReturnsToDeepLink(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	b := newBrowser(t)
	p := e.login(b, "/deep/link?x=1&y=two", "alice", "alice-password", "")
	want := "hello u-alice uri=/deep/link?x=1&y=two acr=pwd groups=staff,admins"
	if p.status != 200 || p.body != want {
		t.Fatalf("after login: %d %q, want %q", p.status, p.body, want)
	}
	if c := e.sessionCookie(b); c == "" || len(c)+len("edgeauth_session=") >= 200 {
		t.Errorf("session cookie %q: missing or not small", c)
	}
	// Reload keeps the session.
	if p := b.get(e.base + "/other"); p.body != "hello u-alice uri=/other acr=pwd groups=staff,admins" {
		t.Errorf("reload: %d %q", p.status, p.body)
	}
	// A second browser without cookies is sent to the provider.
	if p := newBrowser(t).get(e.base + "/x"); !strings.Contains(p.body, `name="username"`) {
		t.Errorf("cookie-less browser not sent to login: %d %q", p.status, p.body)
	}
}

func TestAPIClientGets401NotRedirect(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	for _, tc := range []struct {
		name, method, accept string
	}{
		{"json GET", http.MethodGet, "application/json"},
		{"POST html", http.MethodPost, "text/html"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, e.base+"/api", nil)
			req.Header.Set("Accept", tc.accept)
			resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Bearer realm="edgeauth"` {
				t.Errorf("got %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
}

func TestSeveralTabsLogInAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	b := newBrowser(t)
	// Three tabs start logins before any finishes.
	var pages []page
	for _, path := range []string{"/a", "/b", "/c"} {
		pages = append(pages, b.get(e.base+path))
	}
	for i, path := range []string{"/a", "/b", "/c"} {
		p := b.submitLogin(pages[i], "bob", "bob-password", "")
		if want := "hello u-bob uri=" + path + " acr=pwd groups=contractors"; p.body != want {
			t.Errorf("tab %s: %d %q", path, p.status, p.body)
		}
	}
}

// callbackURL runs a login up to the provider's redirect back to edgeauth
// and returns that callback URL without visiting it.
func (e *env) callbackURL(b *browser, target string) *url.URL {
	e.t.Helper()
	sb := b.stopAt(e.base + DefaultRedirectPath)
	p := sb.submitLogin(sb.get(e.base+target), "alice", "alice-password", "")
	if p.status != http.StatusFound {
		e.t.Fatalf("expected redirect to callback, got %d %s", p.status, p.body)
	}
	u, err := url.Parse(p.header.Get("Location"))
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

func TestCallbackRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// mutate gets the callback URL and the browser; it returns the URL
		// to visit and the browser to visit it with.
		mutate     func(e *env, u *url.URL, b *browser) (string, *browser)
		wantStatus int
		wantReason string
	}{
		{"missing state", func(e *env, u *url.URL, b *browser) (string, *browser) {
			q := u.Query()
			q.Del("state")
			u.RawQuery = q.Encode()
			return u.String(), b
		}, 400, "login_state_invalid"},
		{"state from another browser (login CSRF)", func(e *env, u *url.URL, _ *browser) (string, *browser) {
			return u.String(), newBrowser(e.t)
		}, 400, "login_state_invalid"},
		{"tampered pre-auth cookie", func(e *env, u *url.URL, b *browser) (string, *browser) {
			base, _ := url.Parse(e.base)
			for _, c := range b.c.Jar.Cookies(base) {
				if strings.HasPrefix(c.Name, "edgeauth_txn_") {
					c.Value = strings.Replace(c.Value, ".", "x.", 1)
					c.Path = "/"
					b.c.Jar.SetCookies(base, []*http.Cookie{c})
				}
			}
			return u.String(), b
		}, 400, "login_state_invalid"},
		{"foreign cookie signed with another key", func(e *env, u *url.URL, b *browser) (string, *browser) {
			base, _ := url.Parse(e.base)
			other := newKeyring([][]byte{[]byte("another-key-another-key-another-key!!")}, "txn")
			state := u.Query().Get("state")
			b.c.Jar.SetCookies(base, []*http.Cookie{{Name: "edgeauth_txn_" + txnCookieSuffix(state),
				Value: other.txnCookieValue(state, time.Now()), Path: "/"}})
			return u.String(), b
		}, 400, "login_state_invalid"},
		{"expired transaction", func(e *env, u *url.URL, b *browser) (string, *browser) {
			e.clock.Advance(txnTTL + time.Minute)
			return u.String(), b
		}, 400, "login_expired"},
		{"nonce mismatch", func(e *env, u *url.URL, b *browser) (string, *browser) {
			// The ID token will carry the nonce we sent; swap the one we
			// expect, as if the code had been injected from another
			// transaction (RFC 9700 §4.5).
			key := txnStoreKey(u.Query().Get("state"))
			raw, err := e.store.GetBlob(context.Background(), key)
			if err != nil {
				e.t.Fatal(err)
			}
			txn, _ := unmarshalTxn(raw)
			txn.Nonce = randomToken()
			nb, _ := txn.marshal()
			if err := e.store.PutBlob(context.Background(), key, nb, txnTTL); err != nil {
				e.t.Fatal(err)
			}
			return u.String(), b
		}, 401, "id_token_invalid"},
		{"wrong iss parameter (mix-up)", func(e *env, u *url.URL, b *browser) (string, *browser) {
			q := u.Query()
			q.Set("iss", "https://evil.example")
			u.RawQuery = q.Encode()
			return u.String(), b
		}, 400, "login_state_invalid"},
		{"bad code", func(e *env, u *url.URL, b *browser) (string, *browser) {
			q := u.Query()
			q.Set("code", "forged")
			u.RawQuery = q.Encode()
			return u.String(), b
		}, 403, "provider_error"},
		{"provider error access_denied", func(e *env, u *url.URL, b *browser) (string, *browser) {
			q := u.Query()
			q.Del("code")
			q.Set("error", "access_denied")
			u.RawQuery = q.Encode()
			return u.String(), b
		}, 403, "access_denied"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOpts{})
			b := newBrowser(t)
			u := e.callbackURL(b, "/target")
			target, vb := tc.mutate(e, u, b)
			req, _ := http.NewRequest(http.MethodGet, target, nil)
			req.Header.Set("X-Request-Id", "req-123")
			p := vb.stopAt("never").do(req)
			if p.status != tc.wantStatus || !strings.Contains(p.body, tc.wantReason) || !strings.Contains(p.body, "req-123") {
				t.Errorf("got %d %q, want %d with %q and the request id", p.status, p.body, tc.wantStatus, tc.wantReason)
			}
			if p.header.Get("Location") != "" || strings.Contains(p.body, "goroutine") {
				t.Errorf("callback failure must not redirect or leak traces: %v", p.header)
			}
			if e.sessionCookie(vb) != "" {
				t.Error("a session was created")
			}
		})
	}
}

// Replaying a callback URL (state and code) after a successful login must
// fail: the state is single-use and the code is redeemed once.
func TestCallbackReplay(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	b := newBrowser(t)
	u := e.callbackURL(b, "/first")
	if p := b.get(u.String()); p.body != "hello u-alice uri=/first acr=pwd groups=staff,admins" {
		t.Fatalf("first use: %d %q", p.status, p.body)
	}
	p := b.stopAt("never").get(u.String())
	if p.status != 400 || !strings.Contains(p.body, "login_state_invalid") {
		t.Errorf("replayed state: %d %q", p.status, p.body)
	}
	// Code replay with a fresh state of another browser: the provider
	// refuses the code a second time.
	b = newBrowser(t)
	u2 := e.callbackURL(b, "/second")
	q := u2.Query()
	q.Set("code", u.Query().Get("code"))
	u2.RawQuery = q.Encode()
	if p := b.stopAt("never").get(u2.String()); p.status != 403 || !strings.Contains(p.body, "provider_error") {
		t.Errorf("replayed code: %d %q", p.status, p.body)
	}
}

// Open redirect through return_to (RFC 9700 §4.11.1): a crafted first
// request path must land on "/" after login, never off-site.
func TestLoginOpenRedirectLandsOnRoot(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	for _, path := range []string{"//evil.com", "/\\evil.com", "//evil.com/%2F..", "/%2F%2Fevil.com", "/%5Cevil.com"} {
		b := newBrowser(t)
		loc := e.rawGet(b, path)
		p := b.submitLogin(b.get(loc), "alice", "alice-password", "")
		if p.url.Host != strings.TrimPrefix(e.base, "http://") || p.url.Path != "/" {
			t.Errorf("%q: landed on %s", path, p.url)
		}
	}
}

// rawGet sends path as the literal request-target (net/http would
// normalise it), stores the response cookies in b's jar and returns the
// Location it answered with.
func (e *env) rawGet(b *browser, path string) string {
	e.t.Helper()
	host := strings.TrimPrefix(e.base, "http://")
	conn, err := net.Dial("tcp", host)
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/html\r\nConnection: close\r\n\r\n", path, host)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		e.t.Fatalf("%q: status %d", path, resp.StatusCode)
	}
	u, _ := url.Parse(e.base)
	b.c.Jar.SetCookies(u, resp.Cookies())
	return resp.Header.Get("Location")
}

func TestProviderUnreachableAtStartThenUp(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{idpDown: true})
	b := newBrowser(t)
	p := b.get(e.base + "/x")
	if p.status != 503 || !strings.Contains(p.body, "sign_in_unavailable") {
		t.Fatalf("while provider down: %d %q", p.status, p.body)
	}
	e.idp.down.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.rp.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if p := e.login(b, "/x", "alice", "alice-password", ""); p.status != 200 {
		t.Fatalf("after provider came up: %d %q", p.status, p.body)
	}
}

func TestProviderGoesAwayMidFlight(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	b := newBrowser(t)
	if p := e.login(b, "/x", "alice", "alice-password", ""); p.status != 200 {
		t.Fatal(p.body)
	}
	e.idp.down.Store(true)
	// Existing session keeps working, even when a refresh is due and fails
	// for a transport reason.
	e.clock.Advance(4*time.Minute + 30*time.Second)
	if p := b.get(e.base + "/still"); p.status != 200 || !strings.Contains(p.body, "u-alice") {
		t.Errorf("existing session while provider down: %d %q", p.status, p.body)
	}
	// A new login is still sent to the provider (we cannot know it is down
	// until the browser tries); nothing breaks on our side.
	if p := newBrowser(t).stopAt(e.idp.Issuer()).get(e.base + "/new"); p.status != http.StatusFound {
		t.Errorf("new login while provider down: %d %q", p.status, p.body)
	}
}

func TestBackChannelLogout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	b := newBrowser(t)
	if p := e.login(b, "/x", "bob", "bob-password", ""); p.status != 200 {
		t.Fatal(p.body)
	}
	if err := e.idp.LogoutUser(context.Background(), "u-bob"); err != nil {
		t.Fatalf("valid logout token refused: %v", err)
	}
	if p := b.stopAt(e.idp.Issuer()).get(e.base + "/x"); p.status != http.StatusFound {
		t.Errorf("session still alive after back-channel logout: %d %q", p.status, p.body)
	}
}

func TestBackChannelLogoutTokenCases(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	now := time.Now()
	claims := func(mod func(map[string]any)) map[string]any {
		c := map[string]any{
			"iss": e.idp.Issuer(), "sub": "u-alice", "aud": "edgeauth", "iat": now.Unix(),
			"exp": now.Add(2 * time.Minute).Unix(), "jti": randomToken(),
			"events": map[string]any{backChannelEvent: map[string]any{}},
		}
		if mod != nil {
			mod(c)
		}
		return c
	}
	replayed := claims(nil)
	tests := []struct {
		name   string
		claims map[string]any
		typ    string
		want   int
	}{
		{"valid", claims(nil), "logout+jwt", 200},
		{"valid without typ", claims(nil), "", 200},
		{"valid sid only", claims(func(c map[string]any) { delete(c, "sub"); c["sid"] = "s1" }), "logout+jwt", 200},
		{"first use", replayed, "logout+jwt", 200},
		{"replayed jti", replayed, "logout+jwt", 400},
		{"wrong aud", claims(func(c map[string]any) { c["aud"] = "someone-else" }), "logout+jwt", 400},
		{"extra untrusted aud", claims(func(c map[string]any) { c["aud"] = []string{"edgeauth", "other"} }), "logout+jwt", 400},
		// A logout token must never double as an ID token (§2.4).
		{"with nonce", claims(func(c map[string]any) { c["nonce"] = "n" }), "logout+jwt", 400},
		{"missing events", claims(func(c map[string]any) { delete(c, "events") }), "logout+jwt", 400},
		{"events member not an object", claims(func(c map[string]any) {
			c["events"] = map[string]any{backChannelEvent: "x"}
		}), "logout+jwt", 400},
		{"neither sub nor sid", claims(func(c map[string]any) { delete(c, "sub") }), "logout+jwt", 400},
		{"no jti", claims(func(c map[string]any) { delete(c, "jti") }), "logout+jwt", 400},
		{"no iat", claims(func(c map[string]any) { delete(c, "iat") }), "logout+jwt", 400},
		{"expired", claims(func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() }), "logout+jwt", 400},
		{"wrong issuer", claims(func(c map[string]any) { c["iss"] = "http://evil" }), "logout+jwt", 400},
	}
	for _, tc := range tests { // sequential: "first use" must precede "replayed jti"
		tok, err := e.idp.SignClaims(tc.claims, tc.typ)
		if err != nil {
			t.Fatal(err)
		}
		code, err := e.idp.PostLogoutToken(context.Background(), e.base+BackChannelLogoutPath, tok)
		if err != nil || code != tc.want {
			t.Errorf("%s: status %d (%v), want %d", tc.name, code, err, tc.want)
		}
	}
	// Unsigned and garbage tokens.
	for _, raw := range []string{"not.a.jwt", "eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0."} {
		if code, _ := e.idp.PostLogoutToken(context.Background(), e.base+BackChannelLogoutPath, raw); code != 400 {
			t.Errorf("%q: status %d, want 400", raw, code)
		}
	}
}

func TestRefreshSingleFlight(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	b := newBrowser(t)
	if p := e.login(b, "/x", "alice", "alice-password", ""); p.status != 200 {
		t.Fatal(p.body)
	}
	before := e.idp.Stats().RefreshRequests
	// Tokens live 5 minutes; 4m30s later every request wants a refresh.
	e.clock.Advance(4*time.Minute + 30*time.Second)
	for burst := 0; burst < 2; burst++ {
		var wg sync.WaitGroup
		errs := make(chan string, 30)
		for i := 0; i < 30; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequest(http.MethodGet, e.base+"/asset", nil)
				resp, err := b.c.Do(req)
				if err != nil {
					errs <- err.Error()
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 200 || resp.Request.URL.Path != "/asset" {
					errs <- resp.Status + " " + resp.Request.URL.String()
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("burst %d: %s", burst, err)
		}
	}
	if got := e.idp.Stats().RefreshRequests - before; got != 1 {
		t.Errorf("refresh requests at the provider = %d, want 1", got)
	}
	// Rotation did not log the user out.
	if p := b.get(e.base + "/after"); p.status != 200 || !strings.Contains(p.body, "u-alice") {
		t.Errorf("after refresh: %d %q", p.status, p.body)
	}
}

func TestRefreshRefusedEndsSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	b := newBrowser(t)
	if p := e.login(b, "/x", "alice", "alice-password", ""); p.status != 200 {
		t.Fatal(p.body)
	}
	e.clock.Advance(4*time.Minute + 30*time.Second)
	// The provider no longer knows the refresh token (revoked there): swap
	// in one it never issued.
	id := e.sessionID(b)
	s, err := e.store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	c := s.Clone()
	c.RefreshToken = "revoked-or-unknown"
	if err := e.store.Put(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	p := b.stopAt(e.idp.Issuer()).get(e.base + "/y")
	if p.status != http.StatusFound {
		t.Errorf("refused refresh did not end the session: %d %q", p.status, p.body)
	}
	if _, err := e.store.Get(context.Background(), id); err == nil {
		t.Error("session still in the store")
	}
}

func (e *env) sessionID(b *browser) string {
	e.t.Helper()
	codec := e.rp.cookies.(*sessionCookies).codec
	id, ok := codec.Decode([]byte(e.sessionCookie(b)))
	if !ok {
		e.t.Fatal("no valid session cookie")
	}
	return id
}

func TestStepUp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		mfa        string
		wantStatus int
		wantBody   string
	}{
		{"mfa given", devidp.DemoMFACode, 200, "hello u-alice uri=/admin/panel acr=mfa groups=staff,admins"},
		{"acr not satisfied", "", 403, "step_up_failed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOpts{})
			b := newBrowser(t)
			if p := e.login(b, "/x", "alice", "alice-password", ""); p.status != 200 {
				t.Fatal(p.body)
			}
			oldID := e.sessionID(b)
			p := b.get(e.base + "/admin/panel")
			if !strings.Contains(p.body, `name="mfa"`) {
				t.Fatalf("step-up login page without MFA field: %q", p.body)
			}
			p = b.submitLogin(p, "alice", "alice-password", tc.mfa)
			if p.status != tc.wantStatus || !strings.Contains(p.body, tc.wantBody) {
				t.Fatalf("got %d %q", p.status, p.body)
			}
			if tc.wantStatus != 200 {
				s, err := e.store.Get(context.Background(), oldID)
				if err != nil || s.StepUpFailures != 1 || s.ACR != "pwd" {
					t.Errorf("old session after failed step-up: %+v %v", s, err)
				}
				return
			}
			newID := e.sessionID(b)
			if newID == oldID {
				t.Error("step-up kept the session id (fixation)")
			}
			if _, err := e.store.Get(context.Background(), oldID); err == nil {
				t.Error("old session id still valid after step-up")
			}
		})
	}
}

// A step-up that comes back signed in as someone else must not upgrade the
// session (session swapping).
func TestStepUpRejectsOtherSubject(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	b := newBrowser(t)
	if p := e.login(b, "/x", "alice", "alice-password", ""); p.status != 200 {
		t.Fatal(p.body)
	}
	p := b.submitLogin(b.get(e.base+"/admin"), "bob", "bob-password", devidp.DemoMFACode)
	if p.status != 403 || !strings.Contains(p.body, "step_up_failed") {
		t.Errorf("got %d %q", p.status, p.body)
	}
	if p := b.get(e.base + "/x"); !strings.Contains(p.body, "u-alice") {
		t.Errorf("alice's session lost: %q", p.body)
	}
}

func TestLogout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	b := newBrowser(t)
	if p := e.login(b, "/x", "alice", "alice-password", ""); p.status != 200 {
		t.Fatal(p.body)
	}
	id := e.sessionID(b)
	// GET never logs out; it renders the confirm form with the token.
	p := b.get(e.base + LogoutPath)
	tok := e.rp.LogoutCSRFToken(id)
	if p.status != 200 || !strings.Contains(p.body, tok) {
		t.Fatalf("logout page: %d %q", p.status, p.body)
	}
	origin := map[string]string{"Origin": e.base}
	for _, tc := range []struct {
		name string
		form url.Values
		hdr  map[string]string
	}{
		{"no origin or referer", url.Values{"csrf": {tok}}, nil},
		{"cross-site origin", url.Values{"csrf": {tok}}, map[string]string{"Origin": "https://evil.example"}},
		{"cross-site referer", url.Values{"csrf": {tok}}, map[string]string{"Referer": "https://evil.example/x"}},
		{"missing token", nil, origin},
		{"token for another session", url.Values{"csrf": {e.rp.LogoutCSRFToken("other")}}, origin},
		// "Origin: null" is what a same-origin form under a no-referrer
		// policy sends; it is only believed with Sec-Fetch-Site same-origin.
		{"null origin, cross-site fetch", url.Values{"csrf": {tok}}, map[string]string{"Origin": "null", "Sec-Fetch-Site": "cross-site"}},
		{"null origin, no fetch metadata", url.Values{"csrf": {tok}}, map[string]string{"Origin": "null"}},
	} {
		if p := b.stopAt("never").post(e.base+LogoutPath, tc.form, tc.hdr); p.status != 403 {
			t.Errorf("%s: %d, want 403", tc.name, p.status)
		}
	}
	if _, err := e.store.Get(context.Background(), id); err != nil {
		t.Fatal("session ended by a rejected logout")
	}
	// A real browser posting the confirm form under a no-referrer policy:
	// accepted (the CSRF token still has to match).
	origin = map[string]string{"Origin": "null", "Sec-Fetch-Site": "same-origin"}
	p = b.stopAt(e.idp.Issuer()).post(e.base+LogoutPath, url.Values{"csrf": {tok}}, origin)
	loc, _ := url.Parse(p.header.Get("Location"))
	if p.status != http.StatusSeeOther || !strings.HasPrefix(loc.String(), e.idp.Issuer()) {
		t.Fatalf("logout: %d to %s", p.status, loc)
	}
	q := loc.Query()
	if q.Get("id_token_hint") == "" || q.Get("client_id") != "edgeauth" || q.Get("state") == "" ||
		q.Get("post_logout_redirect_uri") != e.base+"/bye" {
		t.Errorf("end_session query = %v", q)
	}
	if _, err := e.store.Get(context.Background(), id); err == nil {
		t.Error("session alive after logout")
	}
	// The provider accepts the RP-initiated logout and returns to us.
	resp := b.stopAt(e.base).get(loc.String())
	if got := resp.header.Get("Location"); !strings.HasPrefix(got, e.base+"/bye") {
		t.Errorf("provider end_session redirected to %q (%d %q)", got, resp.status, resp.body)
	}
}

func TestReservedPathsNotOwnedAre404(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	if p := newBrowser(t).get(e.base + "/.edgeauth/whatever"); p.status != 404 {
		t.Errorf("got %d", p.status)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	t.Parallel()
	good := func() Options {
		return Options{Issuer: "https://idp.example", ClientID: "c", ClientSecret: "s",
			AllowedHosts: []string{"app.example"}, Keys: [][]byte{testKey}, Store: nil}
	}
	for _, tc := range []struct {
		name string
		mod  func(*Options)
	}{
		{"no store", func(o *Options) {}},
		{"short key", func(o *Options) { o.Keys = [][]byte{[]byte("short")} }},
		{"no hosts", func(o *Options) { o.AllowedHosts = nil }},
		{"relative issuer", func(o *Options) { o.Issuer = "/idp" }},
		{"external url with path", func(o *Options) { o.ExternalURL = "https://a.example/x" }},
		{"relative post logout", func(o *Options) { o.PostLogoutRedirectURL = "/bye" }},
	} {
		o := good()
		tc.mod(&o)
		if _, err := New(context.Background(), o); err == nil {
			t.Errorf("%s: New succeeded", tc.name)
		}
	}
}

// RFC 7636 Appendix B: we rely on x/oauth2 for S256; pin its output.
func TestPKCEVector(t *testing.T) {
	t.Parallel()
	got := oauth2.S256ChallengeFromVerifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
	if diff := cmp.Diff("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", got); diff != "" {
		t.Error(diff)
	}
}
