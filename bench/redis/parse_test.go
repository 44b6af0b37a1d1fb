package main

import (
	"github.com/edgeauth/edgeauth/bench"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseWrk(t *testing.T) {
	t.Parallel()
	got, err := bench.ParseWrk(readTestdata(t, "wrk.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := wrkResult{Requests: 26771, RequestsPerSec: 2677.05, P50: 2730 * time.Microsecond, P99: 35830 * time.Microsecond, SocketErrors: 3, Non2xx: 4}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseWrk (-want +got):\n%s", diff)
	}
	for _, tc := range []struct{ name, out string }{
		{name: "empty"},
		{name: "no request count", out: "Requests/sec: 12.5\n"},
		{name: "no rate", out: "  100 requests in 1.00s, 1MB read\n"},
	} {
		if _, err := bench.ParseWrk([]byte(tc.out)); err == nil {
			t.Errorf("%s: parseWrk accepted %q", tc.name, tc.out)
		}
	}
}

func TestParseCommandStatsAndSub(t *testing.T) {
	t.Parallel()
	after, err := parseCommandStats(string(readTestdata(t, "commandstats.txt")))
	if err != nil {
		t.Fatal(err)
	}
	before := commandStats{"get": 10, "hello": 18, "info": 1}
	d, total := before.sub(after)
	// info is the harness's own call; hello did not change.
	if diff := cmp.Diff(commandStats{"get": 50, "ping": 6}, d); diff != "" || total != 56 {
		t.Errorf("sub = %v total %d (-want +got):\n%s", d, total, diff)
	}
	if got := d.String(); got != "get=50 ping=6" {
		t.Errorf("String = %q", got)
	}
	if got := (commandStats{}).String(); got != "none" {
		t.Errorf("empty String = %q", got)
	}
	for _, bad := range []string{"cmdstat_get:calls=x", "cmdstat_get:usec=1", "cmdstat_get:calls=-1"} {
		if _, err := parseCommandStats(bad); err == nil {
			t.Errorf("parseCommandStats accepted %q", bad)
		}
	}
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	ms := func(ns ...int) []time.Duration {
		out := make([]time.Duration, len(ns))
		for i, n := range ns {
			out[i] = time.Duration(n) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // reversed: percentile must sort
	}
	for _, tc := range []struct {
		name string
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{name: "empty", p: 50, want: 0},
		{name: "one", in: ms(7), p: 99, want: 7 * time.Millisecond},
		{name: "p50 of 100", in: ms(hundred...), p: 50, want: 50 * time.Millisecond},
		{name: "p99 of 100", in: ms(hundred...), p: 99, want: 99 * time.Millisecond},
		{name: "max", in: ms(hundred...), p: 100, want: 100 * time.Millisecond},
		{name: "p99 of 3", in: ms(3, 1, 2), p: 99, want: 3 * time.Millisecond},
	} {
		if got := percentile(tc.in, tc.p); got != tc.want {
			t.Errorf("%s: percentile = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// devidpPage is the shape of internal/devidp/login.go's page.
const devidpPage = `<form method="post" action="/login">
<input type="hidden" name="id" value="req-1&amp;2">
<label>Username <input name="username" id="username"></label>
<label>Password <input name="password" id="password" type="password"></label>
</form>`

func TestParseLoginForm(t *testing.T) {
	t.Parallel()
	action, id, err := parseLoginForm([]byte(devidpPage))
	if err != nil || action != "/login" || id != "req-1&2" {
		t.Errorf("parseLoginForm = %q, %q, %v; want /login, req-1&2", action, id, err)
	}
	for _, page := range []string{
		"",
		"<html>edgeauth error page</html>",
		strings.Replace(devidpPage, `value="req-1&amp;2"`, `value=""`, 1),
		strings.Replace(devidpPage, `name="password"`, `name="pin"`, 1),
	} {
		if _, _, err := parseLoginForm([]byte(page)); err == nil {
			t.Errorf("parseLoginForm accepted %q", page)
		}
	}
}

func TestMedian(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{1.3, 0.7}, 1}, {[]float64{5, 1, 3}, 3}} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestParseCPUModel(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"Architecture: x86_64\nModel name:   AMD EPYC\nCPU(s): 2\n": "AMD EPYC",
		"Model name:\n": "unknown",
		"":              "unknown",
	} {
		if got := parseCPUModel(in); got != want {
			t.Errorf("parseCPUModel(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReportMarkdown(t *testing.T) {
	t.Parallel()
	rd := loadRound{
		Memory:     wrkResult{Requests: 1000, RequestsPerSec: 100, P99: 2 * time.Millisecond},
		RedisA:     wrkResult{Requests: 500, RequestsPerSec: 46, P99: 3 * time.Millisecond},
		RedisB:     wrkResult{Requests: 500, RequestsPerSec: 46, P99: 4 * time.Millisecond},
		RedisSolo:  wrkResult{Requests: 990, RequestsPerSec: 99},
		RoundTrips: 10, Commands: commandStats{"get": 10},
	}
	if got := rd.ratio(); got != 0.92 {
		t.Errorf("ratio = %v, want 0.92", got)
	}
	if got := rd.tripsPerRequest(); got != 0.01 {
		t.Errorf("tripsPerRequest = %v, want 0.01", got)
	}
	r := report{Date: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC), CPUModel: "AMD EPYC", Cores: 2, Duration: 10 * time.Second,
		Conns: 32, Command: "go run ./bench/redis", Rounds: []loadRound{rd},
		Revocations: []time.Duration{time.Millisecond, 2 * time.Millisecond}, RevokeCalls: []time.Duration{3 * time.Millisecond}}
	md := r.markdown()
	for _, want := range []string{
		"AMD EPYC, 2 cores", "Conditions: load average",
		"| 1 | 100 | 92 (46 + 46) | 92.0% | 99 | 99.0% | 2.00ms | 3.00ms / 4.00ms | 0 | 0.0100 (10 commands / 1000 requests) |",
		"median 92.0% over 1 rounds", "get=10",
		"over 2 single-session revocations", "p50 1.00ms, p99 2.00ms",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func FuzzParseWrk(f *testing.F) {
	f.Add([]byte("Requests/sec: 1.5\n 10 requests in 1s\n     50%    1.00ms\n"))
	f.Add([]byte("Requests/sec: 1e309\n 99999999999999999999 requests in\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := bench.ParseWrk(b)
		if err == nil && (r.Requests < 0 || r.SocketErrors < 0) {
			t.Errorf("negative counts from %q: %+v", b, r)
		}
	})
}

func FuzzParseCommandStats(f *testing.F) {
	f.Add("cmdstat_get:calls=1,usec=2\ncmdstat_ping:calls=3")
	f.Add("cmdstat_:calls=,calls=1")
	f.Fuzz(func(t *testing.T, s string) {
		cs, err := parseCommandStats(s)
		if err != nil {
			return
		}
		for k, v := range cs {
			if v < 0 {
				t.Errorf("negative count %s=%d from %q", k, v, s)
			}
		}
		_, _ = commandStats{}.sub(cs)
	})
}

func FuzzParseLoginForm(f *testing.F) {
	f.Add([]byte(devidpPage))
	f.Add([]byte(`<form action=""><input name="id" value="x"> name="password"`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, id, err := parseLoginForm(b)
		if err == nil && id == "" {
			t.Errorf("accepted a page without an id: %q", b)
		}
	})
}
