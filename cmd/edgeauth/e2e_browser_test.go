package main

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/edgeauth/edgeauth/internal/e2etest"
)

// chromiumPath is Debian's chromium; .ci/test installs it.
const chromiumPath = "/usr/bin/chromium"

// newBrowser starts a headless Chromium of its own (fresh profile in
// t.TempDir) and returns a tab context bounded by timeout. Cleanup ends
// the browser chromedp started (by its process, nothing else).
func newBrowser(t *testing.T, timeout time.Duration) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("chromium not found at %s (%v): the browser end-to-end tests need Debian's chromium; run .ci/test, which installs it", chromiumPath, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-proxy-server", true), // loopback only, whatever the environment says
		chromedp.Flag("password-store", "basic"),
		chromedp.WindowSize(1024, 768),
		chromedp.UserDataDir(t.TempDir()),
	}
	ctx, cancelTimeout := context.WithTimeout(context.Background(), timeout)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	tab, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancelTab(); cancelAlloc(); cancelTimeout() })
	if err := chromedp.Do(tab); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	return tab
}

// run runs browser steps and fails the test with what the tab shows.
func run(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		t.Fatalf("%s: %v (page %s)", what, err, loc)
	}
}

// waitLocation polls the tab's URL until ok accepts it (deadline 20s).
func waitLocation(t *testing.T, ctx context.Context, what string, ok func(string) bool) string {
	t.Helper()
	var last string
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		if loc, err := chromedp.Run(ctx, chromedp.Location()); err == nil {
			last = loc
			if ok(loc) {
				return loc
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("%s: %v (last URL %s)", what, ctx.Err(), last)
		}
	}
	t.Fatalf("%s: timed out, last URL %s", what, last)
	return ""
}

// bodyText is the rendered text of the page.
func bodyText(t *testing.T, ctx context.Context) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string]("document.body ? document.body.innerText : ''"))
	if err != nil {
		t.Fatalf("read page text: %v", err)
	}
	return s
}

// waitText polls the page's text until ok accepts it (deadline 20s) and
// returns it.
func waitText(t *testing.T, ctx context.Context, what string, ok func(string) bool) string {
	t.Helper()
	var last string
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		if s, err := chromedp.Run(ctx, chromedp.Evaluate[string]("document.body ? document.body.innerText : ''")); err == nil {
			last = s
			if ok(s) {
				return s
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("%s: %v; page text:\n%s", what, ctx.Err(), last)
		}
	}
	t.Fatalf("%s: timed out; page text:\n%s", what, last)
	return ""
}

// pageEcho decodes the upstream's JSON echo the browser shows.
func pageEcho(t *testing.T, ctx context.Context) e2etest.Echo {
	t.Helper()
	text := bodyText(t, ctx)
	var e e2etest.Echo
	if err := json.Unmarshal([]byte(text), &e); err != nil {
		t.Fatalf("page is not the upstream's echo (%v):\n%.500s", err, text)
	}
	return e
}

// signIn fills and submits the provider's login form the tab shows.
func signIn(t *testing.T, ctx context.Context, issuer, user, password string) {
	t.Helper()
	waitLocation(t, ctx, "provider login page", func(u string) bool { return strings.HasPrefix(u, issuer+"/") })
	run(t, ctx, "fill the login form",
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.ID("submit")),
	)
}

// countPath counts the upstream's requests for path (the browser also
// asks for /favicon.ico, which the catch-all route forwards).
func countPath(u *e2etest.Upstream, path string) int {
	n := 0
	for _, r := range u.Requests() {
		if r.Path == path {
			n++
		}
	}
	return n
}

// TestBrowserSSO drives real headless Chromium through the SSO flows a
// user sees, against the provider and edgeauth as separate processes and
// a real upstream: deep link → provider login → back on the deep link
// with identity; reload keeps the session; a second browser context
// without cookies is sent to the provider; logout (confirm page, POST)
// ends the session; a user outside the allowed group gets 403 with the
// reason and request id on the page.
func TestBrowserSSO(t *testing.T) {
	t.Parallel()
	s := e2etest.StartStack(t, e2etest.DefaultConfig)
	base, issuer := s.Edgeauth.URL, s.IDP.Issuer
	tab := newBrowser(t, 90*time.Second)
	deep := base + "/reports/q3?view=full"

	// Deep link → provider → back on the deep link with identity.
	run(t, tab, "open the deep link", chromedp.Navigate(deep))
	signIn(t, tab, issuer, "alice", "alice-password")
	waitLocation(t, tab, "back on the deep link", func(u string) bool { return u == deep })
	e := pageEcho(t, tab)
	if e.Path != "/reports/q3" || e.RawQuery != "view=full" {
		t.Errorf("upstream saw %s?%s, want /reports/q3?view=full", e.Path, e.RawQuery)
	}
	if e.Identity["X-Auth-Request-User"] == "" || !strings.Contains(e.Identity["X-Auth-Request-Groups"], "admins") ||
		!strings.Contains(e.Identity["X-Auth-Request-Email"], "@") {
		t.Errorf("identity headers on the page = %v, want user, email and the admins group", e.Identity)
	}
	shot, err := chromedp.Run(tab, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	shotPath := filepath.Join(t.TempDir(), "after-login.png")
	if err := os.WriteFile(shotPath, shot, 0o600); err != nil {
		t.Fatal(err)
	}
	if img, err := png.Decode(bytes.NewReader(shot)); err != nil || img.Bounds().Dx() < 100 || img.Bounds().Dy() < 100 {
		t.Errorf("screenshot %s is not a sensible PNG: %v", shotPath, err)
	}
	if dir := os.Getenv("EDGEAUTH_E2E_SCREENSHOT_DIR"); dir != "" {
		// For a person to look at; the test never depends on it.
		_ = os.WriteFile(filepath.Join(dir, "after-login.png"), shot, 0o600)
	}

	// Reload keeps the session.
	before := countPath(s.Upstream, "/reports/q3")
	run(t, tab, "reload", chromedp.Reload())
	waitLocation(t, tab, "still on the deep link", func(u string) bool { return u == deep })
	if got := pageEcho(t, tab).Identity["X-Auth-Request-User"]; got != e.Identity["X-Auth-Request-User"] {
		t.Errorf("after reload the user is %q, want %q", got, e.Identity["X-Auth-Request-User"])
	}
	if n := countPath(s.Upstream, "/reports/q3") - before; n != 1 {
		t.Errorf("reload: upstream saw %d new requests for the page, want 1", n)
	}

	// A second browser context has no cookies: it is sent to sign in.
	other, cancelOther := chromedp.NewContext(tab, chromedp.WithNewBrowserContext())
	defer cancelOther()
	run(t, other, "open the deep link in a second context", chromedp.Navigate(deep))
	waitLocation(t, other, "second context at the provider", func(u string) bool { return strings.HasPrefix(u, issuer+"/") })
	run(t, other, "login form in the second context", chromedp.WaitVisible(chromedp.ID("password")))
	cancelOther()

	// bob is not in admins: 403 with the reason and request id.
	bob, cancelBob := chromedp.NewContext(tab, chromedp.WithNewBrowserContext())
	defer cancelBob()
	run(t, bob, "bob opens /admin/", chromedp.Navigate(base+"/admin/"))
	signIn(t, bob, issuer, "bob", "bob-password")
	waitLocation(t, bob, "bob back on /admin/", func(u string) bool { return u == base+"/admin/" })
	text := bodyText(t, bob)
	m := regexp.MustCompile(`Status 403 · reason (\S+) · request id (\S+)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("bob on /admin/: page does not show a 403 with reason and request id:\n%s", text)
	}
	if !strings.Contains(s.Edgeauth.Output(), m[2]) {
		t.Errorf("request id %q on the 403 page is not in edgeauth's log", m[2])
	}
	for _, r := range s.Upstream.Requests() {
		if strings.HasPrefix(r.Path, "/admin/") {
			t.Errorf("a request for %s reached the app", r.Path)
		}
	}

	// Logout: GET shows a confirmation form; submitting it ends the
	// session. Last, because it ends alice's session.
	run(t, tab, "open the logout page", chromedp.Navigate(base+"/.edgeauth/logout"), chromedp.WaitVisible(chromedp.ID("logout")))
	run(t, tab, "confirm logout", chromedp.Click(chromedp.ID("logout")))
	text = waitText(t, tab, "the page after submitting logout", func(s string) bool { return !strings.Contains(s, "Sign out?") })
	if strings.Contains(text, "csrf_check_failed") {
		// A real browser submitting edgeauth's own logout form must not be
		// refused as cross-site.
		t.Fatalf("logout form submitted by the browser was refused:\n%s", text)
	}
	waitLocation(t, tab, "leave the logout page", func(u string) bool { return !strings.HasPrefix(u, base+"/.edgeauth/logout") })
	run(t, tab, "protected page after logout", chromedp.Navigate(deep))
	waitLocation(t, tab, "sent to the provider after logout", func(u string) bool { return strings.HasPrefix(u, issuer+"/") })
	run(t, tab, "login form after logout", chromedp.WaitVisible(chromedp.ID("password")))
}
