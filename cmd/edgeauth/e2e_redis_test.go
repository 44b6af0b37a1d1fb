package main

// Real-process end-to-end tests of issue 6: two edgeauth processes (A and
// B, same config but their ports) sharing one real redis-server, a real
// development provider, and the `edgeauth sessions` CLI. They pin what an
// operator relies on when running several instances: a session works on
// every instance, offboarding reaches every instance within a second, a
// restart keeps sessions, a Redis outage degrades as documented and heals
// by itself, and a corrupt record is no session rather than a crash.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/edgeauth/edgeauth/internal/devidp"
	"github.com/edgeauth/edgeauth/internal/e2etest"
	"github.com/edgeauth/edgeauth/middleware/session"
	"github.com/edgeauth/edgeauth/middleware/session/redisstore/redistest"
)

// rcCookie is the cookie name of the configs below (plain HTTP, so no
// __Host- prefix).
const rcCookie = "edgeauth_session"

// rcCluster is a provider, one Redis and two edgeauth instances in front of
// one recording upstream.
type rcCluster struct {
	A, B       *e2etest.Edgeauth
	Issuer     string
	Redis      *redistest.Server
	Upstream   *e2etest.Upstream
	SessionKey string
	AdminToken string
	TokenFile  string
	// Provider is set when the provider runs in-process (back-channel
	// logout needs devidp.Provider.LogoutUser).
	Provider *devidp.Provider
}

type rcOptions struct {
	// Redis configures the redis-server.
	Redis redistest.Options
	// RedisAuth is YAML under redis: for credentials (username,
	// password_file), with %s standing for a file holding RedisSecret.
	RedisAuth   string
	RedisSecret string
	// L1TTL and OutageGrace are the redis.l1_ttl and redis.outage_grace
	// values.
	L1TTL, OutageGrace string
	// InProcessIDP serves devidp in this test process with B's back-channel
	// logout endpoint registered, instead of an `edgeauth idp` process.
	InProcessIDP bool
}

func startRC(t *testing.T, o rcOptions) *rcCluster {
	t.Helper()
	ports := map[int]bool{}
	free := func() int {
		for {
			if p := e2etest.FreePort(t); !ports[p] {
				ports[p] = true
				return p
			}
		}
	}
	portA, adminA, portB, adminB := free(), free(), free(), free()
	urlA, urlB := fmt.Sprintf("http://127.0.0.1:%d", portA), fmt.Sprintf("http://127.0.0.1:%d", portB)
	redirects := []string{urlA + "/.edgeauth/callback", urlB + "/.edgeauth/callback"}

	c := &rcCluster{
		Redis:      redistest.Start(t, o.Redis),
		Upstream:   e2etest.StartUpstream(t),
		SessionKey: e2etest.RandomHex(t, 32),
		AdminToken: e2etest.RandomHex(t, 32),
	}
	dir := t.TempDir()
	c.TokenFile = filepath.Join(dir, "admin-token")
	rcWriteFile(t, c.TokenFile, c.AdminToken+"\n")
	if o.InProcessIDP {
		c.Provider, c.Issuer = rcInProcessIDP(t, redirects, urlB+"/.edgeauth/backchannel-logout")
	} else {
		c.Issuer = e2etest.StartIDP(t, e2etest.IDPOptions{RedirectURIs: redirects}).Issuer
	}
	auth := ""
	if o.RedisAuth != "" {
		secret := filepath.Join(dir, "redis-secret")
		rcWriteFile(t, secret, o.RedisSecret+"\n")
		auth = fmt.Sprintf(o.RedisAuth, secret)
	}
	cfg := func(port, admin int) string {
		return fmt.Sprintf(`log: {level: info, format: json}
listen: "127.0.0.1:%d"
admin:
  listen: "127.0.0.1:%d"
  token_file: %q
oidc:
  issuer: %q
  client_id: %s
  client_secret: %s
  scopes: [openid, email, profile, groups]
session:
  secrets: [%q]
  store: redis
redis:
  addrs: [%q]
  l1_ttl: %s
  outage_grace: %s
%s
routes:
  - name: app
    path: /
    upstream: %q
`, port, admin, c.TokenFile, c.Issuer, e2etest.ClientID, e2etest.ClientSecret, c.SessionKey,
			c.Redis.Addr, o.L1TTL, o.OutageGrace, rcIndent(auth, "  "), c.Upstream.URL)
	}
	c.A = e2etest.StartEdgeauth(t, cfg(portA, adminA))
	c.B = e2etest.StartEdgeauth(t, cfg(portB, adminB))
	return c
}

func rcIndent(s, prefix string) string {
	if s == "" {
		return ""
	}
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = prefix + lines[i]
	}
	return strings.Join(lines, "\n")
}

func rcWriteFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// rcInProcessIDP serves a devidp provider on a loopback listener of this
// process, so that the test can call LogoutUser (the `edgeauth idp`
// process has no way to trigger a back-channel logout from outside).
func rcInProcessIDP(t *testing.T, redirects []string, backchannel string) (*devidp.Provider, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + ln.Addr().String()
	p, err := devidp.New(devidp.Options{Issuer: issuer, Clients: []devidp.Client{{
		ID: e2etest.ClientID, Secret: e2etest.ClientSecret, RedirectURIs: redirects, BackChannelLogoutURI: backchannel,
	}}})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- devidp.Serve(ctx, ln, p) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("in-process provider: %v", err)
		}
	})
	return p, issuer
}

// login signs user in on base and returns the session cookie value.
func (c *rcCluster) login(t *testing.T, base, user string) string {
	t.Helper()
	hc := e2etest.NewClient(t)
	resp, err := e2etest.Login(t, hc, base+"/hello", user, user+"-password", "", nil)
	if err != nil {
		t.Fatalf("login %s on %s: %v", user, base, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login %s on %s: status %d, want 200", user, base, resp.StatusCode)
	}
	ck := e2etest.Cookie(t, hc, base, rcCookie)
	if ck == "" {
		t.Fatalf("login %s on %s: no %s cookie", user, base, rcCookie)
	}
	return ck
}

// rcProbeClient has no cookie jar: every probe sends exactly the cookie it is
// given, so an answer that clears the cookie on one instance cannot make a
// later probe of the other instance look refused.
func rcProbeClient(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// rcVisit is a browser navigation to base/hello carrying only cookie.
func rcVisit(t *testing.T, hc *http.Client, base, cookie string) (*http.Response, []byte) {
	t.Helper()
	return e2etest.Navigate(t, hc, base+"/hello", http.Header{"Cookie": {rcCookie + "=" + cookie}})
}

// rcRefused reports whether resp sends the browser to sign in at issuer:
// what edgeauth answers a navigation without a valid session.
func rcRefused(resp *http.Response, issuer string) bool {
	return resp.StatusCode == http.StatusFound && strings.HasPrefix(resp.Header.Get("Location"), issuer+"/")
}

func rcIdentity(t *testing.T, body []byte) map[string]string {
	t.Helper()
	var e e2etest.Echo
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("upstream echo: %v in %q", err, body)
	}
	return e.Identity
}

// rcWaitRefused polls every instance in bases with cookie until each refuses
// it, and returns how long each took from start. It fails the test after
// within.
func rcWaitRefused(t *testing.T, hc *http.Client, bases []string, cookie, issuer string, start time.Time, within time.Duration) []time.Duration {
	t.Helper()
	took := make([]time.Duration, len(bases))
	left := len(bases)
	deadline := start.Add(within)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		for i, b := range bases {
			if took[i] != 0 {
				continue
			}
			resp, _ := rcVisit(t, hc, b, cookie)
			if rcRefused(resp, issuer) {
				took[i] = time.Since(start)
				left--
			} else if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s while waiting for the revocation: status %d, want 200 or a login redirect", b, resp.StatusCode)
			}
		}
		if left == 0 {
			return took
		}
		if time.Now().After(deadline) {
			t.Fatalf("session still accepted %s after the revocation (refused after %v per instance %v)", within, took, bases)
		}
		<-tick.C
	}
}

// rcCLI runs `edgeauth sessions ARGS...` (the built binary) and returns
// its exit code and output.
func rcCLI(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e2etest.Binary(t), append([]string{"sessions"}, args...)...)
	cmd.Env = append(os.Environ(), "EDGEAUTH_ADMIN_TOKEN=")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("edgeauth sessions %v: %v\n%s", args, err, out)
	return 0, ""
}

// TestRedisTwoInstances is the multi-instance story on a password-protected
// Redis (password from redis.password_file): a session made on A works on
// B; the admin API refuses bad tokens; a restart of A keeps the session; a
// corrupt record is no session and the instance keeps serving; offboarding
// with the CLI on B is refused on A within a second.
func TestRedisTwoInstances(t *testing.T) {
	t.Parallel()
	const redisPassword = "redis-e2e-password-7f3a"
	c := startRC(t, rcOptions{
		Redis:     redistest.Options{Password: redisPassword},
		RedisAuth: "password_file: %q", RedisSecret: redisPassword,
		// A long L1 TTL: within the 1 s target only the pub/sub broadcast
		// can make A drop the session, so the test cannot pass on expiry.
		L1TTL: "30s", OutageGrace: "5m",
	})
	hc := rcProbeClient(t)

	// Login on A, request on B with the same cookie.
	alice := c.login(t, c.A.URL, "alice")
	resp, body := rcVisit(t, hc, c.B.URL, alice)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("B with A's session: status %d, want 200: %s", resp.StatusCode, body)
	}
	if got := rcIdentity(t, body); got["X-Auth-Request-User"] != "u-alice" || got["X-Auth-Request-Email"] != "alice@example.com" {
		t.Errorf("identity B sent = %v, want alice's", got)
	}

	t.Run("admin API auth", func(t *testing.T) {
		url := c.B.AdminURL + "/admin/users/u-alice/sessions"
		for _, tc := range []struct {
			name, auth string
			want       int
		}{
			{name: "no token", want: http.StatusUnauthorized},
			{name: "wrong token", auth: "Bearer " + strings.Repeat("0", len(c.AdminToken)), want: http.StatusUnauthorized},
			{name: "token prefix", auth: "Bearer " + c.AdminToken[:len(c.AdminToken)-1], want: http.StatusUnauthorized},
			{name: "basic scheme", auth: "Basic " + c.AdminToken, want: http.StatusUnauthorized},
			{name: "right token", auth: "Bearer " + c.AdminToken, want: http.StatusOK},
		} {
			h := http.Header{}
			if tc.auth != "" {
				h.Set("Authorization", tc.auth)
			}
			resp, body := e2etest.Do(t, hc, http.MethodGet, url, h, nil)
			if resp.StatusCode != tc.want {
				t.Errorf("%s: status %d, want %d: %s", tc.name, resp.StatusCode, tc.want, body)
			}
			if tc.want == http.StatusUnauthorized && strings.Contains(string(body), "created") {
				t.Errorf("%s: 401 body leaks session data: %s", tc.name, body)
			}
		}
		// The CLI with a wrong token fails and says so.
		bad := filepath.Join(t.TempDir(), "bad-token")
		rcWriteFile(t, bad, strings.Repeat("x", 40))
		if code, out := rcCLI(t, "list", "-sub", "u-alice", "-admin", c.B.AdminURL, "-token-file", bad); code != 1 || !strings.Contains(out, "401") {
			t.Errorf("CLI with a wrong token: exit %d, output %q; want exit 1 naming 401", code, out)
		}
		// The right token lists alice's one session, made on A, from B.
		code, out := rcCLI(t, "list", "-sub", "u-alice", "-json", "-admin", c.B.AdminURL, "-token-file", c.TokenFile)
		var list struct {
			Subject  string            `json:"subject"`
			Sessions []json.RawMessage `json:"sessions"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &list) != nil {
			t.Fatalf("CLI list: exit %d, output %q", code, out)
		}
		if list.Subject != "u-alice" || len(list.Sessions) != 1 {
			t.Errorf("CLI list on B = %s, want alice's one session", out)
		}
	})

	// A restart keeps the session. Not a subtest: the restarted process
	// belongs to the test's cleanup, not to a subtest's.
	c.A.Restart(t)
	if resp, body := rcVisit(t, hc, c.A.URL, alice); resp.StatusCode != http.StatusOK {
		t.Fatalf("A after restart: status %d, want 200: %s", resp.StatusCode, body)
	}

	t.Run("corrupt record is no session", func(t *testing.T) {
		bob := c.login(t, c.A.URL, "bob")
		codec, err := session.NewCodec([][]byte{[]byte(c.SessionKey)})
		if err != nil {
			t.Fatal(err)
		}
		id, ok := codec.Decode([]byte(bob))
		if !ok {
			t.Fatal("bob's cookie does not decode with the configured key")
		}
		// B has never read bob's session, so its next read goes to Redis
		// and meets the planted bytes (A keeps its L1 copy up to l1_ttl:
		// that is the documented L1 trade-off, not checked here).
		for _, v := range []string{"\x01\xff\xfe garbage that is not a record", ""} {
			if _, err := c.Redis.Do(t.Context(), []string{redisPassword}, "SET", "edgeauth:s:"+id, v); err != nil {
				t.Fatalf("plant corrupt record: %v", err)
			}
			resp, body := rcVisit(t, hc, c.B.URL, bob)
			if !rcRefused(resp, c.Issuer) {
				t.Fatalf("B with a corrupt record %q: status %d Location %q, want a login redirect: %s",
					v, resp.StatusCode, resp.Header.Get("Location"), body)
			}
		}
		if !strings.Contains(c.B.Output(), "skipping corrupt session record") {
			t.Error("B did not log the corrupt record")
		}
		// B keeps serving other sessions.
		if resp, body := rcVisit(t, hc, c.B.URL, alice); resp.StatusCode != http.StatusOK {
			t.Fatalf("B after a corrupt record: alice status %d, want 200: %s", resp.StatusCode, body)
		}
	})

	t.Run("offboarding via CLI on B reaches A within 1s", func(t *testing.T) {
		// A holds alice's session in L1 (it served it after the restart).
		if resp, _ := rcVisit(t, hc, c.A.URL, alice); resp.StatusCode != http.StatusOK {
			t.Fatalf("A before revoke: status %d, want 200", resp.StatusCode)
		}
		code, out := rcCLI(t, "revoke", "-sub", "u-alice", "-admin", c.B.AdminURL, "-token-file", c.TokenFile)
		done := time.Now()
		if code != 0 {
			t.Fatalf("CLI revoke: exit %d: %s", code, out)
		}
		var got struct {
			Subject string `json:"subject"`
			Revoked int    `json:"revoked"`
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("CLI revoke output %q: %v", out, err)
		}
		if diff := cmp.Diff(struct {
			Subject string `json:"subject"`
			Revoked int    `json:"revoked"`
		}{"u-alice", 1}, got); diff != "" {
			t.Errorf("CLI revoke (-want +got):\n%s", diff)
		}
		took := rcWaitRefused(t, hc, []string{c.A.URL, c.B.URL}, alice, c.Issuer, done, time.Second)
		t.Logf("revocation on B refused on A after %v, on B after %v (from CLI exit)", took[0], took[1])
	})
}

// TestRedisBackChannelLogout: the provider's back-channel logout reaches
// B only (one logout URI per client), and the session made on A is refused
// on both instances within a second. Redis runs with an ACL user restricted
// to edgeauth's key prefix and no default user.
func TestRedisBackChannelLogout(t *testing.T) {
	t.Parallel()
	c := startRC(t, rcOptions{
		Redis: redistest.Options{ACLUsers: []string{
			"user default off",
			"user edgeauth on >acl-e2e-secret ~edgeauth:* &edgeauth:* +@all",
		}},
		RedisAuth: "username: edgeauth\npassword_file: %q", RedisSecret: "acl-e2e-secret",
		L1TTL: "30s", OutageGrace: "5m",
		InProcessIDP: true,
	})
	hc := rcProbeClient(t)
	alice := c.login(t, c.A.URL, "alice")
	for _, base := range []string{c.A.URL, c.B.URL} {
		if resp, body := rcVisit(t, hc, base, alice); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s before logout: status %d, want 200: %s", base, resp.StatusCode, body)
		}
	}
	if err := c.Provider.LogoutUser(t.Context(), "u-alice"); err != nil {
		t.Fatalf("back-channel logout: %v", err)
	}
	done := time.Now()
	took := rcWaitRefused(t, hc, []string{c.A.URL, c.B.URL}, alice, c.Issuer, done, time.Second)
	t.Logf("back-channel logout (delivered to B) refused on A after %v, on B after %v", took[0], took[1])
}

// rcLoad is what the load loop saw.
type rcLoad struct {
	mu       sync.Mutex
	statuses map[int]int
	errs     []string
	n        int
}

func (r *rcLoad) add(status int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	if err != nil {
		if len(r.errs) < 5 {
			r.errs = append(r.errs, err.Error())
		}
		return
	}
	r.statuses[status]++
}

func (r *rcLoad) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// TestRedisOutage kills Redis under a bounded load of an existing session
// on A and checks the documented degradation: the existing session keeps
// working (outage grace), B — which never cached it — fails closed with
// 503, a new login gets the 503 page, nothing else 5xx, and after Redis
// returns a new login works without restarting edgeauth.
func TestRedisOutage(t *testing.T) {
	t.Parallel()
	c := startRC(t, rcOptions{
		// A short L1 TTL so that during the outage the session is served
		// through the grace path, not as a fresh L1 hit.
		L1TTL: "300ms", OutageGrace: "1m",
	})
	hc := rcProbeClient(t)
	alice := c.login(t, c.A.URL, "alice")

	res := &rcLoad{statuses: map[int]int{}}
	stop := make(chan struct{})
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		// Bounded in count and time whatever happens to the test.
		const maxRequests, maxTime = 20000, 60 * time.Second
		end := time.Now().Add(maxTime)
		req, _ := http.NewRequest(http.MethodGet, c.A.URL+"/hello", nil)
		req.Header.Set("Cookie", rcCookie+"="+alice)
		req.Header.Set("Accept", e2etest.AcceptHTML)
		req.Header.Set("User-Agent", e2etest.UserAgent)
		for i := 0; i < maxRequests && time.Now().Before(end); i++ {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := hc.Do(req)
			if err == nil {
				resp.Body.Close()
				res.add(resp.StatusCode, nil)
			} else {
				res.add(0, err)
			}
		}
	}()
	stopLoad := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-loadDone
	}
	t.Cleanup(stopLoad)
	e2etest.Eventually(t, 10*time.Second, "load running", func() bool { return res.count() >= 20 })

	c.Redis.Kill()
	killedAt := res.count()
	// The session is served from the stale L1 entry: edgeauth logs that
	// degraded decision.
	e2etest.Eventually(t, 10*time.Second, "A serving from L1 within the outage grace", func() bool {
		return strings.Contains(c.A.Output(), `"served_from_l1"`)
	})

	// A new login fails closed with a clear page.
	resp, body := e2etest.Navigate(t, e2etest.NewClient(t), c.A.URL+"/hello", nil)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(string(body), "temporarily unavailable") {
		t.Errorf("new login during the outage: status %d, %s, body %q; want the 503 HTML page",
			resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	// B never cached alice's session: it cannot check it, so it fails
	// closed (503, not a sign-out that would lose the user's place).
	resp, body = rcVisit(t, hc, c.B.URL, alice)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "session_store_unavailable") {
		t.Errorf("B with an uncached session during the outage: status %d body %q, want 503 session_store_unavailable", resp.StatusCode, body)
	}

	stopLoad()
	res.mu.Lock()
	statuses, errs, n := res.statuses, res.errs, res.n
	res.mu.Unlock()
	t.Logf("load on A: %d requests (%d after Redis was killed): %v", n, n-killedAt, statuses)
	if n-killedAt < 10 {
		t.Errorf("only %d requests after Redis was killed; the outage was not under load", n-killedAt)
	}
	if diff := cmp.Diff(map[int]int{http.StatusOK: n}, statuses); diff != "" || len(errs) > 0 {
		t.Errorf("existing session during the outage (-want all 200 +got):\n%s\ntransport errors: %v", diff, errs)
	}

	// Redis comes back (empty: no persistence in the test server); a new
	// login works without restarting edgeauth.
	c.Redis.Restart()
	restarted := time.Now()
	var last int
	e2etest.Eventually(t, 20*time.Second, "new login after Redis returned", func() bool {
		resp, err := e2etest.Login(t, e2etest.NewClient(t), c.A.URL+"/hello", "bob", "bob-password", "", nil)
		if err != nil {
			t.Fatalf("login after recovery: %v", err)
		}
		last = resp.StatusCode
		if last != http.StatusOK && last != http.StatusServiceUnavailable {
			t.Fatalf("login after recovery: status %d, want 200 (or 503 until the store notices)", last)
		}
		return last == http.StatusOK
	})
	t.Logf("new login works %v after Redis restarted", time.Since(restarted).Round(time.Millisecond))
	// Redis came back empty, so alice's session is gone: once the store
	// reaches Redis again the grace copy is no longer used and A sends her
	// to sign in (never a 5xx on the way).
	tookRefused := rcWaitRefused(t, hc, []string{c.A.URL}, alice, c.Issuer, time.Now(), 5*time.Second)
	t.Logf("A stopped serving the lost session from L1 %v later", tookRefused[0])
	for _, p := range []*e2etest.Edgeauth{c.A, c.B} {
		if out := p.Output(); strings.Contains(out, "panic") || p.Proc.Exited() {
			t.Errorf("edgeauth (pid %d) panicked or exited during the outage", p.Proc.PID())
		}
	}
	if !strings.Contains(c.A.Output(), "redis reachable again") {
		t.Error("A did not log that Redis is reachable again")
	}
}
