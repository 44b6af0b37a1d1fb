package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func numCPU() int { return runtime.NumCPU() }

func startNginx(ctx context.Context, ps *procs, dir string, cpu int, upAddr string) (target, error) {
	prefix := filepath.Join(dir, "nginx")
	if err := os.MkdirAll(prefix, 0o700); err != nil {
		return target{}, fmt.Errorf("load: %w", err)
	}
	addr, err := ps.FreeAddr()
	if err != nil {
		return target{}, err
	}
	conf, err := renderNginx(nginxParams{Prefix: prefix, Listen: addr, Upstream: upAddr})
	if err != nil {
		return target{}, err
	}
	confPath := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(confPath, conf, 0o600); err != nil {
		return target{}, fmt.Errorf("load: %w", err)
	}
	p, err := ps.Start("nginx", cpu, nil, "/usr/sbin/nginx", "-p", prefix, "-c", confPath, "-e", filepath.Join(prefix, "error.log"))
	if err != nil {
		return target{}, err
	}
	if err := p.WaitListening(ctx, addr, 10*time.Second); err != nil {
		return target{}, err
	}
	// The worker serves; the master only supervises. strace the worker.
	pid := func() (int, error) {
		kids, err := children(p.PID())
		if err != nil {
			return 0, err
		}
		return kids[0], nil
	}
	return target{name: "nginx", url: "http://" + addr + "/", pid: pid}, nil
}

func startEdgeauth(ctx context.Context, ps *procs, dir string, cpu int, name string, env *scenarioEnv, cfg eaConfig) (target, error) {
	data, err := cfg.marshal()
	if err != nil {
		return target{}, err
	}
	path := filepath.Join(env.dir, "edgeauth.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return target{}, fmt.Errorf("load: %w", err)
	}
	bin := filepath.Join(dir, "edgeauth")
	// validate first: a config the binary rejects is a harness bug, and its
	// message is clearer than a process that exits at start.
	if out, err := exec.CommandContext(ctx, bin, "validate", "-config", path).CombinedOutput(); err != nil {
		return target{}, fmt.Errorf("load: %s: edgeauth validate: %w\n%s\nconfig:\n%s", name, err, out, data)
	}
	p, err := ps.Start(name, cpu, nil, bin, "run", "-config", path)
	if err != nil {
		return target{}, err
	}
	if err := p.WaitListening(ctx, env.listen, 15*time.Second); err != nil {
		return target{}, err
	}
	return target{name: name, url: "http://" + env.listen + "/", pid: fixedPID(p), metrics: "http://" + env.admin + "/metrics",
		pprof: "http://" + env.admin + "/debug/pprof/profile"}, nil
}

// scrape fetches the Prometheus text of every target that has metrics.
func scrapeAll(ctx context.Context, ts []target) map[string][]byte {
	out := map[string][]byte{}
	c := &http.Client{Timeout: 5 * time.Second}
	for _, t := range ts {
		if t.metrics == "" {
			continue
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.metrics, nil)
		if err != nil {
			continue
		}
		resp, err := c.Do(req)
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			out[t.name] = b
		}
	}
	return out
}

const (
	metricConnsOpened = "edgeauth_upstream_connections_opened_total"
	metricRequests    = "edgeauth_requests_total"
)

// connReuse is the new upstream connections per request over the measured
// rounds (warm-up excluded), from edgeauth's own counters.
type connReuse struct {
	Target          string
	Conns, Requests float64
	Missing         string // why it could not be computed
}

func connReuseOf(name string, before, after []byte) connReuse {
	r := connReuse{Target: name}
	c0, ok0 := sumMetric(before, metricConnsOpened)
	c1, ok1 := sumMetric(after, metricConnsOpened)
	q0, ok2 := sumMetric(before, metricRequests)
	q1, ok3 := sumMetric(after, metricRequests)
	switch {
	case before == nil || after == nil:
		r.Missing = "admin /metrics not reachable"
	case !ok0 || !ok1:
		r.Missing = metricConnsOpened + " not exported"
	case !ok2 || !ok3:
		r.Missing = metricRequests + " not exported"
	default:
		r.Conns, r.Requests = c1-c0, q1-q0
	}
	return r
}

func renderReuse(w io.Writer, rs []connReuse) {
	fmt.Fprintln(w, "| new upstream connections per request (measured rounds) | opened | requests | per request | bar |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---|")
	for _, r := range rs {
		if r.Missing != "" {
			fmt.Fprintf(w, "| %s | – | – | – (%s) | < 0.01 |\n", r.Target, r.Missing)
			continue
		}
		per := 0.0
		if r.Requests > 0 {
			per = r.Conns / r.Requests
		}
		verdict := "meets"
		if per >= 0.01 || r.Requests == 0 {
			verdict = "**misses**"
		}
		fmt.Fprintf(w, "| %s | %.0f | %.0f | %.5f | < 0.01 %s |\n", r.Target, r.Conns, r.Requests, per, verdict)
	}
}

// traceSyscalls counts t's server's system calls with strace -c while wrk
// drives it for o.straceFor, and divides by the requests wrk completed.
func traceSyscalls(ctx context.Context, t target, o options, dir string) (syscallProfile, error) {
	p := syscallProfile{Target: t.name}
	pid, err := t.pid()
	if err != nil {
		return p, err
	}
	outPath := filepath.Join(dir, t.name+".strace")
	var stderr bytes.Buffer
	cmd := exec.Command("strace", "-c", "-f", "-o", outPath, "-p", strconv.Itoa(pid))
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return p, fmt.Errorf("load: strace: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stopStrace := func() {
		_ = cmd.Process.Signal(syscall.SIGINT) // strace prints its summary on SIGINT
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	if err := waitTraced(ctx, pid, done, 5*time.Second); err != nil {
		stopStrace()
		return p, fmt.Errorf("%w: %s", err, stderr.String())
	}
	res, err := runWrk(ctx, o.wrkCPU, t.url, o.straceFor, o.conns, t.headers)
	// strace's exit status after SIGINT varies by version; the summary file
	// decides whether the trace worked.
	stopStrace()
	if err != nil {
		return p, err
	}
	out, err := os.ReadFile(outPath)
	if err != nil {
		return p, fmt.Errorf("load: strace output: %w", err)
	}
	p.Rows, p.Total, err = parseStraceC(out)
	p.Requests = res.Requests
	return p, err
}

// waitTraced polls /proc until pid has a tracer.
func waitTraced(ctx context.Context, pid int, straceDone <-chan struct{}, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return fmt.Errorf("load: strace: %w", err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "TracerPid:"); ok && strings.TrimSpace(v) != "0" {
				return nil
			}
		}
		select {
		case <-straceDone:
			return fmt.Errorf("load: strace exited before attaching")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("load: strace not attached to %d after %s", pid, within)
		}
	}
}

// cpuTime is the CPU time all threads of pid have run, from the scheduler's
// own accounting (/proc/PID/task/*/schedstat, nanoseconds). Unlike req/s it
// hardly depends on what else the machine runs, which on a shared machine
// makes CPU per request the steadier figure.
func cpuTime(pid int) (time.Duration, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("load: schedstat of %d: %v", pid, err)
	}
	var total time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // a thread that exited
		}
		ns, err := parseSchedstat(b)
		if err != nil {
			return 0, err
		}
		total += ns
	}
	return total, nil
}

// parseSchedstat reads the first field of a schedstat line: time on CPU in
// nanoseconds.
func parseSchedstat(b []byte) (time.Duration, error) {
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, fmt.Errorf("load: empty schedstat")
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("load: schedstat %q: bad run time", f[0])
	}
	return time.Duration(n), nil
}

// cpuProfile takes a CPU profile of an edgeauth target from its admin
// listener while wrk loads it, into dir/<target>.pprof.
func cpuProfile(ctx context.Context, t target, o options, dir string) (string, error) {
	d := o.pprofFor
	wrkDone := make(chan error, 1)
	var res wrkResult
	go func() {
		var err error
		res, err = runWrk(ctx, o.wrkCPU, t.url, d+2*time.Second, o.conns, t.headers)
		wrkDone <- err
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.pprof+"?seconds="+strconv.Itoa(int(d.Seconds())), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := (&http.Client{Timeout: d + 30*time.Second}).Do(req)
	if err != nil {
		<-wrkDone
		return "", fmt.Errorf("load: pprof: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	werr := <-wrkDone
	if err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("load: pprof: status %d: %v", resp.StatusCode, err)
	}
	if werr != nil {
		return "", werr
	}
	path := filepath.Join(dir, t.name+".pprof")
	// The request rate under the profile, to turn its seconds into time
	// per request: the profile covers d of the run's d+2s.
	note := fmt.Sprintf("requests/s %.0f\nprofiled requests %.0f\n", res.RequestsPerSec, res.RequestsPerSec*d.Seconds())
	if err := os.WriteFile(path+".txt", []byte(note), 0o600); err != nil {
		return "", err
	}
	return path, os.WriteFile(path, body, 0o600)
}
