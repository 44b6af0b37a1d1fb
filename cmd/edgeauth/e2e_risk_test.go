package main

// End-to-end tests of issue 5 through the real binary: the Sarah scenario
// (impossible travel → step-up at the provider, abandoned step-up → session
// revoked), shadow mode, a deny-listed country, alerts, and GeoIP start-up
// errors. Every process is real: `edgeauth idp` (the development provider,
// which returns acr=mfa only when the MFA code is entered), `edgeauth run`,
// a recording upstream and a webhook receiver on 127.0.0.1. Client
// addresses come from X-Forwarded-For, which edgeauth trusts from
// 127.0.0.1 only (trusted_proxies), as behind a load balancer.
//
// "Ten minutes later" is seconds later here. The proxy scores with the
// wall clock (the running binary has no clock to inject), and the engine
// treats any Δt under a minute as one minute, so London → Changchun
// (8,182 km, radii 10 + 100 km) is ~484,000 km/h instead of ~48,000 km/h
// after ten minutes: impossible either way, against the 1,000 km/h limit.

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeauth/edgeauth/internal/e2etest"
	"github.com/edgeauth/edgeauth/middleware/audit"
	"github.com/edgeauth/edgeauth/middleware/risk/geoip/geoiptest"
)

// Test client addresses (STANDARDS §4.2, MaxMind's City test data).
const (
	rkLondon    = "81.2.69.142"
	rkChangchun = "175.16.199.0"
)

// rkCityRows are the four cities of the scenario with the values and
// accuracy radii of GeoIP2-City-Test.mmdb (STANDARDS §4.2 rows 1, 6, 5, 4).
var rkCityRows = []geoiptest.City{
	{Network: "81.2.69.142/31", Country: "GB", Subdivision: "ENG", City: "London", Lat: 51.5142, Lon: -0.0931, AccuracyKM: 10},
	{Network: "175.16.199.0/24", Country: "CN", Subdivision: "22", City: "Changchun", Lat: 43.88, Lon: 125.3228, AccuracyKM: 100},
	{Network: "89.160.20.112/28", Country: "SE", Subdivision: "E", City: "Linköping", Lat: 58.4167, Lon: 15.6167, AccuracyKM: 76},
	{Network: "216.160.83.56/29", Country: "US", Subdivision: "WA", City: "Milton", Lat: 47.2513, Lon: -122.3149, AccuracyKM: 22},
}

// rkMaxFails is risk.max_step_up_failures in the scenario config.
const rkMaxFails = 3

// rkConfig is the scenario's config template (e2etest.ConfigVars plus
// %CITY%, %HOOK%, %SECRET% and %RISK_EXTRA%). Alerts go out on step_up, deny and
// step_up_failed. The issue asks for `on: [impossible_travel,
// step_up_failed]`; the audit package matches reasons, but config
// validation only accepts decisions (see TestRiskAlertOnReasonAccepted), so
// the impossible-travel alert is asserted through its step_up decision and
// its reasons.
const rkConfig = `log: {level: debug, format: json}
listen: "{{.Listen}}"
admin:
  listen: "{{.AdminListen}}"
  token: "{{.AdminToken}}"
trusted_proxies: [127.0.0.1/32]
oidc:
  issuer: "{{.Issuer}}"
  client_id: edgeauth-demo
  client_secret: edgeauth-demo-secret
  scopes: [openid, email, profile, groups]
  step_up: {acr_values: [mfa]}
session:
  secrets: ["{{.SessionKey}}"]
  memory_budget: 16MiB
geoip:
  city: "%CITY%"
risk:
  max_step_up_failures: 3
%RISK_EXTRA%
audit:
  file: "{{.Dir}}/audit.jsonl"
  alerts:
    url: "%HOOK%"
    secret: "%SECRET%"
    on: [step_up, step_up_failed, deny]
routes:
  - name: shadow
    path: /shadow/
    upstream: "{{.Upstream}}"
    risk_mode: shadow
  - name: app
    path: /
    upstream: "{{.Upstream}}"
`

// rkEvent is the part of an audit event (file or alert) the tests read.
type rkEvent struct {
	Type     string   `json:"type"`
	Route    string   `json:"route"`
	Sub      string   `json:"sub"`
	ClientIP string   `json:"client_ip"`
	Country  string   `json:"country"`
	City     string   `json:"city"`
	Score    int      `json:"score"`
	Reasons  []string `json:"reasons"`
	Decision string   `json:"decision"`
	Shadow   string   `json:"shadow_decision"`
	Reason   string   `json:"reason"`
	Status   int      `json:"status"`
}

// rkHook is the alert webhook receiver: it verifies every POST's HMAC
// signature (audit.Sign over timestamp and body) and keeps the events.
type rkHook struct {
	URL    string
	secret []byte
	mu     sync.Mutex
	events []rkEvent
	bad    []string
}

func rkStartHook(t *testing.T, secret []byte) *rkHook {
	t.Helper()
	h := &rkHook{secret: secret}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		ts, sig := r.Header.Get("X-Edgeauth-Timestamp"), r.Header.Get("X-Edgeauth-Signature")
		h.mu.Lock()
		defer h.mu.Unlock()
		if err != nil || r.Method != http.MethodPost || ts == "" ||
			!hmac.Equal([]byte(sig), []byte(audit.Sign(h.secret, ts, body))) {
			h.bad = append(h.bad, fmt.Sprintf("%s ts=%q sig=%q", r.Method, ts, sig))
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var ev rkEvent
		if err := json.Unmarshal(body, &ev); err != nil {
			h.bad = append(h.bad, "not JSON: "+string(body))
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		h.events = append(h.events, ev)
	}))
	t.Cleanup(srv.Close)
	h.URL = srv.URL + "/alerts"
	t.Cleanup(func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if len(h.bad) > 0 {
			t.Errorf("alert receiver got requests that failed verification: %q", h.bad)
		}
	})
	return h
}

// wait returns the first verified alert matching ok, polling with a deadline
// (alerts are sent asynchronously, off the request path).
func (h *rkHook) wait(t *testing.T, what string, ok func(rkEvent) bool) rkEvent {
	t.Helper()
	var got rkEvent
	e2etest.Eventually(t, 10*time.Second, "alert "+what, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, ev := range h.events {
			if ok(ev) {
				got = ev
				return true
			}
		}
		return false
	})
	return got
}

// rkAuditWait returns the first event of the audit file matching ok. The
// writer is asynchronous, so it polls with a deadline.
func rkAuditWait(t *testing.T, path, what string, ok func(rkEvent) bool) rkEvent {
	t.Helper()
	var got rkEvent
	e2etest.Eventually(t, 10*time.Second, "audit event "+what, func() bool {
		for _, ev := range rkAuditEvents(t, path) {
			if ok(ev) {
				got = ev
				return true
			}
		}
		return false
	})
	return got
}

func rkAuditEvents(t *testing.T, path string) []rkEvent {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return nil // not created until the first event
	}
	var out []rkEvent
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var ev rkEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			continue // a line still being written
		}
		out = append(out, ev)
	}
	return out
}

// rkStack is one scenario deployment.
type rkStack struct {
	*e2etest.Stack
	hook  *rkHook
	audit string
}

func rkStart(t *testing.T, cityPath, riskExtra string) *rkStack {
	t.Helper()
	secret := []byte(e2etest.RandomHex(t, 32))
	hook := rkStartHook(t, secret)
	cfg := strings.NewReplacer("%CITY%", cityPath, "%HOOK%", hook.URL, "%SECRET%", string(secret), "%RISK_EXTRA%", riskExtra).Replace(rkConfig)
	s := e2etest.StartStack(t, cfg)
	return &rkStack{Stack: s, hook: hook, audit: filepath.Join(s.Vars.Dir, "audit.jsonl")}
}

func rkFrom(ip string) http.Header { return http.Header{"X-Forwarded-For": {ip}} }

// rkAPI is an API-style request (not a browser navigation) from ip.
func rkAPI(t *testing.T, c *http.Client, rawURL, ip string) (*http.Response, []byte) {
	t.Helper()
	h := rkFrom(ip)
	h.Set("Accept", "application/json")
	return e2etest.Do(t, c, http.MethodGet, rawURL, h, nil)
}

func rkEcho(t *testing.T, resp *http.Response, body []byte) e2etest.Echo {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200 from the upstream; body %.300s", resp.StatusCode, body)
	}
	var e e2etest.Echo
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("not the upstream's echo: %v; body %.300s", err, body)
	}
	return e
}

// rkLoginFrom signs user in from ip (password, plus the MFA code when mfa
// is set) starting at deep, and returns what the upstream echoed.
func rkLoginFrom(t *testing.T, c *http.Client, deep, user, mfa, ip string) e2etest.Echo {
	t.Helper()
	resp, err := e2etest.Login(t, c, deep, user, user+"-password", mfa, rkFrom(ip))
	if err != nil {
		t.Fatalf("login %s from %s: %v", user, ip, err)
	}
	b, _ := io.ReadAll(resp.Body)
	return rkEcho(t, resp, b)
}

// rkAssertStepUpRedirect checks a browser step-up: 302 to the provider's
// authorization endpoint asking for acr mfa and a fresh authentication.
func rkAssertStepUpRedirect(t *testing.T, s *rkStack, resp *http.Response) {
	t.Helper()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, s.IDP.Issuer) {
		t.Fatalf("navigation: %d Location %q, want 302 to the provider %s", resp.StatusCode, loc, s.IDP.Issuer)
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if q.Get("acr_values") != "mfa" {
		t.Errorf("step-up redirect acr_values %q, want mfa (%s)", q.Get("acr_values"), loc)
	}
	if q.Get("prompt") != "login" && q.Get("max_age") != "0" {
		t.Errorf("step-up redirect has neither prompt=login nor max_age=0: %s", loc)
	}
}

// rkUpstreamFrom lists the upstream requests outside /shadow/ that carried
// ip in a forwarding header: a held request must never reach the app.
func rkUpstreamFrom(s *rkStack, ip string) []string {
	var out []string
	for _, r := range s.Upstream.Requests() {
		if strings.HasPrefix(r.Path, "/shadow/") {
			continue
		}
		for _, v := range r.Header.Values("X-Forwarded-For") {
			if strings.Contains(v, ip) {
				out = append(out, r.Method+" "+r.Path+" XFF "+v)
			}
		}
	}
	return out
}

func TestRiskSarahScenario(t *testing.T) {
	t.Parallel()
	t.Run("generated city db", func(t *testing.T) {
		t.Parallel()
		city := filepath.Join(t.TempDir(), "city.mmdb")
		if err := geoiptest.WriteCity(city, "", rkCityRows); err != nil {
			t.Fatal(err)
		}
		rkScenario(t, city)
	})
	t.Run("maxmind official city test db", func(t *testing.T) {
		t.Parallel()
		root, err := e2etest.ModuleRoot()
		if err != nil {
			t.Fatal(err)
		}
		// Only the City DB: 81.2.69.142 is flagged in the official
		// Anonymous-IP test DB, which would add anonymous_ip to London.
		city := filepath.Join(root, "..", "shared", "testdata", "geoip", "GeoIP2-City-Test.mmdb")
		if _, err := os.Stat(city); err != nil {
			t.Skipf("optional MaxMind test data absent (%v)", err)
		}
		rkScenario(t, city)
	})
}

// rkScenario runs the Sarah scenario against one City database.
func rkScenario(t *testing.T, city string) {
	t.Run("deny-listed country", func(t *testing.T) {
		t.Parallel()
		rkDenyListed(t, city)
	})
	s := rkStart(t, city, "")
	base := s.Edgeauth.URL

	// alice is Sarah: step-up completed. bob is Sarah whose cookie was
	// stolen: the step-up is never completed.
	t.Run("step-up completed resumes access", func(t *testing.T) {
		c := e2etest.NewClient(t)
		home := rkLoginFrom(t, c, base+"/reports/q3", "alice", "", rkLondon)
		if home.Path != "/reports/q3" || home.Identity["X-Auth-Request-User"] == "" {
			t.Fatalf("London login: path %q identity %v, want /reports/q3 with identity headers", home.Path, home.Identity)
		}

		// Shadow route: let through, recorded as "would step up".
		resp, body := e2etest.Navigate(t, c, base+"/shadow/dashboard", rkFrom(rkChangchun))
		if e := rkEcho(t, resp, body); e.Path != "/shadow/dashboard" {
			t.Fatalf("shadow route reached %q", e.Path)
		}
		ev := rkAuditWait(t, s.audit, "shadow decision", func(e rkEvent) bool {
			return e.Route == "shadow" && e.Sub == "u-alice" && e.Country == "CN"
		})
		if ev.Decision != "allow" || ev.Shadow != "step_up" || !slices.Contains(ev.Reasons, "impossible_travel") {
			t.Errorf("shadow audit event %+v, want decision allow, shadow_decision step_up, reason impossible_travel", ev)
		}

		// Enforcing route, same cookie, from Changchun: held. (After the
		// shadow request: it must not have made Changchun "home".)
		resp, _ = e2etest.Navigate(t, c, base+"/reports/q3?from=cn", rkFrom(rkChangchun))
		rkAssertStepUpRedirect(t, s, resp)
		resp, body = rkAPI(t, c, base+"/api/reports", rkChangchun)
		www := resp.Header.Get("WWW-Authenticate")
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(www, `error="insufficient_user_authentication"`) ||
			!strings.Contains(www, `acr_values="mfa"`) {
			t.Errorf("API request from Changchun: %d WWW-Authenticate %q, want 401 insufficient_user_authentication with acr_values (body %.200s)", resp.StatusCode, www, body)
		}
		if got := rkUpstreamFrom(s, rkChangchun); len(got) > 0 {
			t.Fatalf("held requests reached the app: %q", got)
		}
		ev = rkAuditWait(t, s.audit, "impossible travel step-up", func(e rkEvent) bool {
			return e.Route == "app" && e.Sub == "u-alice" && e.Decision == "step_up" && slices.Contains(e.Reasons, "impossible_travel")
		})
		if ev.Country != "CN" || ev.City != "Changchun" || ev.ClientIP != rkChangchun {
			t.Errorf("audit event location %s/%s/%s, want CN/Changchun/%s", ev.Country, ev.City, ev.ClientIP, rkChangchun)
		}
		s.hook.wait(t, "impossible travel", func(e rkEvent) bool {
			return e.Sub == "u-alice" && e.Decision == "step_up" && slices.Contains(e.Reasons, "impossible_travel")
		})

		// Step up at the provider with the MFA code, from Changchun: back
		// on the original URL as the same user, without a new session
		// being started by hand.
		up := rkLoginFrom(t, c, base+"/reports/q3?from=cn", "alice", e2etest.MFACode, rkChangchun)
		if up.Path != "/reports/q3" || up.RawQuery != "from=cn" {
			t.Errorf("after step-up landed on %s?%s, want /reports/q3?from=cn", up.Path, up.RawQuery)
		}
		if up.Identity["X-Auth-Request-User"] != home.Identity["X-Auth-Request-User"] {
			t.Errorf("after step-up user %q, want %q", up.Identity["X-Auth-Request-User"], home.Identity["X-Auth-Request-User"])
		}
		// Access resumes from Changchun, for navigations and API calls.
		resp, body = e2etest.Navigate(t, c, base+"/reports/q4", rkFrom(rkChangchun))
		rkEcho(t, resp, body)
		resp, body = rkAPI(t, c, base+"/api/reports", rkChangchun)
		rkEcho(t, resp, body)
	})

	t.Run("abandoned step-up revokes the session", func(t *testing.T) {
		s.Upstream.Reset() // alice's stepped-up Changchun requests did reach it
		c := e2etest.NewClient(t)
		rkLoginFrom(t, c, base+"/inbox", "bob", "", rkLondon)
		cookie := e2etest.Cookie(t, c, base, "edgeauth_session")
		if cookie == "" {
			t.Fatal("no session cookie after login")
		}
		for i := 1; i <= rkMaxFails; i++ {
			resp, _ := e2etest.Navigate(t, c, base+"/inbox", rkFrom(rkChangchun))
			rkAssertStepUpRedirect(t, s, resp)
		}
		resp, body := e2etest.Navigate(t, c, base+"/inbox", rkFrom(rkChangchun))
		if resp.StatusCode != http.StatusForbidden || !bytes.Contains(body, []byte("step_up_failed")) {
			t.Fatalf("step-up attempt %d: %d %.300s, want 403 step_up_failed", rkMaxFails+1, resp.StatusCode, body)
		}
		if got := rkUpstreamFrom(s, rkChangchun); len(got) > 0 {
			t.Fatalf("held requests reached the app: %q", got)
		}
		s.hook.wait(t, "step_up_failed", func(e rkEvent) bool { return e.Sub == "u-bob" && e.Reason == "step_up_failed" })

		// The session is gone: the old cookie does not work even from home.
		c2 := e2etest.NewClient(t)
		u, _ := url.Parse(base)
		c2.Jar.SetCookies(u, []*http.Cookie{{Name: "edgeauth_session", Value: cookie, Path: "/"}})
		resp, body = rkAPI(t, c2, base+"/inbox", rkLondon)
		if resp.StatusCode != http.StatusUnauthorized || strings.Contains(resp.Header.Get("WWW-Authenticate"), "insufficient_user_authentication") {
			t.Errorf("revoked cookie from London (API): %d %q %.200s, want 401 login required", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
		}
		resp, _ = e2etest.Navigate(t, c2, base+"/inbox", rkFrom(rkLondon))
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, s.IDP.Issuer) || strings.Contains(loc, "acr_values") {
			t.Errorf("revoked cookie from London (navigation): %d %q, want 302 to a plain sign-in", resp.StatusCode, loc)
		}
	})

}

// rkDenyListed: with risk.country_deny: [CN], Changchun gets 403, with a
// stolen cookie and even after a login with the MFA code — stepping up
// cannot fix a denied country.
func rkDenyListed(t *testing.T, city string) {
	s := rkStart(t, city, "  country_deny: [CN]")
	base := s.Edgeauth.URL

	c := e2etest.NewClient(t)
	rkLoginFrom(t, c, base+"/home", "alice", "", rkLondon)
	resp, body := e2etest.Navigate(t, c, base+"/home", rkFrom(rkChangchun))
	if resp.StatusCode != http.StatusForbidden || !bytes.Contains(body, []byte("country_denied")) {
		t.Errorf("stolen cookie from CN: %d %.300s, want 403 country_denied without a step-up", resp.StatusCode, body)
	}

	c2 := e2etest.NewClient(t)
	resp, err := e2etest.Login(t, c2, base+"/home", "bob", "bob-password", e2etest.MFACode, rkFrom(rkChangchun))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusForbidden || !bytes.Contains(body, []byte("country_denied")) {
		t.Errorf("MFA login from CN: %d %.300s, want 403 country_denied", resp.StatusCode, body)
	}
	if got := rkUpstreamFrom(s, rkChangchun); len(got) > 0 {
		t.Errorf("denied requests reached the app: %q", got)
	}
	s.hook.wait(t, "deny", func(e rkEvent) bool { return e.Decision == "deny" && slices.Contains(e.Reasons, "country_denied") })
}

// TestRiskGeoIPStartupErrors: a missing, corrupt or wrong-type City
// database stops `edgeauth run` at start-up with a message naming the file.
func TestRiskGeoIPStartupErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "corrupt.mmdb")
	if err := os.WriteFile(corrupt, bytes.Repeat([]byte("not a maxmind database "), 200), 0o600); err != nil {
		t.Fatal(err)
	}
	asn := filepath.Join(dir, "asn.mmdb")
	if err := geoiptest.WriteASN(asn, geoiptest.StandardASN); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
	}{
		{name: "missing", path: filepath.Join(dir, "no-such-city.mmdb"), want: "no such file"},
		{name: "corrupt", path: corrupt, want: "corrupt"},
		{name: "wrong type", path: asn, want: "wrong database type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := filepath.Join(t.TempDir(), "edgeauth.yaml")
			doc := fmt.Sprintf("listen: \"127.0.0.1:%d\"\nadmin: {listen: \"\"}\ngeoip: {city: %q}\nroutes:\n  - {name: app, path: /, upstream: \"http://127.0.0.1:9\", auth: none}\n",
				e2etest.FreePort(t), tc.path)
			if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
				t.Fatal(err)
			}
			p := e2etest.StartProc(t, "edgeauth", e2etest.Binary(t), []string{"run", "-config", cfg}, nil)
			select {
			case <-p.Done():
			case <-time.After(e2etest.StartTimeout):
				t.Fatalf("edgeauth kept running with a %s city database; output:\n%s", tc.name, p.Output())
			}
			if p.Err() == nil {
				t.Errorf("exit status 0, want non-zero")
			}
			out := p.Output()
			if !strings.Contains(out, tc.path) || !strings.Contains(out, tc.want) {
				t.Errorf("output does not name %s and %q:\n%s", tc.path, tc.want, out)
			}
		})
	}
}
