// Command load is edgeauth's load harness. In one run it measures requests
// per second and p50/p99 latency, with wrk over keep-alive connections, for:
// the upstream directly, the reference proxy (bench/refproxy), nginx with a
// keep-alive proxy_pass, and edgeauth in each requested scenario. Targets
// are interleaved round by round (A B C D, A B C D, …) and the median per
// target is reported, so drift on a shared machine hits all alike.
//
//	go run ./bench/load -duration 10s -rounds 3 -out bench/RESULTS.md
//
// It builds every binary itself into a temporary directory, listens and
// connects on 127.0.0.1 only, pins servers to one CPU and wrk to another,
// is bounded in time (an overall deadline derived from the flags) and
// stops every process it started, by PID, on success, error or SIGINT.
//
// Trust boundary: the harness is a developer tool; it trusts its flags and
// the checkout it runs in, and talks to nothing but loopback.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

type options struct {
	duration, warmup time.Duration
	rounds, conns    int
	out              string
	scenarios        []string
	targets          []string // "" = all
	straceFor        time.Duration
	pprofFor         time.Duration
	pprofDir         string
	serverCPU        int
	wrkCPU           int
	bodySize         int
	keep             bool
	freeze           bool
}

func main() {
	var o options
	var scen, targets string
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of one measured wrk run per target and round (whole seconds)")
	flag.DurationVar(&o.warmup, "warmup", 3*time.Second, "wrk warm-up per target before the first round")
	flag.IntVar(&o.rounds, "rounds", 3, "interleaved rounds; the median per target is reported")
	flag.IntVar(&o.conns, "conns", 64, "keep-alive connections wrk opens")
	flag.StringVar(&o.out, "out", "", "markdown file to write the results into (between the load:begin/end markers if present); empty: stdout")
	flag.StringVar(&scen, "scenarios", "noauth", "edgeauth scenarios, comma-separated: "+strings.Join(scenarioNames(), ", "))
	flag.BoolVar(&o.freeze, "freeze", true, "stop (SIGSTOP) the other servers while one is measured, so their idle timers and background work do not share its CPU; the upstream always runs")
	flag.StringVar(&targets, "targets", "", "limit the baseline targets, comma-separated: direct, refproxy, refproxy-ea (refproxy with edgeauth's fasthttp settings), nginx (empty: all)")
	flag.DurationVar(&o.straceFor, "strace", 0, "after the rounds, count each server's system calls with strace -c for this long under load (0: off)")
	flag.DurationVar(&o.pprofFor, "pprof", 0, "after the rounds, take a CPU profile of each edgeauth target for this long under load, from its admin /debug/pprof/ (0: off)")
	flag.StringVar(&o.pprofDir, "pprof-dir", ".", "where -pprof writes <target>.pprof")
	flag.IntVar(&o.serverCPU, "server-cpu", 0, "CPU the servers are pinned to (-1: no pinning)")
	flag.IntVar(&o.wrkCPU, "wrk-cpu", 1, "CPU wrk is pinned to (-1: no pinning)")
	flag.IntVar(&o.bodySize, "body", 64, "upstream response body bytes")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (configs, logs) for inspection")
	flag.Parse()
	o.scenarios = splitList(scen)
	o.targets = splitList(targets)
	if err := o.check(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.budget())
	defer cancel()
	if err := run(ctx, o, os.Stderr); err != nil {
		stop()
		log.SetFlags(0)
		log.Fatal(err)
	}
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func (o options) check() error {
	var errs []error
	if o.duration < time.Second || o.duration > 5*time.Minute {
		errs = append(errs, errors.New("-duration must be from 1s to 5m"))
	}
	if o.warmup < 0 || o.warmup > time.Minute {
		errs = append(errs, errors.New("-warmup must be from 0 to 1m"))
	}
	if o.rounds < 1 || o.rounds > 20 {
		errs = append(errs, errors.New("-rounds must be from 1 to 20"))
	}
	if o.conns < 1 || o.conns > 4096 {
		errs = append(errs, errors.New("-conns must be from 1 to 4096"))
	}
	if o.straceFor < 0 || o.straceFor > 30*time.Second {
		errs = append(errs, errors.New("-strace must be from 0 to 30s"))
	}
	for _, s := range o.scenarios {
		if _, ok := scenarios[s]; !ok {
			errs = append(errs, fmt.Errorf("-scenarios: unknown %q (have %s)", s, strings.Join(scenarioNames(), ", ")))
		}
	}
	for _, t := range o.targets {
		if !slices.Contains(baseTargets, t) {
			errs = append(errs, fmt.Errorf("-targets: unknown %q (have %s)", t, strings.Join(baseTargets, ", ")))
		}
	}
	return errors.Join(errs...)
}

var baseTargets = []string{"direct", "refproxy", "refproxy-ea", "nginx"}

// budget bounds the whole run: builds, warm-up, rounds and strace, with
// slack for start-up; past it everything is stopped.
func (o options) budget() time.Duration {
	n := time.Duration(len(baseTargets) + len(o.scenarios))
	per := o.warmup + time.Duration(o.rounds)*(o.duration+2*time.Second)
	if o.pprofFor > 0 {
		per += o.pprofFor + 10*time.Second
	}
	if o.straceFor > 0 {
		per += o.straceFor + 5*time.Second
	}
	return 5*time.Minute + n*per
}

// target is one server wrk drives.
type target struct {
	name    string
	url     string
	headers []string
	pid     func() (int, error) // the process strace attaches to; nil: none
	metrics string              // edgeauth admin /metrics URL, else ""
	pprof   string              // edgeauth admin CPU profile URL, else ""
}

func run(ctx context.Context, o options, logw io.Writer) (err error) {
	logf := func(format string, args ...any) { fmt.Fprintf(logw, "load: "+format+"\n", args...) }
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "edgeauth-load-")
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	if o.keep {
		logf("keeping %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	ps := &procs{Dir: dir}
	defer func() {
		for _, e := range ps.StopAll(5 * time.Second) {
			logf("%v", e)
		}
	}()
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()

	// Build first: a broken build must not cost a minute of load.
	bins := map[string]string{"upstream": "./bench/upstream", "refproxy": "./bench/refproxy"}
	if len(o.scenarios) > 0 {
		bins["edgeauth"] = "./cmd/edgeauth"
	}
	for name, pkg := range bins {
		logf("building %s", pkg)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, name), pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("load: go build %s: %w\n%s", pkg, err, out)
		}
	}
	machine := describeMachine(ctx)

	upAddr, err := ps.FreeAddr()
	if err != nil {
		return err
	}
	up, err := ps.Start("upstream", o.serverCPU, nil, filepath.Join(dir, "upstream"), "-listen", upAddr, "-size", fmt.Sprint(o.bodySize))
	if err != nil {
		return err
	}
	if err := up.WaitListening(ctx, upAddr, 10*time.Second); err != nil {
		return err
	}
	want := func(name string) bool { return len(o.targets) == 0 || slices.Contains(o.targets, name) }
	var ts []target
	if want("direct") {
		ts = append(ts, target{name: "direct", url: "http://" + upAddr + "/", pid: fixedPID(up)})
	}
	for _, rp := range []struct {
		name  string
		flags []string
	}{
		{"refproxy", nil},
		// The reference with edgeauth's fasthttp settings: what is left
		// between it and edgeauth is edgeauth's own code.
		{"refproxy-ea", []string{"-stream", "-timeouts", "-read-buffer", "16384"}},
	} {
		if !want(rp.name) {
			continue
		}
		addr, err := ps.FreeAddr()
		if err != nil {
			return err
		}
		p, err := ps.Start(rp.name, o.serverCPU, nil, filepath.Join(dir, "refproxy"), append([]string{"-listen", addr, "-upstream", upAddr}, rp.flags...)...)
		if err != nil {
			return err
		}
		if err := p.WaitListening(ctx, addr, 10*time.Second); err != nil {
			return err
		}
		ts = append(ts, target{name: rp.name, url: "http://" + addr + "/", pid: fixedPID(p)})
	}
	if want("nginx") {
		t, err := startNginx(ctx, ps, dir, o.serverCPU, upAddr)
		if err != nil {
			return err
		}
		ts = append(ts, t)
	}
	var ratios []ratio
	var skipped []string
	if want("nginx") && want("refproxy") {
		ratios = append(ratios, ratio{Target: "refproxy", Base: "nginx"})
	}
	if want("refproxy-ea") && want("refproxy") {
		ratios = append(ratios, ratio{Target: "refproxy-ea", Base: "refproxy"})
	}
	for _, name := range o.scenarios {
		sc := scenarios[name]
		env := &scenarioEnv{dir: filepath.Join(dir, name), upstream: upAddr, procs: ps, edgeauth: filepath.Join(dir, "edgeauth")}
		if err := os.MkdirAll(env.dir, 0o700); err != nil {
			return fmt.Errorf("load: %w", err)
		}
		env.listen, err = ps.FreeAddr()
		if err != nil {
			return err
		}
		env.admin, err = ps.FreeAddr()
		if err != nil {
			return err
		}
		cfg, headers, cleanup, err := sc.prepare(ctx, env)
		if cleanup != nil {
			cleanups = append(cleanups, cleanup)
		}
		var t target
		if err == nil {
			t, err = startEdgeauth(ctx, ps, dir, o.serverCPU, "edgeauth-"+name, env, cfg)
		}
		if err == nil {
			t.headers = headers
			// A proxy answering 401 or 404 quickly would look fast; it
			// must answer the measured request with 200 and the body.
			var cookie string
			if cookie, err = preflight(ctx, t, o.bodySize); err == nil && cookie != "" {
				t.headers = append(t.headers, "Cookie: "+cookie)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			// One scenario the binary cannot serve yet must not cost the
			// others their run; the report says why it is missing.
			logf("scenario %s not run: %v", name, err)
			skipped = append(skipped, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		ts = append(ts, t)
		ratios = append(ratios, sc.ratios...)
	}
	ts, ratios = sameRequestBases(ts, ratios)
	for _, t := range ts {
		if t.metrics != "" {
			continue // checked above
		}
		if _, err := preflight(ctx, t, o.bodySize); err != nil {
			return err
		}
	}

	if o.warmup > 0 {
		for _, t := range ts {
			logf("warm-up %s", t.name)
			if _, err := runWrk(ctx, o.wrkCPU, t.url, o.warmup, o.conns, t.headers); err != nil {
				return err
			}
		}
	}
	before := scrapeAll(ctx, ts)
	loadBefore := loadAvg()
	results := make(map[string][]wrkResult)
	pause := pauser{upstream: up.PID(), enabled: o.freeze}
	defer pause.resumeAll()
	for r := 0; r < o.rounds; r++ {
		for _, t := range ts {
			logf("round %d/%d: %s", r+1, o.rounds, t.name)
			pause.others(ts, t)
			pid, c0 := 0, time.Duration(-1)
			if t.pid != nil {
				if pid, err = t.pid(); err == nil {
					c0, _ = cpuTime(pid)
				}
			}
			res, err := runWrk(ctx, o.wrkCPU, t.url, o.duration, o.conns, t.headers)
			if err != nil {
				return err
			}
			if c0 >= 0 {
				if c1, err := cpuTime(pid); err == nil && res.Requests > 0 {
					res.CPUPerReq = (c1 - c0) / time.Duration(res.Requests)
				}
			}
			results[t.name] = append(results[t.name], res)
			pause.resumeAll()
		}
	}
	after := scrapeAll(ctx, ts)
	loadAfter := loadAvg()

	var sums []summary
	for _, t := range ts {
		sums = append(sums, summarize(t.name, results[t.name]))
	}
	var reuse []connReuse
	for _, t := range ts {
		if t.metrics == "" {
			continue
		}
		reuse = append(reuse, connReuseOf(t.name, before[t.name], after[t.name]))
	}

	var profiles []syscallProfile
	if o.straceFor > 0 {
		for _, t := range ts {
			if t.pid == nil {
				continue
			}
			logf("strace %s", t.name)
			p, err := traceSyscalls(ctx, t, o, dir)
			if err != nil {
				logf("strace %s: %v", t.name, err)
				continue
			}
			profiles = append(profiles, p)
		}
	}

	if o.pprofFor > 0 {
		for _, t := range ts {
			if t.pprof == "" {
				continue
			}
			logf("pprof %s", t.name)
			path, err := cpuProfile(ctx, t, o, o.pprofDir)
			if err != nil {
				logf("pprof %s: %v", t.name, err)
				continue
			}
			logf("pprof %s: %s", t.name, path)
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "Run %s. Command: `go run ./bench/load %s`\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), strings.Join(os.Args[1:], " "))
	fmt.Fprintf(&b, "Machine: %s\n\n", machine)
	fmt.Fprintf(&b, "Conditions: servers pinned to CPU %d, wrk (1 thread, %d connections, keep-alive) to CPU %d; %d rounds of %s per target, interleaved, after a %s warm-up each; %d-byte response body; %s. Load average (1/5/15 min) %s before the rounds, %s after.\n\n",
		o.serverCPU, o.conns, o.wrkCPU, o.rounds, o.duration, o.warmup, o.bodySize, freezeNote(o.freeze), loadBefore, loadAfter)
	renderTable(&b, sums, ratios)
	if len(skipped) > 0 {
		fmt.Fprintln(&b, "\nScenarios not run:")
		for _, s := range skipped {
			fmt.Fprintf(&b, "- %s\n", oneLine(s, 400))
		}
	}
	if len(reuse) > 0 {
		fmt.Fprintln(&b)
		renderReuse(&b, reuse)
	}
	if len(profiles) > 0 {
		fmt.Fprintf(&b, "\nSystem calls per request (`strace -c -f` for %s under the same wrk load; strace slows the traced process, so only the counts per request mean anything):\n\n", o.straceFor)
		renderSyscalls(&b, profiles)
	}
	return writeOut(o.out, b.String())
}

func freezeNote(on bool) string {
	if on {
		return "the other servers stopped (SIGSTOP) while one is measured, the upstream running"
	}
	return "the other servers left running while one is measured"
}

// sameRequestBases adds, for every auth scenario whose requests carry
// headers (a bearer token, a session cookie, X-Forwarded-For), the no-auth
// route measured with those same headers, and judges the scenario's bar
// against it too. A kilobyte of Authorization header costs the kernel, the
// proxy's parser and the upstream on the shared CPU the same with or
// without auth; comparing the same request isolates what auth costs.
// The bar must then be met against both bases.
func sameRequestBases(ts []target, ratios []ratio) ([]target, []ratio) {
	i := slices.IndexFunc(ts, func(t target) bool { return t.name == "edgeauth-noauth" })
	if i < 0 {
		return ts, ratios
	}
	base := ts[i]
	aliases := map[string]target{} // scenario target -> no-auth alias
	var out []ratio
	for _, r := range ratios {
		out = append(out, r)
		if r.Base != base.name {
			continue
		}
		j := slices.IndexFunc(ts, func(t target) bool { return t.name == r.Target })
		if j < 0 || len(ts[j].headers) == 0 {
			continue
		}
		alias := target{name: base.name + "+" + strings.TrimPrefix(r.Target, "edgeauth-") + "-request", url: base.url, headers: ts[j].headers, pid: base.pid, pprof: base.pprof}
		aliases[r.Target] = alias
		out = append(out, ratio{Target: r.Target, Base: alias.name, Bar: r.Bar})
	}
	// Each alias runs right after its scenario, so the pair shares a round's
	// conditions.
	var all []target
	for _, t := range ts {
		all = append(all, t)
		if a, ok := aliases[t.name]; ok {
			all = append(all, a)
		}
	}
	return all, out
}

// pauser stops the servers not being measured (SIGSTOP) and resumes them.
// Every one of them was started by this harness; the upstream is never
// stopped.
type pauser struct {
	upstream int
	enabled  bool
	stopped  []int
}

func (p *pauser) others(ts []target, measured target) {
	if !p.enabled {
		return
	}
	mpid := -1
	if measured.pid != nil {
		mpid, _ = measured.pid()
	}
	for _, t := range ts {
		if t.name == measured.name || t.pid == nil {
			continue
		}
		pid, err := t.pid()
		if err != nil || pid == p.upstream || pid == mpid || pid <= 0 || slices.Contains(p.stopped, pid) {
			continue
		}
		if syscall.Kill(pid, syscall.SIGSTOP) == nil {
			p.stopped = append(p.stopped, pid)
		}
	}
}

func (p *pauser) resumeAll() {
	for _, pid := range p.stopped {
		_ = syscall.Kill(pid, syscall.SIGCONT)
	}
	p.stopped = p.stopped[:0]
}

func fixedPID(p *proc) func() (int, error) { return func() (int, error) { return p.PID(), nil } }

func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("load: go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("load: run inside the edgeauth module")
	}
	return filepath.Dir(mod), nil
}

// preflight sends the measured request three times: the first may differ
// (caches, risk history), the later ones are what wrk will see. Cookies
// the target sets (the risk engine's device cookie) are kept and sent from
// then on, as a browser or a cookie-keeping API client would, and returned
// for wrk to send too.
func preflight(ctx context.Context, t target, bodySize int) (cookie string, err error) {
	for i := 0; i < 3; i++ {
		set, err := preflightOnce(ctx, t, cookie, bodySize)
		if err != nil {
			return "", fmt.Errorf("%w (request %d of 3)", err, i+1)
		}
		cookie = mergeCookies(cookie, set)
	}
	return cookie, nil
}

func preflightOnce(ctx context.Context, t target, cookie string, bodySize int) ([]*http.Cookie, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url, nil)
	if err != nil {
		return nil, fmt.Errorf("load: preflight %s: %w", t.name, err)
	}
	for _, h := range t.headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("load: preflight %s: %w", t.name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK || len(body) != bodySize {
		return nil, fmt.Errorf("load: preflight %s: got %d with %d body bytes, want 200 with %d: %s %s", t.name, resp.StatusCode, len(body), bodySize, resp.Header.Get("Www-Authenticate"), truncate(body, 300))
	}
	return resp.Cookies(), nil
}

// mergeCookies adds or replaces set in a Cookie header value.
func mergeCookies(header string, set []*http.Cookie) string {
	if len(set) == 0 {
		return header
	}
	jar := map[string]string{}
	var order []string
	for _, kv := range strings.Split(header, "; ") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			if _, seen := jar[k]; !seen {
				order = append(order, k)
			}
			jar[k] = v
		}
	}
	for _, c := range set {
		if _, seen := jar[c.Name]; !seen {
			order = append(order, c.Name)
		}
		jar[c.Name] = c.Value
	}
	parts := make([]string, 0, len(order))
	for _, k := range order {
		if c := (&http.Cookie{Name: k, Value: jar[k]}).String(); c != "" {
			parts = append(parts, c)
		}
	}
	return strings.Join(parts, "; ")
}

// writeOut replaces the text between the marker lines in path, or the
// whole file when it has none; "" prints to stdout.
func writeOut(path, section string) error {
	const begin, end = "<!-- load:begin -->", "<!-- load:end -->"
	if path == "" {
		_, err := fmt.Print(section)
		return err
	}
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("load: %w", err)
	}
	return os.WriteFile(path, []byte(spliceSection(string(old), begin, end, section)), 0o644)
}

func spliceSection(doc, begin, end, section string) string {
	i := strings.Index(doc, begin)
	j := strings.Index(doc, end)
	if i < 0 || j < i {
		return begin + "\n" + section + end + "\n"
	}
	return doc[:i+len(begin)] + "\n" + section + doc[j:]
}

func describeMachine(ctx context.Context) string {
	model := "unknown CPU"
	if out, err := exec.CommandContext(ctx, "lscpu").Output(); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "Model name" {
				model = strings.TrimSpace(v)
			}
		}
	}
	kernel, _ := exec.CommandContext(ctx, "uname", "-r").Output()
	gov, _ := exec.CommandContext(ctx, "go", "version").Output()
	wrkv, _ := exec.CommandContext(ctx, "wrk", "-v").CombinedOutput()
	ngv, _ := exec.CommandContext(ctx, "nginx", "-v").CombinedOutput()
	first := func(b []byte) string {
		l, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
		return strings.TrimSpace(l)
	}
	return fmt.Sprintf("%s, %d CPUs, kernel %s, %s, %s, %s", model, numCPU(), strings.TrimSpace(string(kernel)), first(gov), strings.TrimSpace(strings.Split(first(wrkv), "Copyright")[0]), first(ngv))
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], "/")
}

// oneLine flattens and shortens an error for a markdown list item.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}
