package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgeauth/edgeauth/config"
	"github.com/google/go-cmp/cmp"
)

func TestMedian(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []float64
		want float64
	}{
		{name: "empty", in: nil, want: 0},
		{name: "one", in: []float64{7}, want: 7},
		{name: "odd unsorted", in: []float64{9, 1, 5}, want: 5},
		{name: "even takes the mean of the middle two", in: []float64{4, 1, 3, 2}, want: 2.5},
		{name: "outlier does not move it", in: []float64{100, 101, 5}, want: 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := append([]float64(nil), tt.in...)
			if got := median(tt.in); got != tt.want {
				t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
			}
			if diff := cmp.Diff(in, tt.in); diff != "" {
				t.Errorf("median reordered its input (-before +after):\n%s", diff)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	t.Parallel()
	got := summarize("x", []wrkResult{
		{RequestsPerSec: 300, P50: 3 * time.Millisecond, P99: 9 * time.Millisecond, Errors: 1, CPUPerReq: 30 * time.Microsecond},
		{RequestsPerSec: 100, P50: 1 * time.Millisecond, P99: 30 * time.Millisecond, CPUPerReq: 50 * time.Microsecond},
		{RequestsPerSec: 200, P50: 2 * time.Millisecond, P99: 10 * time.Millisecond, Errors: 2}, // CPU not measured: left out
	})
	want := summary{Name: "x", RPS: 200, P50: 2 * time.Millisecond, P99: 10 * time.Millisecond, Rounds: []float64{300, 100, 200}, Errors: 3, CPU: 40 * time.Microsecond}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("summarize (-want +got):\n%s", diff)
	}
}

func TestRenderTable(t *testing.T) {
	t.Parallel()
	sums := []summary{
		{Name: "refproxy", RPS: 50000, P50: 1200 * time.Microsecond, P99: 3 * time.Millisecond, Rounds: []float64{49000, 50000, 51000}, CPU: 20 * time.Microsecond},
		{Name: "nginx", RPS: 40000, P50: 1500 * time.Microsecond, P99: 4 * time.Millisecond, Rounds: []float64{40000}},
		// Meets 0.90 by medians (45000/50000), misses paired round by round.
		{Name: "edgeauth-noauth", RPS: 45000, P50: 800 * time.Microsecond, P99: 12500 * time.Microsecond, Rounds: []float64{46000, 44000, 45000}, CPU: 25 * time.Microsecond},
		{Name: "edgeauth-bearer", RPS: 30000, P50: 2 * time.Millisecond, P99: 5 * time.Millisecond, Rounds: []float64{30000}, Errors: 2, Non2xx: 1},
		{Name: "edgeauth-session", RPS: 40000, P50: 2 * time.Millisecond, P99: 5 * time.Millisecond, Rounds: []float64{40000}, Errors: 3}, // timeouts only
	}
	ratios := []ratio{
		{Target: "refproxy", Base: "nginx"},
		{Target: "edgeauth-noauth", Base: "refproxy", Bar: 0.9},
		{Target: "edgeauth-noauth", Base: "nginx", Bar: 1},
		{Target: "edgeauth-bearer", Base: "edgeauth-noauth", Bar: 0.85},  // wrong answers: no verdict
		{Target: "edgeauth-session", Base: "edgeauth-noauth", Bar: 0.85}, // timeouts: still judged
		{Target: "edgeauth-risk", Base: "edgeauth-noauth", Bar: 0.8},     // did not run: left out
	}
	var b bytes.Buffer
	renderTable(&b, sums, ratios)
	want := `| target | req/s (median) | p50 | p99 | req/s per round | server CPU µs/req | errors (non-2xx) |
|---|---:|---:|---:|---|---:|---:|
| refproxy | 50000 | 1.20ms | 3.00ms | 49000, 50000, 51000 | 20.0 | 0 (0) |
| nginx | 40000 | 1.50ms | 4.00ms | 40000 | – | 0 (0) |
| edgeauth-noauth | 45000 | 800µs | 12.50ms | 46000, 44000, 45000 | 25.0 | 0 (0) |
| edgeauth-bearer | 30000 | 2.00ms | 5.00ms | 30000 | – | 2 (1) |
| edgeauth-session | 40000 | 2.00ms | 5.00ms | 40000 | – | 3 (0) |

| ratio (median req/s) | value | paired | bar | | CPU/req ratio (inverse) |
|---|---:|---:|---:|---|---:|
| refproxy / nginx | 1.250 | 1.225 | — |  | – |
| edgeauth-noauth / refproxy | 0.900 | 0.882 | ≥ 0.90 | **misses** | 0.800 |
| edgeauth-noauth / nginx | 1.125 | 1.150 | ≥ 1.00 | meets | – |
| edgeauth-bearer / edgeauth-noauth | 0.667 | 0.652 | ≥ 0.85 | **invalid: non-2xx answers** | – |
| edgeauth-session / edgeauth-noauth | 0.889 | 0.870 | ≥ 0.85 | meets | – |
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("renderTable (-want +got):\n%s", diff)
	}
}

func TestSumMetric(t *testing.T) {
	t.Parallel()
	text := []byte(`# HELP edgeauth_upstream_connections_opened_total New upstream TCP connections, by route.
# TYPE edgeauth_upstream_connections_opened_total counter
edgeauth_upstream_connections_opened_total{route="a"} 3
edgeauth_upstream_connections_opened_total{route="b,}"} 4.5
edgeauth_requests_total{code="2xx",route="a"} 1.234e+06
edgeauth_requests_total{code="5xx",route="a"} 6
edgeauth_requests_total_extra 99
edgeauth_requests 7
`)
	tests := []struct {
		name   string
		metric string
		want   float64
		ok     bool
	}{
		{name: "sums every label set", metric: metricConnsOpened, want: 7.5, ok: true},
		{name: "exponent notation", metric: metricRequests, want: 1234006, ok: true},
		{name: "prefix of another name is not a match", metric: "edgeauth_requests", want: 7, ok: true},
		{name: "absent", metric: "edgeauth_nothing", want: 0, ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := sumMetric(text, tt.metric)
			if got != tt.want || ok != tt.ok {
				t.Errorf("sumMetric(%s) = %v, %v; want %v, %v", tt.metric, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestConnReuse(t *testing.T) {
	t.Parallel()
	before := []byte("edgeauth_upstream_connections_opened_total{route=\"bench\"} 64\nedgeauth_requests_total{code=\"2xx\",route=\"bench\"} 1000\n")
	after := []byte("edgeauth_upstream_connections_opened_total{route=\"bench\"} 66\nedgeauth_requests_total{code=\"2xx\",route=\"bench\"} 201000\n")
	got := connReuseOf("ea", before, after)
	if diff := cmp.Diff(connReuse{Target: "ea", Conns: 2, Requests: 200000}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got := connReuseOf("ea", nil, after); got.Missing == "" {
		t.Error("an unreachable admin listener must be reported, not read as zero connections")
	}
	if got := connReuseOf("ea", []byte("x 1\n"), []byte("x 2\n")); got.Missing == "" {
		t.Error("a missing counter must be reported, not read as zero connections")
	}
	var b bytes.Buffer
	renderReuse(&b, []connReuse{got, {Target: "hot", Conns: 9000, Requests: 10000}})
	if !strings.Contains(b.String(), "| hot | 9000 | 10000 | 0.90000 | < 0.01 **misses** |") {
		t.Errorf("reuse table does not flag 0.9 new connections per request:\n%s", b.String())
	}
}

func TestParseStraceC(t *testing.T) {
	t.Parallel()
	modern, err := os.ReadFile(filepath.Join("testdata", "strace-c.txt"))
	if err != nil {
		t.Fatal(err)
	}
	// strace 5 and older leave usecs/call blank in the total line, so
	// counting fields from the left would read "calls" as errors.
	old := []byte(`% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 61.22    0.012000           2      6000      1000 read
 38.78    0.007600           1      7600           write
------ ----------- ----------- --------- --------- ----------------
100.00    0.019600                 13600      1000 total
`)
	tests := []struct {
		name      string
		in        []byte
		wantTop   syscallRow
		wantTotal syscallRow
		wantRows  int
	}{
		{name: "strace 6 (fixture)", in: modern, wantTop: syscallRow{Name: "openat", Calls: 34, Errors: 13}, wantTotal: syscallRow{Name: "total", Calls: 144, Errors: 19}, wantRows: 22},
		{name: "blank usecs/call in total", in: old, wantTop: syscallRow{Name: "write", Calls: 7600}, wantTotal: syscallRow{Name: "total", Calls: 13600, Errors: 1000}, wantRows: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rows, total, err := parseStraceC(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantTotal, total); diff != "" {
				t.Errorf("total (-want +got):\n%s", diff)
			}
			if len(rows) != tt.wantRows || rows[0] != tt.wantTop {
				t.Errorf("got %d rows, first %+v; want %d, first %+v", len(rows), rows[0], tt.wantRows, tt.wantTop)
			}
		})
	}
	if _, _, err := parseStraceC([]byte("strace: attach: ptrace(PTRACE_SEIZE, 1): Operation not permitted\n")); err == nil {
		t.Error("want an error for output without a summary")
	}
}

func TestRenderSyscalls(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	renderSyscalls(&b, []syscallProfile{
		{Target: "a", Requests: 100, Rows: []syscallRow{{Name: "read", Calls: 250, Errors: 50}, {Name: "write", Calls: 200}}, Total: syscallRow{Name: "total", Calls: 450, Errors: 50}},
		{Target: "b", Requests: 10, Rows: []syscallRow{{Name: "recvfrom", Calls: 20}}, Total: syscallRow{Name: "total", Calls: 20}},
	})
	want := `| syscalls per request | a | b |
|---|---:|---:|
| read | 2.50 (0.50 err) | 0.00 |
| write | 2.00 | 0.00 |
| recvfrom | 0.00 | 2.00 |
| **total** | 4.50 (0.50 err) | 2.00 |
| requests traced | 100 | 10 |
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestSpliceSection(t *testing.T) {
	t.Parallel()
	const b, e = "<!-- load:begin -->", "<!-- load:end -->"
	tests := []struct{ name, doc, want string }{
		{name: "no markers: whole file", doc: "old text\n", want: b + "\nNEW\n" + e + "\n"},
		{name: "keeps the prose around the markers", doc: "# Results\nintro\n" + b + "\nold\n" + e + "\nanalysis\n", want: "# Results\nintro\n" + b + "\nNEW\n" + e + "\nanalysis\n"},
		{name: "end before begin: whole file", doc: e + "\n" + b + "\n", want: b + "\nNEW\n" + e + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, spliceSection(tt.doc, b, e, "NEW\n")); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestRenderNginx(t *testing.T) {
	t.Parallel()
	conf, err := renderNginx(nginxParams{Prefix: "/tmp/p", Listen: "127.0.0.1:1", Upstream: "127.0.0.1:2"})
	if err != nil {
		t.Fatal(err)
	}
	// The issue fixes the shape of the ceiling; each of these changes the
	// number it produces.
	for _, want := range []string{
		"daemon off;", "worker_processes 1;", "pid /tmp/p/nginx.pid;", "error_log /tmp/p/error.log",
		"access_log off;", "server 127.0.0.1:2;", "keepalive 64;", "listen 127.0.0.1:1;",
		"proxy_pass http://app;", "proxy_http_version 1.1;", `proxy_set_header Connection "";`,
	} {
		if !bytes.Contains(conf, []byte(want)) {
			t.Errorf("nginx config lacks %q:\n%s", want, conf)
		}
	}
}

// TestScenarioConfigsParse runs every config the harness writes through the
// real config package, so a schema change breaks this test and not a load
// run half an hour in.
func TestScenarioConfigsParse(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := &scenarioEnv{dir: dir, upstream: "127.0.0.1:18080", listen: "127.0.0.1:18081", admin: "127.0.0.1:18082"}
	is := &issuer{url: "http://127.0.0.1:18083"}
	city := filepath.Join(dir, "city.mmdb")
	if err := os.WriteFile(city, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	noauth := baseConfig(env)
	bearer := baseConfig(env)
	is.configure(&bearer)
	risk := baseConfig(env)
	is.configure(&risk)
	risk.GeoIP = &eaGeoIP{City: city}
	risk.TrustedProxies = []string{"127.0.0.1/32"}
	risk.Routes[0].RiskMode = "enforce"
	zero := 0
	risk.Routes[0].StepUpAt = &zero
	sess := baseConfig(env)
	sess.OIDC = &eaOIDC{Issuer: "http://127.0.0.1:18084", ClientID: "c", ClientSecret: "s", RedirectURL: "http://" + env.listen + "/.edgeauth/callback"}
	sess.Session = &eaSession{Secrets: []string{strings.Repeat("k", 64)}, Store: "memory", SnapshotFile: filepath.Join(dir, "s.snap")}
	no := false
	sess.Routes[0].Auth, sess.Routes[0].Bearer, sess.Routes[0].RiskMode = "required", &no, "off"
	for name, c := range map[string]eaConfig{"noauth": noauth, "bearer": bearer, "risk": risk, "session": sess} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			data, err := c.marshal()
			if err != nil {
				t.Fatal(err)
			}
			got, err := config.Parse(data, name+".yaml", nil)
			if err != nil {
				t.Fatalf("config rejected:\n%v\n%s", err, data)
			}
			if len(got.Routes) != 1 || string(got.Routes[0].Auth) != c.Routes[0].Auth || got.Listen != env.listen || got.Admin.Listen != env.admin {
				t.Errorf("config read back differently: %+v", got.Routes)
			}
		})
	}
}

func TestOptionsCheck(t *testing.T) {
	t.Parallel()
	good := options{duration: 10 * time.Second, warmup: 3 * time.Second, rounds: 3, conns: 64, scenarios: []string{"noauth"}}
	if err := good.check(); err != nil {
		t.Fatalf("defaults rejected: %v", err)
	}
	bad := good
	bad.rounds, bad.duration, bad.scenarios, bad.targets = 0, time.Hour, []string{"nope"}, []string{"haproxy"}
	err := bad.check()
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{"-rounds", "-duration", `"nope"`, `"haproxy"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if b := good.budget(); b < 5*time.Minute || b > 30*time.Minute {
		t.Errorf("budget %s for the default run is not sensibly bounded", b)
	}
}

// TestStopAllKillsStubbornChildren: the harness must not leave servers
// behind, even one that ignores SIGTERM and has a child of its own.
func TestStopAllKillsStubbornChildren(t *testing.T) {
	t.Parallel()
	ps := &procs{Dir: t.TempDir()}
	p, err := ps.Start("stubborn", -1, nil, "/bin/sh", "-c", `trap "" TERM; sleep 60 & echo $! > `+filepath.Join(ps.Dir, "child.pid")+`; wait`)
	if err != nil {
		t.Fatal(err)
	}
	var child int
	deadline := time.Now().Add(5 * time.Second)
	for child == 0 {
		if b, err := os.ReadFile(filepath.Join(ps.Dir, "child.pid")); err == nil && len(bytes.TrimSpace(b)) > 0 {
			if _, err := fmtSscan(string(bytes.TrimSpace(b)), &child); err != nil {
				t.Fatal(err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("child did not start")
		}
		time.Sleep(10 * time.Millisecond) // polling a file with a deadline
	}
	errs := ps.StopAll(300 * time.Millisecond)
	if len(errs) != 1 {
		t.Errorf("want one report of a SIGTERM-ignoring process, got %v", errs)
	}
	select {
	case <-p.Done():
	default:
		t.Error("process still running after stopAll")
	}
	deadline = time.Now().Add(5 * time.Second)
	for syscall.Kill(child, 0) == nil {
		if st, _ := os.ReadFile(filepath.Join("/proc", itoa(child), "stat")); bytes.Contains(st, []byte(") Z ")) {
			break // a zombie awaiting its reaper is dead
		}
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d survived stopAll", child)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func fmtSscan(s string, n *int) (int, error) { return fmt.Sscan(s, n) }

func itoa(n int) string { return strconv.Itoa(n) }

func TestMergeCookies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, header string
		set          []*http.Cookie
		want         string
	}{
		{name: "nothing set", header: "a=1", want: "a=1"},
		{name: "first cookie", set: []*http.Cookie{{Name: "edgeauth_device", Value: "v1"}}, want: "edgeauth_device=v1"},
		{name: "replaced in place, new appended", header: "a=1; b=2", set: []*http.Cookie{{Name: "a", Value: "3"}, {Name: "c", Value: "4"}}, want: "a=3; b=2; c=4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := mergeCookies(tt.header, tt.set); got != tt.want {
				t.Errorf("mergeCookies(%q) = %q, want %q", tt.header, got, tt.want)
			}
		})
	}
}

func TestParseSchedstat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{in: "123456789 2000 30\n", want: 123456789},
		{in: "", wantErr: true},
		{in: "-5 1 1", wantErr: true},
		{in: "x 1 1", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseSchedstat([]byte(tt.in))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseSchedstat(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
	// The harness's own process has run for some time.
	if d, err := cpuTime(os.Getpid()); err != nil || d <= 0 {
		t.Errorf("cpuTime(self) = %v, %v", d, err)
	}
}

func TestSameRequestBases(t *testing.T) {
	t.Parallel()
	pid := func(n int) func() (int, error) { return func() (int, error) { return n, nil } }
	ts := []target{
		{name: "refproxy", pid: pid(1)},
		{name: "edgeauth-noauth", url: "http://n/", pid: pid(2)},
		{name: "edgeauth-bearer", url: "http://b/", headers: []string{"Authorization: Bearer x"}, pid: pid(3)},
		{name: "edgeauth-plain", url: "http://p/", pid: pid(4)},
	}
	ratios := []ratio{
		{Target: "edgeauth-noauth", Base: "refproxy", Bar: 0.9},
		{Target: "edgeauth-bearer", Base: "edgeauth-noauth", Bar: 0.85},
		{Target: "edgeauth-plain", Base: "edgeauth-noauth", Bar: 0.85}, // no headers: no alias
	}
	gotTs, gotRatios := sameRequestBases(ts, ratios)
	var names []string
	for _, tg := range gotTs {
		names = append(names, tg.name)
	}
	wantNames := []string{"refproxy", "edgeauth-noauth", "edgeauth-bearer", "edgeauth-noauth+bearer-request", "edgeauth-plain"}
	if diff := cmp.Diff(wantNames, names); diff != "" {
		t.Fatalf("targets (-want +got):\n%s", diff)
	}
	alias := gotTs[3]
	if alias.url != "http://n/" || len(alias.headers) != 1 || alias.headers[0] != "Authorization: Bearer x" {
		t.Errorf("alias %+v: want the no-auth URL with the bearer headers", alias)
	}
	if p, _ := alias.pid(); p != 2 {
		t.Errorf("alias pid %d, want the no-auth process", p)
	}
	wantRatios := append(append([]ratio(nil), ratios[:2]...), ratio{Target: "edgeauth-bearer", Base: "edgeauth-noauth+bearer-request", Bar: 0.85}, ratios[2])
	if diff := cmp.Diff(wantRatios, gotRatios); diff != "" {
		t.Errorf("ratios (-want +got):\n%s", diff)
	}
}
