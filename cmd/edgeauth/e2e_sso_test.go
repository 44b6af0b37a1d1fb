package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/edgeauth/edgeauth/internal/e2etest"
)

// TestMain is the one TestMain of package main's tests (the e2e files of
// other concerns share it): it removes the edgeauth binary the e2etest kit
// built for this test process.
func TestMain(m *testing.M) {
	code := m.Run()
	e2etest.RemoveBinary()
	os.Exit(code)
}

// sessionCookie is the default session cookie name (plain HTTP: no
// __Host- prefix).
const sessionCookie = "edgeauth_session"

// loginAs signs user in on s through deep and fails the test unless it
// lands on the upstream with a 200.
func loginAs(t *testing.T, s *e2etest.Stack, c *http.Client, deep, user, password, mfa string) e2etest.Echo {
	t.Helper()
	resp, err := e2etest.Login(t, c, s.Edgeauth.URL+deep, user, password, mfa, nil)
	if err != nil {
		t.Fatalf("login as %s via %s: %v", user, deep, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login as %s via %s: final status %d, want 200", user, deep, resp.StatusCode)
	}
	return decodeEcho(t, resp)
}

// userHeaders drops the signed assertion from identity headers: it is
// minted per request (fresh jti, iat), so it differs between any two.
func userHeaders(id map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range id {
		if !strings.EqualFold(k, "X-Edgeauth-Assertion") {
			out[k] = v
		}
	}
	return out
}

func decodeEcho(t *testing.T, resp *http.Response) e2etest.Echo {
	t.Helper()
	var e e2etest.Echo
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatalf("decode upstream echo (status %d, %s): %v", resp.StatusCode, resp.Header.Get("Content-Type"), err)
	}
	return e
}

// TestSSOSpoofedIdentityHeadersNeverReachUpstream pins the identity
// header strip. Attack: a client sends its own X-Auth-Request-User (in any
// spelling some upstream stack folds into the real header: duplicates,
// mixed case, underscores as in CGI/WSGI/nginx) to impersonate someone,
// on a public route where no identity is added as well as on a protected
// route where the proxy's own value must win.
func TestSSOSpoofedIdentityHeadersNeverReachUpstream(t *testing.T) {
	t.Parallel()
	s := e2etest.StartStack(t, e2etest.DefaultConfig)
	signedIn := e2etest.NewClient(t)
	real := loginAs(t, s, signedIn, "/", "alice", "alice-password", "")
	if real.Identity["X-Auth-Request-User"] == "" {
		t.Fatalf("no identity after login: %v", real.Identity)
	}
	const marker = "spoofed-by-client"
	spoofs := []struct {
		name string
		hdr  http.Header // names kept exactly as written on the wire
	}{
		{"single", http.Header{"X-Auth-Request-User": {marker}}},
		{"duplicate", http.Header{"X-Auth-Request-User": {marker + "-1", marker + "-2"}}},
		{"mixed case", http.Header{"x-AUTH-request-USER": {marker}, "X-AUTH-REQUEST-EMAIL": {marker + "@evil.example"}}},
		{"underscore", http.Header{"X_Auth_Request_User": {marker}, "x_auth_request_groups": {marker}}},
		{"all identity headers", http.Header{
			"X-Auth-Request-Email": {marker}, "X-Auth-Request-Groups": {marker},
			"X-Auth-Request-Preferred-Username": {marker}, "X-Edgeauth-Assertion": {marker},
		}},
	}
	routes := []struct {
		name, path string
		client     *http.Client
	}{
		{"public", "/public/page", e2etest.NewClient(t)},
		{"protected", "/reports/q3", signedIn},
	}
	for _, r := range routes {
		for _, sp := range spoofs {
			t.Run(r.name+"/"+sp.name, func(t *testing.T) {
				// Sequential: they share the upstream's record.
				s.Upstream.Reset()
				resp, _ := e2etest.Navigate(t, r.client, s.Edgeauth.URL+r.path, sp.hdr)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d, want 200", resp.StatusCode)
				}
				if s.Upstream.Count() != 1 {
					t.Fatalf("upstream saw %d requests, want 1", s.Upstream.Count())
				}
				if got := s.Upstream.HeadersContaining(marker); len(got) != 0 {
					t.Errorf("spoofed headers reached the upstream: %q", got)
				}
				got := userHeaders(e2etest.IdentityHeaders(s.Upstream.Requests()[0].Header))
				want := map[string]string{}
				if r.name == "protected" {
					want = userHeaders(real.Identity)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("identity headers at the upstream (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// TestSSOBadCookieIsNoSession: a tampered, truncated, foreign or garbage
// session cookie is treated as no session — a browser is sent to sign in,
// an API client gets 401 — never an error page and never the app.
func TestSSOBadCookieIsNoSession(t *testing.T) {
	t.Parallel()
	s := e2etest.StartStack(t, e2etest.DefaultConfig)
	c := e2etest.NewClient(t)
	loginAs(t, s, c, "/", "alice", "alice-password", "")
	good := e2etest.Cookie(t, c, s.Edgeauth.URL, sessionCookie)
	if good == "" {
		t.Fatalf("no %s cookie after login", sessionCookie)
	}
	// Sanity: the cookie alone, without the jar, is a session.
	plain := e2etest.NewClient(t)
	if resp, _ := e2etest.Navigate(t, plain, s.Edgeauth.URL+"/x", http.Header{"Cookie": {sessionCookie + "=" + good}}); resp.StatusCode != http.StatusOK {
		t.Fatalf("the good cookie sent by hand: status %d, want 200", resp.StatusCode)
	}
	flip := func(v string, i int) string {
		b := []byte(v)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	other := e2etest.NewClient(t)
	loginAs(t, s, other, "/", "bob", "bob-password", "")
	bobs := e2etest.Cookie(t, other, s.Edgeauth.URL, sessionCookie)
	cases := []struct{ name, value string }{
		{"last byte flipped", flip(good, len(good)-1)},
		{"first byte flipped", flip(good, 0)},
		{"middle byte flipped", flip(good, len(good)/2)},
		{"truncated", good[:len(good)-4]},
		{"doubled", good + good},
		{"garbage", "not-a-session"},
		{"empty", ""},
		// Attack: splicing the id of one signed cookie with the tag of
		// another.
		{"spliced", good[:len(good)/2] + bobs[len(bobs)/2:]},
	}
	before := s.Upstream.Count()
	t.Run("cases", func(t *testing.T) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				cookie := http.Header{"Cookie": {sessionCookie + "=" + tc.value}}
				resp, body := e2etest.Navigate(t, plain, s.Edgeauth.URL+"/reports/q3", cookie)
				if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), s.IDP.Issuer) {
					t.Errorf("browser: %d Location %q body %.200q; want 302 to the provider", resp.StatusCode, resp.Header.Get("Location"), body)
				}
				api := http.Header{"Cookie": cookie["Cookie"], "Accept": {"application/json"}}
				resp, body = e2etest.Do(t, plain, http.MethodGet, s.Edgeauth.URL+"/reports/q3", api, nil)
				if resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("API: status %d body %.200q, want 401", resp.StatusCode, body)
				}
			})
		}
	})
	if n := s.Upstream.Count() - before; n != 0 {
		t.Errorf("%d requests with a bad cookie reached the app", n)
	}
}

// TestSSOAPIClientGets401NotRedirect: anything that is not a top-level
// browser navigation gets 401 JSON with a Bearer challenge; a redirect to
// an HTML login page would break API clients and XHR.
func TestSSOAPIClientGets401NotRedirect(t *testing.T) {
	t.Parallel()
	s := e2etest.StartStack(t, e2etest.DefaultConfig)
	c := e2etest.NewClient(t)
	cases := []struct {
		name, method string
		hdr          http.Header
	}{
		{"accept json", http.MethodGet, http.Header{"Accept": {"application/json"}}},
		{"no accept", http.MethodGet, http.Header{"Accept": {"*/*"}}},
		{"xhr accepting html", http.MethodGet, http.Header{"Accept": {e2etest.AcceptHTML}, "X-Requested-With": {"XMLHttpRequest"}}},
		{"fetch accepting html", http.MethodGet, http.Header{"Accept": {e2etest.AcceptHTML}, "Sec-Fetch-Mode": {"cors"}}},
		{"post accepting html", http.MethodPost, http.Header{"Accept": {e2etest.AcceptHTML}, "Content-Type": {"application/x-www-form-urlencoded"}}},
		{"delete", http.MethodDelete, http.Header{"Accept": {"application/json"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var body *strings.Reader
			if tc.method == http.MethodPost {
				body = strings.NewReader("a=1")
			} else {
				body = strings.NewReader("")
			}
			resp, b := e2etest.Do(t, c, tc.method, s.Edgeauth.URL+"/api/items?x=1", tc.hdr, body)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %d (Location %q), want 401", resp.StatusCode, resp.Header.Get("Location"))
			}
			if loc := resp.Header.Get("Location"); loc != "" {
				t.Errorf("Location %q on a 401", loc)
			}
			if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer realm=") {
				t.Errorf("WWW-Authenticate = %q, want Bearer realm=...", got)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type = %q, want JSON", ct)
			}
			var e struct {
				Error     string `json:"error"`
				RequestID string `json:"request_id"`
			}
			if err := json.Unmarshal(b, &e); err != nil || e.Error == "" || e.RequestID == "" {
				t.Errorf("body %q: want JSON with error and request_id (%v)", b, err)
			}
		})
	}
	if n := s.Upstream.Count(); n != 0 {
		t.Errorf("%d unauthenticated API requests reached the app", n)
	}
}

// TestSSOProviderDiesMidFlight: the provider process is killed. Signed-in
// users keep working (sessions are local); a login whose code comes back
// after the provider died ends on a clear 503 page with a request id —
// not a stack trace, not a redirect loop.
func TestSSOProviderDiesMidFlight(t *testing.T) {
	t.Parallel()
	s := e2etest.StartStack(t, e2etest.DefaultConfig)
	signedIn := e2etest.NewClient(t)
	loginAs(t, s, signedIn, "/", "alice", "alice-password", "")

	// A second login stopped just before the callback: the browser holds
	// the code, the provider is about to die.
	pending := e2etest.NewClient(t)
	callback, _, err := e2etest.LoginUntil(t, pending, s.Edgeauth.URL+"/reports/q3", "alice", "alice-password", "", nil, e2etest.IsCallback)
	if err != nil {
		t.Fatalf("login up to the callback: %v", err)
	}

	s.IDP.Proc.Kill()

	resp, _ := e2etest.Navigate(t, signedIn, s.Edgeauth.URL+"/reports/q3", nil)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("existing session after the provider died: status %d, want 200", resp.StatusCode)
	}

	resp, body := e2etest.Navigate(t, pending, callback, nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("callback with the provider gone: status %d (Location %q), want 503", resp.StatusCode, resp.Header.Get("Location"))
	}
	page := string(body)
	reqID := resp.Header.Get("X-Request-Id")
	if reqID == "" || !strings.Contains(page, reqID) {
		t.Errorf("503 page does not show the request id %q:\n%s", reqID, page)
	}
	for _, leak := range []string{"goroutine ", "panic", ".go:", "dial tcp", "connection refused"} {
		if strings.Contains(page, leak) {
			t.Errorf("503 page leaks internals (%q):\n%s", leak, page)
		}
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("Content-Type %q, want an HTML page for a browser", resp.Header.Get("Content-Type"))
	}

	// A brand-new navigation: edgeauth cannot know the provider is down
	// without asking it, so it may still send the browser there; what it
	// must not do is fail with 5xx other than 503 or loop on itself.
	fresh := e2etest.NewClient(t)
	resp, _ = e2etest.Navigate(t, fresh, s.Edgeauth.URL+"/reports/q3", nil)
	switch {
	case resp.StatusCode == http.StatusServiceUnavailable:
	case resp.StatusCode == http.StatusFound && strings.HasPrefix(resp.Header.Get("Location"), s.IDP.Issuer+"/"):
	default:
		t.Errorf("new login with the provider gone: %d Location %q; want 503 or 302 to the provider", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestSSOOpenRedirectLandsSameOrigin: after signing in through a deep
// link that is really another origin in disguise, the browser lands on /
// of edgeauth itself. Attack: open redirect via the post-login return
// URL (a phishing page that starts at the trusted origin), with the
// parser tricks browsers accept: protocol-relative //host, backslashes
// (WHATWG URL parsing reads \ as /), extra slashes, and tab/CR stripping.
func TestSSOOpenRedirectLandsSameOrigin(t *testing.T) {
	t.Parallel()
	s := e2etest.StartStack(t, e2etest.DefaultConfig)
	payloads := []string{
		"//evil.com",
		"//evil.com/",
		"///evil.com",
		`/\evil.com`,
		`/\/evil.com`,
		"//evil.com/%2F..",
		"//evil.com?next=/",
		"//EVIL.com",
		"/%09/evil.com",
		"//evil.com@127.0.0.1/",
	}
	for _, p := range payloads {
		t.Run(p, func(t *testing.T) {
			t.Parallel()
			c := e2etest.NewClient(t)
			callback, _, err := e2etest.LoginUntil(t, c, s.Edgeauth.URL+p, "alice", "alice-password", "", nil, e2etest.IsCallback)
			if err != nil {
				t.Fatalf("login up to the callback: %v", err)
			}
			resp, _ := e2etest.Navigate(t, c, callback, nil)
			if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("callback: status %d, want a redirect", resp.StatusCode)
			}
			loc := resp.Header.Get("Location")
			if !landsSameOrigin(s.Edgeauth.URL, loc) {
				t.Fatalf("callback redirects to %q: not same-origin", loc)
			}
			// The dangerous payloads must land exactly on /.
			if strings.HasPrefix(p, "//") || strings.HasPrefix(p, `/\`) {
				u, _ := url.Parse(s.Edgeauth.URL)
				got, err := u.Parse(loc)
				if err != nil || got.Path != "/" || got.Host != u.Host {
					t.Errorf("callback Location %q, want %s/", loc, s.Edgeauth.URL)
				}
			}
			// And the session works there.
			final, _ := e2etest.Navigate(t, c, s.Edgeauth.URL+"/", nil)
			if final.StatusCode != http.StatusOK {
				t.Errorf("after login: / status %d, want 200", final.StatusCode)
			}
		})
	}
}

// landsSameOrigin resolves loc the way a browser would (backslash as
// slash, tabs and newlines removed, RFC 3986 reference resolution) and
// reports whether it stays on base's origin.
func landsSameOrigin(base, loc string) bool {
	b, err := url.Parse(base)
	if err != nil {
		return false
	}
	norm := strings.NewReplacer("\\", "/", "\t", "", "\n", "", "\r", "").Replace(loc)
	u, err := b.Parse(norm)
	if err != nil {
		return false
	}
	return u.Scheme == b.Scheme && u.Host == b.Host && u.User == nil
}

// TestSSOSessionSurvivesRestartWithSnapshot: with session.snapshot_file,
// SIGTERM writes the memory store and the next start restores it, so the
// same cookie still works — a deploy does not log everyone out.
func TestSSOSessionSurvivesRestartWithSnapshot(t *testing.T) {
	t.Parallel()
	cfg := strings.Replace(e2etest.DefaultConfig, "  memory_budget: 16MiB\n",
		"  memory_budget: 16MiB\n  snapshot_file: \"{{.Dir}}/sessions.snapshot\"\n", 1)
	if cfg == e2etest.DefaultConfig {
		t.Fatal("could not add snapshot_file to the config template")
	}
	s := e2etest.StartStack(t, cfg)
	c := e2etest.NewClient(t)
	before := loginAs(t, s, c, "/reports/q3", "alice", "alice-password", "")
	cookie := e2etest.Cookie(t, c, s.Edgeauth.URL, sessionCookie)

	s.Edgeauth.Restart(t)
	if fi, err := os.Stat(filepath.Join(s.Vars.Dir, "sessions.snapshot")); err != nil || fi.Size() == 0 {
		t.Fatalf("snapshot file after SIGTERM: %v", err)
	}
	resp, _ := e2etest.Navigate(t, c, s.Edgeauth.URL+"/reports/q3", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after restart: status %d (Location %q), want 200 with the same session", resp.StatusCode, resp.Header.Get("Location"))
	}
	if got := e2etest.Cookie(t, c, s.Edgeauth.URL, sessionCookie); got != cookie {
		t.Errorf("session cookie changed across the restart")
	}
	if diff := cmp.Diff(userHeaders(before.Identity), userHeaders(decodeEcho(t, resp).Identity)); diff != "" {
		t.Errorf("identity after restart (-before +after):\n%s", diff)
	}
}

// TestSSOReloadWithBrokenConfigKeepsServing: SIGHUP with an invalid
// config file is rejected and logged; the previous config keeps serving,
// sessions included. A valid config sent next is applied.
func TestSSOReloadWithBrokenConfigKeepsServing(t *testing.T) {
	t.Parallel()
	s := e2etest.StartStack(t, e2etest.DefaultConfig)
	c := e2etest.NewClient(t)
	loginAs(t, s, c, "/", "alice", "alice-password", "")

	broken := s.Render(t, strings.Replace(e2etest.DefaultConfig, `upstream: "{{.Upstream}}"
    auth: none`, `upstream: "htp://broken upstream"
    auth: none`, 1))
	if broken == s.Config {
		t.Fatal("could not break the config")
	}
	s.Edgeauth.WriteConfig(t, broken)
	s.Edgeauth.Reload(t)
	s.Edgeauth.Proc.WaitOutput(t, "reload rejected", e2etest.StartTimeout)
	if s.Edgeauth.Proc.Exited() {
		t.Fatalf("edgeauth exited on a broken reload: %v", s.Edgeauth.Proc.Err())
	}
	if resp, _ := e2etest.Navigate(t, e2etest.NewClient(t), s.Edgeauth.URL+"/public/x", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("public route after a rejected reload: status %d, want 200", resp.StatusCode)
	}
	if resp, _ := e2etest.Navigate(t, c, s.Edgeauth.URL+"/reports/q3", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("session after a rejected reload: status %d, want 200", resp.StatusCode)
	}

	// A good config is taken: /docs/ becomes public.
	good := s.Render(t, strings.Replace(e2etest.DefaultConfig, "  - name: app\n", `  - name: docs
    path: /docs/
    upstream: "{{.Upstream}}"
    auth: none
  - name: app
`, 1))
	s.Edgeauth.WriteConfig(t, good)
	s.Edgeauth.Reload(t)
	anon := e2etest.NewClient(t)
	e2etest.Eventually(t, 10*time.Second, "valid config applied after a rejected one", func() bool {
		resp, _ := e2etest.Navigate(t, anon, s.Edgeauth.URL+"/docs/x", nil)
		return resp.StatusCode == http.StatusOK
	})
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// TestSSOLogoutCSRF pins the logout POST's cross-site check and that
// edgeauth's own logout form works from a browser. Attack: a cross-site
// page auto-submitting a form to /.edgeauth/logout (logout CSRF) must be
// refused. But the confirmation page edgeauth renders carries
// <meta name="referrer" content="no-referrer">, and with that policy
// browsers send "Origin: null" on every POST, same-origin included (Fetch
// standard, "append a request Origin header"), together with
// "Sec-Fetch-Site: same-origin" — the request Chromium sends when a user
// clicks "Sign out".
func TestSSOLogoutCSRF(t *testing.T) {
	t.Parallel()
	s := e2etest.StartStack(t, e2etest.DefaultConfig)
	logoutURL := s.Edgeauth.URL + "/.edgeauth/logout"
	// form signs a client in and returns the CSRF token of its logout page.
	form := func(t *testing.T) (*http.Client, string) {
		c := e2etest.NewClient(t)
		loginAs(t, s, c, "/", "alice", "alice-password", "")
		_, page := e2etest.Navigate(t, c, logoutURL, nil)
		m := csrfField.FindSubmatch(page)
		if m == nil {
			t.Fatalf("logout page has no csrf field:\n%s", page)
		}
		return c, string(m[1])
	}
	post := func(t *testing.T, c *http.Client, token string, hdr http.Header) *http.Response {
		h := hdr.Clone()
		h.Set("Content-Type", "application/x-www-form-urlencoded")
		h.Set("Accept", e2etest.AcceptHTML)
		resp, _ := e2etest.Do(t, c, http.MethodPost, logoutURL, h, strings.NewReader(url.Values{"csrf": {token}}.Encode()))
		return resp
	}
	signedIn := func(t *testing.T, c *http.Client) bool {
		resp, _ := e2etest.Navigate(t, c, s.Edgeauth.URL+"/x", nil)
		return resp.StatusCode == http.StatusOK
	}
	cases := []struct {
		name       string
		hdr        http.Header
		badToken   bool
		wantLogout bool
	}{
		{name: "same origin", hdr: http.Header{"Origin": {s.Edgeauth.URL}}, wantLogout: true},
		{name: "browser form under no-referrer policy", hdr: http.Header{"Origin": {"null"}, "Sec-Fetch-Site": {"same-origin"}, "Sec-Fetch-Mode": {"navigate"}}, wantLogout: true},
		{name: "cross-site origin", hdr: http.Header{"Origin": {"http://evil.example"}, "Sec-Fetch-Site": {"cross-site"}}},
		{name: "null origin from a cross-site page", hdr: http.Header{"Origin": {"null"}, "Sec-Fetch-Site": {"cross-site"}}},
		{name: "same origin without the token", hdr: http.Header{"Origin": {s.Edgeauth.URL}}, badToken: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, token := form(t)
			if tc.badToken {
				token = "forged"
			}
			resp := post(t, c, token, tc.hdr)
			if tc.wantLogout {
				if resp.StatusCode != http.StatusSeeOther {
					t.Errorf("logout POST: status %d, want 303", resp.StatusCode)
				}
				if signedIn(t, c) {
					t.Error("still signed in after logout")
				}
				return
			}
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("forged logout POST: status %d, want 403", resp.StatusCode)
			}
			if !signedIn(t, c) {
				t.Error("a forged logout POST ended the session")
			}
		})
	}
}
