// Command redis measures edgeauth with the Redis session store (issue 6):
// two edgeauth instances sharing one redis-server, load split across both,
// against one instance with the memory store in the same run; Redis round
// trips per request; and how fast a revocation on instance A is refused by
// instance B.
//
//	go run ./bench/redis -duration 10s
//
// Every server (redis-server, the development provider, the upstream and
// the edgeauth instances) is a child process on 127.0.0.1, pinned to
// -server-cpu; wrk is pinned to -load-cpu. Every child is stopped by its PID
// when the run ends, and killed by the kernel if the harness dies. Results
// are printed and written as a markdown section to -out.
//
// Trust boundary: a benchmark harness. It trusts the binaries it builds and
// runs, and checks every answer it relies on (a run with refused sessions
// or socket errors is reported as failed, not measured).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/edgeauth/edgeauth/bench"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/edgeauth/edgeauth/middleware/session"
)

type flags struct {
	duration    time.Duration
	conns       int
	rounds      int
	revocations int
	out         string
	bin         string
	upstreamBin string
	serverCPU   int
	loadCPU     int
}

func main() {
	var f flags
	flag.DurationVar(&f.duration, "duration", 10*time.Second, "length of each measured wrk run (whole seconds)")
	flag.IntVar(&f.conns, "conns", 32, "wrk connections per setup (split across A and B for the pair)")
	flag.IntVar(&f.rounds, "rounds", 2, "measured rounds, each running both setups")
	flag.IntVar(&f.revocations, "revocations", 200, "revocations to time A→B")
	flag.StringVar(&f.out, "out", "bench/redis/RESULTS.md", "markdown file to write (empty: print only)")
	flag.StringVar(&f.bin, "bin", "", "edgeauth binary (empty: go build ./cmd/edgeauth)")
	flag.StringVar(&f.upstreamBin, "upstream-bin", "", "upstream binary (empty: go build ./bench/upstream)")
	flag.IntVar(&f.serverCPU, "server-cpu", 0, "CPU for the servers (-1: no pinning)")
	flag.IntVar(&f.loadCPU, "load-cpu", 1, "CPU for wrk (-1: no pinning)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, f, strings.Join(os.Args[1:], " "))
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/redis:", err)
		os.Exit(1)
	}
}

const (
	sessionSecret = "bench-redis-session-secret-0123456789abcdef0123456789abcdef"
	adminToken    = "bench-redis-admin-token-0123456789abcdef"
	cookieName    = "edgeauth_session"
	userAgent     = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)

func run(ctx context.Context, f flags, args string) (err error) {
	if f.duration < time.Second || f.conns < 2 || f.rounds < 1 || f.revocations < 0 {
		return errors.New("need -duration >= 1s, -conns >= 2, -rounds >= 1, -revocations >= 0")
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		return fmt.Errorf("wrk not found (apt-get install -y wrk): %w", err)
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		return fmt.Errorf("redis-server not found (apt-get install -y redis-server): %w", err)
	}
	pinning := fmt.Sprintf("Servers pinned to CPU %d, wrk to CPU %d with taskset.", f.serverCPU, f.loadCPU)
	if _, err := exec.LookPath("taskset"); err != nil || f.serverCPU < 0 || f.loadCPU < 0 {
		f.serverCPU, f.loadCPU = -1, -1
		pinning = "No CPU pinning (taskset missing or disabled)."
	}
	dir, err := os.MkdirTemp("", "edgeauth-bench-redis-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ps := &procs{Dir: dir}
	defer func() {
		for _, e := range ps.StopAll(5 * time.Second) {
			fmt.Fprintln(os.Stderr, "bench/redis:", e)
		}
	}()

	if f.bin == "" {
		if f.bin, err = goBuild(ctx, dir, "edgeauth", "./cmd/edgeauth"); err != nil {
			return err
		}
	}
	if f.upstreamBin == "" {
		if f.upstreamBin, err = goBuild(ctx, dir, "upstream", "./bench/upstream"); err != nil {
			return err
		}
	}

	// Servers.
	redisAddr, err := ps.FreeAddr()
	if err != nil {
		return err
	}
	_, redisPort, _ := net.SplitHostPort(redisAddr)
	if _, err := ps.Start("redis", f.serverCPU, nil, "redis-server", "--port", redisPort, "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no", "--loglevel", "warning"); err != nil {
		return err
	}
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	if err := pollUntil(ctx, 10*time.Second, func() bool { return rdb.Ping(ctx).Err() == nil }); err != nil {
		return fmt.Errorf("redis-server: %w", err)
	}
	upAddr, err := ps.FreeAddr()
	if err != nil {
		return err
	}
	up, err := ps.Start("upstream", f.serverCPU, nil, f.upstreamBin, "-listen", upAddr)
	if err != nil {
		return err
	}
	if err := up.WaitListening(ctx, upAddr, 10*time.Second); err != nil {
		return err
	}
	names := []string{"a", "b", "mem"}
	inst := map[string]*instance{}
	var redirects []string
	for _, n := range names {
		in := &instance{name: n}
		if in.addr, err = ps.FreeAddr(); err != nil {
			return err
		}
		if in.admin, err = ps.FreeAddr(); err != nil {
			return err
		}
		inst[n] = in
		redirects = append(redirects, "-redirect-uri", in.url()+"/.edgeauth/callback")
	}
	issuer, err := startIDP(ctx, ps, f.bin, redirects)
	if err != nil {
		return err
	}
	for _, n := range names {
		in := inst[n]
		store := "redis\nredis:\n  addrs: [\"" + redisAddr + "\"]"
		if n == "mem" {
			store = "memory"
		}
		cfgPath := filepath.Join(dir, n+".yaml")
		if err := os.WriteFile(cfgPath, []byte(instanceConfig(in, issuer, upAddr, dir, store)), 0o600); err != nil {
			return err
		}
		if in.proc, err = ps.Start("edgeauth-"+n, f.serverCPU, nil, f.bin, "run", "-config", cfgPath); err != nil {
			return err
		}
	}
	hc := &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16}, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer hc.CloseIdleConnections()
	for _, n := range names {
		if err := inst[n].waitReady(ctx, hc); err != nil {
			return err
		}
	}
	fmt.Printf("servers up: redis %s, provider %s, A %s, B %s, memory %s\n", redisAddr, issuer,
		inst["a"].url(), inst["b"].url(), inst["mem"].url())

	// Sessions from real logins: one on A (used on A and B), one on the
	// memory instance.
	pairCookies, err := login(ctx, inst["a"].url(), "alice")
	if err != nil {
		return err
	}
	memCookies, err := login(ctx, inst["mem"].url(), "alice")
	if err != nil {
		return err
	}
	// wrk counts only >= 400 as errors: make sure a refused session is one.
	if st, err := apiStatus(ctx, hc, inst["a"].url()+"/hello", ""); err != nil || st < 400 {
		return fmt.Errorf("a request without a session got %d (%v); the harness needs a 4xx to detect refused sessions", st, err)
	}
	for _, c := range []struct{ u, ck string }{{inst["a"].url(), pairCookies}, {inst["b"].url(), pairCookies}, {inst["mem"].url(), memCookies}} {
		if st, err := apiStatus(ctx, hc, c.u+"/hello", c.ck); err != nil || st != http.StatusOK {
			return fmt.Errorf("%s with a fresh session: status %d (%v), want 200", c.u, st, err)
		}
	}

	rep := report{Date: time.Now(), Cores: runtime.NumCPU(), Duration: f.duration, Conns: f.conns, Pinning: pinning,
		LoadAvg: loadAverage(),
		Command: "go run ./bench/redis " + args}
	if out, err := exec.CommandContext(ctx, "lscpu").Output(); err == nil {
		rep.CPUModel = parseCPUModel(string(out))
	} else {
		rep.CPUModel = "unknown"
	}
	hdr := func(ck string) []string { return []string{"Cookie: " + ck, "User-Agent: " + userAgent} }
	warm := 2 * time.Second
	for r := 0; r < f.rounds; r++ {
		var rd loadRound
		// Memory store, one instance.
		if _, err := bench.RunWrk(ctx, f.loadCPU, inst["mem"].url()+"/hello", warm, f.conns, hdr(memCookies)); err != nil {
			return err
		}
		if rd.Memory, err = bench.RunWrk(ctx, f.loadCPU, inst["mem"].url()+"/hello", f.duration, f.conns, hdr(memCookies)); err != nil {
			return err
		}
		// Redis pair: warm both L1s, then measure with load split evenly.
		if _, _, err := runPair(ctx, f.loadCPU, inst, warm, f.conns, hdr(pairCookies)); err != nil {
			return err
		}
		before, err := commandStatsOf(ctx, rdb)
		if err != nil {
			return err
		}
		if rd.RedisA, rd.RedisB, err = runPair(ctx, f.loadCPU, inst, f.duration, f.conns, hdr(pairCookies)); err != nil {
			return err
		}
		after, err := commandStatsOf(ctx, rdb)
		if err != nil {
			return err
		}
		rd.Commands, rd.RoundTrips = before.sub(after)
		// A alone with every connection (its L1 is warm).
		if rd.RedisSolo, err = bench.RunWrk(ctx, f.loadCPU, inst["a"].url()+"/hello", f.duration, f.conns, hdr(pairCookies)); err != nil {
			return err
		}
		rep.Rounds = append(rep.Rounds, rd)
		fmt.Printf("round %d: memory %.0f req/s; redis A+B %.0f req/s (%.1f%%); redis A alone %.0f req/s (%.1f%%); %.4f Redis round trips/request (%s); socket errors %d, error responses %d\n",
			r+1, rd.Memory.RequestsPerSec, rd.redisRPS(), 100*rd.ratio(), rd.RedisSolo.RequestsPerSec, 100*rd.soloRatio(),
			rd.tripsPerRequest(), rd.Commands, rd.errors(), rd.non2xx())
		// Socket errors (wrk's 2s timeout on an overloaded shared machine)
		// are reported; an error response means a refused session, which
		// invalidates the run.
		if e := rd.non2xx(); e > 0 {
			return fmt.Errorf("round %d: %d error responses (refused sessions); not a valid measurement", r+1, e)
		}
	}

	if f.revocations > 0 {
		codec, err := session.NewCodec([][]byte{[]byte(sessionSecret)})
		if err != nil {
			return err
		}
		rep.Revocations, rep.RevokeCalls, err = measureRevocations(ctx, hc, codec, inst["a"], inst["b"], f.revocations)
		if err != nil {
			return err
		}
	}

	md := rep.markdown()
	fmt.Println()
	fmt.Print(md)
	if f.out != "" {
		if err := os.WriteFile(f.out, []byte(md), 0o644); err != nil {
			return err
		}
		fmt.Println("\nwritten to", f.out)
	}
	return nil
}

// instance is one edgeauth process of the run.
type instance struct {
	name, addr, admin string
	proc              *proc
}

func (in *instance) url() string { return "http://" + in.addr }

func (in *instance) waitReady(ctx context.Context, hc *http.Client) error {
	err := pollUntil(ctx, 30*time.Second, func() bool {
		if in.proc.Exited() {
			return true
		}
		resp, err := hc.Get("http://" + in.admin + "/readyz")
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if err == nil && in.proc.Exited() {
		err = errors.New("exited")
	}
	if err != nil {
		return fmt.Errorf("edgeauth %s not ready: %w; log: %s", in.name, err, bench.Tail(in.proc.Log))
	}
	return nil
}

// instanceConfig is the same for every instance but its ports, audit file
// and store (memory, or redis followed by the top-level redis section).
// Logs at warn so that access logging does not dominate the
// measurement (audit events still go to a file).
func instanceConfig(in *instance, issuer, upstream, dir, store string) string {
	return fmt.Sprintf(`log: {level: warn, format: json}
listen: %q
admin:
  listen: %q
  token: %q
audit:
  file: %q
oidc:
  issuer: %q
  client_id: edgeauth-demo
  client_secret: edgeauth-demo-secret
  scopes: [openid, email, profile, groups]
session:
  secrets: [%q]
  store: %s
routes:
  - name: app
    path: /
    upstream: "http://%s"
`, in.addr, in.admin, adminToken, filepath.Join(dir, "audit-"+in.name+".log"), issuer, sessionSecret, store, upstream)
}

// goBuild builds pkg into dir.
func goBuild(ctx context.Context, dir, name, pkg string) (string, error) {
	out := filepath.Join(dir, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return out, nil
}

var issuerLine = regexp.MustCompile(`(?m)^issuer (http://127\.0\.0\.1:[0-9]+)\s*$`)

// startIDP runs `edgeauth idp` and returns its issuer.
func startIDP(ctx context.Context, p *procs, bin string, redirects []string) (string, error) {
	pr, err := p.Start("idp", -1, nil, bin, append([]string{"idp", "-listen", "127.0.0.1:0"}, redirects...)...)
	if err != nil {
		return "", err
	}
	var issuer string
	err = pollUntil(ctx, 30*time.Second, func() bool {
		b, _ := os.ReadFile(pr.Log)
		if m := issuerLine.FindSubmatch(b); m != nil {
			issuer = string(m[1])
			return true
		}
		return pr.Exited()
	})
	if err == nil && issuer == "" {
		err = errors.New("exited")
	}
	if err != nil {
		return "", fmt.Errorf("provider: %w; log: %s", err, bench.Tail(pr.Log))
	}
	return issuer, nil
}

// login signs user in at base through the provider's form, as a browser
// would, and returns the Cookie header the browser would then send to base.
func login(ctx context.Context, base, user string) (string, error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return "", err
	}
	c := &http.Client{Jar: jar, Transport: &http.Transport{Proxy: nil}, Timeout: 15 * time.Second}
	defer c.CloseIdleConnections()
	get := func(u string) (*http.Response, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, nil, err
		}
		req.Header.Set("Accept", "text/html")
		req.Header.Set("User-Agent", userAgent)
		return doRead(c, req)
	}
	// Follows the redirects to the provider's login page.
	resp, page, err := get(base + "/hello")
	if err != nil {
		return "", fmt.Errorf("login: %w", err)
	}
	action, id, err := parseLoginForm(page)
	if err != nil {
		return "", fmt.Errorf("login: %s answered %d: %w", resp.Request.URL.Redacted(), resp.StatusCode, err)
	}
	formURL, err := resp.Request.URL.Parse(action)
	if err != nil {
		return "", fmt.Errorf("login: form action: %w", err)
	}
	form := url.Values{"id": {id}, "username": {user}, "password": {user + "-password"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, formURL.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "text/html")
	req.Header.Set("User-Agent", userAgent)
	// Follows the redirects back through edgeauth's callback to /hello.
	resp, body, err := doRead(c, req)
	if err != nil {
		return "", fmt.Errorf("login: %w", err)
	}
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Host != strings.TrimPrefix(base, "http://") {
		return "", fmt.Errorf("login: ended at %s with %d: %.200s", resp.Request.URL.Redacted(), resp.StatusCode, body)
	}
	u, _ := url.Parse(base)
	var parts []string
	for _, ck := range jar.Cookies(u) {
		parts = append(parts, ck.Name+"="+ck.Value)
	}
	h := strings.Join(parts, "; ")
	if !strings.Contains(h, cookieName+"=") {
		return "", errors.New("login: no session cookie")
	}
	return h, nil
}

func doRead(c *http.Client, req *http.Request) (*http.Response, []byte, error) {
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp, b, err
}

// apiStatus sends an API-style GET (no Accept: text/html) with cookies.
func apiStatus(ctx context.Context, hc *http.Client, u, cookies string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("User-Agent", userAgent)
	if cookies != "" {
		req.Header.Set("Cookie", cookies)
	}
	resp, _, err := doRead(hc, req)
	if err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}

func sessionCookieValue(cookies string) string {
	for _, p := range strings.Split(cookies, "; ") {
		if v, ok := strings.CutPrefix(p, cookieName+"="); ok {
			return v
		}
	}
	return ""
}

// measureRevocations logs in n sessions on A, has B serve each (so B holds
// it in L1 and only the broadcast can make B refuse it within its L1 TTL),
// revokes it on A's admin API and polls B back to back until it refuses.
func measureRevocations(ctx context.Context, hc *http.Client, codec *session.Codec, a, b *instance, n int) (fromAck, fromSend []time.Duration, err error) {
	for i := 0; i < n; i++ {
		ck, err := login(ctx, a.url(), "bob")
		if err != nil {
			return nil, nil, err
		}
		id, ok := codec.Decode([]byte(sessionCookieValue(ck)))
		if !ok {
			return nil, nil, errors.New("revocations: session cookie does not decode")
		}
		if st, err := apiStatus(ctx, hc, b.url()+"/hello", ck); err != nil || st != http.StatusOK {
			return nil, nil, fmt.Errorf("revocations: B before revoke: %d (%v)", st, err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodDelete, "http://"+a.admin+"/admin/sessions/"+url.PathEscape(id), nil)
		if err != nil {
			return nil, nil, err
		}
		req.Header.Set("Authorization", "Bearer "+adminToken)
		sent := time.Now()
		resp, body, err := doRead(hc, req)
		if err != nil {
			return nil, nil, fmt.Errorf("revocations: revoke: %w", err)
		}
		acked := time.Now()
		if resp.StatusCode != http.StatusOK {
			return nil, nil, fmt.Errorf("revocations: revoke: %d %s", resp.StatusCode, body)
		}
		deadline := acked.Add(5 * time.Second)
		for {
			st, err := apiStatus(ctx, hc, b.url()+"/hello", ck)
			if err != nil {
				return nil, nil, err
			}
			if st != http.StatusOK {
				now := time.Now()
				fromAck, fromSend = append(fromAck, now.Sub(acked)), append(fromSend, now.Sub(sent))
				break
			}
			if time.Now().After(deadline) {
				return nil, nil, fmt.Errorf("revocations: B still serves a session revoked on A %s ago", time.Since(acked))
			}
		}
	}
	return fromAck, fromSend, nil
}

// runPair loads A and B at once, half the connections each.
func runPair(ctx context.Context, cpu int, inst map[string]*instance, d time.Duration, conns int, headers []string) (wrkResult, wrkResult, error) {
	var wg sync.WaitGroup
	var ra, rb wrkResult
	var ea, eb error
	wg.Add(2)
	go func() {
		defer wg.Done()
		ra, ea = bench.RunWrk(ctx, cpu, inst["a"].url()+"/hello", d, conns/2, headers)
	}()
	go func() {
		defer wg.Done()
		rb, eb = bench.RunWrk(ctx, cpu, inst["b"].url()+"/hello", d, conns-conns/2, headers)
	}()
	wg.Wait()
	return ra, rb, errors.Join(ea, eb)
}

func commandStatsOf(ctx context.Context, rdb *redis.Client) (commandStats, error) {
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, fmt.Errorf("redis INFO commandstats: %w", err)
	}
	return parseCommandStats(info)
}

// pollUntil calls ok every 20ms until it is true or within passes.
func pollUntil(ctx context.Context, within time.Duration, ok func() bool) error {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !ok() {
		select {
		case <-tick.C:
		case <-deadline.C:
			return fmt.Errorf("timed out after %s", within)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// procs and proc are the shared process handling of package bench.
type (
	procs = bench.Procs
	proc  = bench.Proc
)

// loadAverage returns the 1/5/15-minute load averages, or "unknown".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], "/")
}
