package main

// The pure parts of the harness: parsers of what wrk, redis INFO, lscpu and
// the development provider's login page print, the statistics, and the
// markdown report. None of them starts a process; parse_test.go covers
// them.

import (
	"errors"
	"fmt"
	"github.com/edgeauth/edgeauth/bench"
	"html"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// wrkResult is what one wrk run measured (shared with bench/load).
type wrkResult = bench.WrkResult

// commandStats maps a Redis command name (lower case, "get", "evalsha",
// "publish", …) to its call count, from `INFO commandstats`.
type commandStats map[string]int64

// parseCommandStats reads the "cmdstat_NAME:calls=N,usec=…" lines of INFO
// commandstats; other lines (section headers, blank) are ignored.
func parseCommandStats(info string) (commandStats, error) {
	out := commandStats{}
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		name, rest, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		name = strings.TrimPrefix(name, "cmdstat_")
		found := false
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			if k != "calls" {
				continue
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("commandstats %s: bad calls %q", name, v)
			}
			out[name] += n
			found = true
		}
		if !found {
			return nil, fmt.Errorf("commandstats %s: no calls field", name)
		}
	}
	return out, nil
}

// sub returns after minus s per command, leaving out the harness's own
// INFO calls, and the total.
func (s commandStats) sub(after commandStats) (commandStats, int64) {
	d := commandStats{}
	var total int64
	for k, v := range after {
		if k == "info" {
			continue
		}
		if n := v - s[k]; n > 0 {
			d[k] = n
			total += n
		}
	}
	return d, total
}

// String lists the commands by count, largest first: "get=3 ping=2".
func (s commandStats) String() string {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if s[keys[i]] != s[keys[j]] {
			return s[keys[i]] > s[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, s[k])
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

// median of xs (the mean of the middle two for an even count); 0 when
// empty.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// percentile returns the p-th percentile (0 < p <= 100) of ds by the
// nearest-rank method; 0 for an empty slice.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(float64(len(s))*p/100+0.999999999) - 1
	return s[min(max(rank, 0), len(s)-1)]
}

var (
	loginIDInput = regexp.MustCompile(`<input\b[^>]*\bname="id"[^>]*>`)
	valueAttr    = regexp.MustCompile(`\bvalue="([^"]*)"`)
	formAction   = regexp.MustCompile(`<form\b[^>]*\baction="([^"]*)"`)
)

// parseLoginForm returns the action and the hidden request id of the
// development provider's login page (internal/devidp/login.go).
func parseLoginForm(page []byte) (action, id string, err error) {
	f := formAction.FindSubmatch(page)
	in := loginIDInput.Find(page)
	if f == nil || in == nil || !strings.Contains(string(page), `name="password"`) {
		return "", "", errors.New("not the provider's login page")
	}
	v := valueAttr.FindSubmatch(in)
	if v == nil || len(v[1]) == 0 {
		return "", "", errors.New("login page without a request id")
	}
	return html.UnescapeString(string(f[1])), html.UnescapeString(string(v[1])), nil
}

// parseCPUModel returns the "Model name" of lscpu output, or "unknown".
func parseCPUModel(lscpu string) string {
	for _, line := range strings.Split(lscpu, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "Model name" {
			if v = strings.TrimSpace(v); v != "" {
				return v
			}
		}
	}
	return "unknown"
}

// loadRound is one measured round of both setups.
type loadRound struct {
	Memory      wrkResult    // one instance, memory store
	RedisA      wrkResult    // instance A of the Redis pair
	RedisB      wrkResult    // instance B of the Redis pair
	RedisSolo   wrkResult    // instance A alone, all connections: the store's cost without a second process on the core
	RoundTrips  int64        // Redis commands during the Redis phase
	Commands    commandStats // those commands by name
	PinnedLabel string       // how processes were pinned
}

// redisRPS is the pair's combined throughput.
func (r loadRound) redisRPS() float64 { return r.RedisA.RequestsPerSec + r.RedisB.RequestsPerSec }

// redisRequests is the pair's combined request count.
func (r loadRound) redisRequests() int { return r.RedisA.Requests + r.RedisB.Requests }

// ratio is the pair's throughput relative to the memory store's.
func (r loadRound) ratio() float64 {
	if r.Memory.RequestsPerSec == 0 {
		return 0
	}
	return r.redisRPS() / r.Memory.RequestsPerSec
}

// soloRatio is instance A alone relative to the memory store: the same
// one process on the core, only the store differs.
func (r loadRound) soloRatio() float64 {
	if r.Memory.RequestsPerSec == 0 {
		return 0
	}
	return r.RedisSolo.RequestsPerSec / r.Memory.RequestsPerSec
}

// errors counts socket errors over every run of the round.
func (r loadRound) errors() int {
	return r.Memory.SocketErrors + r.RedisA.SocketErrors + r.RedisB.SocketErrors + r.RedisSolo.SocketErrors
}

// non2xx counts error responses over every run of the round.
func (r loadRound) non2xx() int {
	return r.Memory.Non2xx + r.RedisA.Non2xx + r.RedisB.Non2xx + r.RedisSolo.Non2xx
}

// tripsPerRequest is Redis round trips per proxied request.
func (r loadRound) tripsPerRequest() float64 {
	if n := r.redisRequests(); n > 0 {
		return float64(r.RoundTrips) / float64(n)
	}
	return 0
}

// report is everything RESULTS.md shows.
type report struct {
	Date        time.Time
	CPUModel    string
	Cores       int
	Duration    time.Duration
	Conns       int
	Pinning     string
	LoadAvg     string // /proc/loadavg's first three fields
	Rounds      []loadRound
	Revocations []time.Duration // revoke acknowledged by A → refused by B
	RevokeCalls []time.Duration // revoke sent to A → refused by B
	Command     string
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	}
}

// markdown renders the report as a section for bench/RESULTS.md.
func (r report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Redis session store: two instances sharing Redis vs one memory-store instance\n\n")
	fmt.Fprintf(&b, "Command: `%s` (bench/redis), %s.\n\n", r.Command, r.Date.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Machine: %s, %d cores. Conditions: load average %s before the run; both setups run in "+
		"the same rounds, alternating, and the ratio is what counts. %s\n\n", r.CPUModel, r.Cores, r.LoadAvg, r.Pinning)
	fmt.Fprintf(&b, "Load: wrk, %d connections per setup (split evenly across A and B for the pair), %s per run "+
		"after a warm-up, GET of a protected route with a valid session cookie (a real login through the "+
		"development provider), risk scoring and identity assertion on, as in the default config; upstream "+
		"is bench/upstream (64-byte body). Redis: redis-server on loopback, no persistence; L1 TTL 10s (default).\n\n",
		r.Conns, r.Duration)
	b.WriteString("| round | memory store, 1 instance (req/s) | Redis, A+B (req/s) | ratio | Redis, A alone (req/s) | ratio | p99 memory | p99 A / B | socket errors | Redis round trips / request (A+B) |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for i, rd := range r.Rounds {
		fmt.Fprintf(&b, "| %d | %.0f | %.0f (%.0f + %.0f) | %.1f%% | %.0f | %.1f%% | %s | %s / %s | %d | %.4f (%d commands / %d requests) |\n",
			i+1, rd.Memory.RequestsPerSec, rd.redisRPS(), rd.RedisA.RequestsPerSec, rd.RedisB.RequestsPerSec,
			100*rd.ratio(), rd.RedisSolo.RequestsPerSec, 100*rd.soloRatio(), fmtDur(rd.Memory.P99), fmtDur(rd.RedisA.P99), fmtDur(rd.RedisB.P99),
			rd.errors(), rd.tripsPerRequest(), rd.RoundTrips, rd.redisRequests())
	}
	b.WriteString("\n")
	if len(r.Rounds) > 0 {
		ratios := make([]float64, len(r.Rounds))
		for i, rd := range r.Rounds {
			ratios[i] = rd.ratio()
		}
		solo := make([]float64, len(r.Rounds))
		for i, rd := range r.Rounds {
			solo[i] = rd.soloRatio()
		}
		fmt.Fprintf(&b, "Throughput ratio Redis pair / memory store: median %.1f%% over %d rounds (target ≥ 90%%); "+
			"one Redis-store instance / memory store: median %.1f%%. ",
			100*median(ratios), len(ratios), 100*median(solo))
		last := r.Rounds[len(r.Rounds)-1]
		fmt.Fprintf(&b, "Redis commands in the last round by name: %s (target < 0.05 round trips per request; "+
			"counted server-side with INFO commandstats, the harness's own INFO excluded, pub/sub health-check "+
			"PINGs included).\n\n", last.Commands)
	}
	if n := len(r.Revocations); n > 0 {
		fmt.Fprintf(&b, "Revocation propagation A→B over %d single-session revocations (`DELETE /admin/sessions/{id}` on A's "+
			"admin API, B holding the session in its L1, B polled back to back until it refuses): "+
			"from A's answer p50 %s, p99 %s, max %s; from sending the call p50 %s, p99 %s (target p99 < 1s).\n",
			n, fmtDur(percentile(r.Revocations, 50)), fmtDur(percentile(r.Revocations, 99)), fmtDur(percentile(r.Revocations, 100)),
			fmtDur(percentile(r.RevokeCalls, 50)), fmtDur(percentile(r.RevokeCalls, 99)))
	}
	return b.String()
}
