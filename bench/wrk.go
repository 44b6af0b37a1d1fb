package bench

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"time"
)

// WrkResult is what one `wrk --latency` run measured.
type WrkResult struct {
	Requests       int
	RequestsPerSec float64
	P50, P99       time.Duration
	// SocketErrors counts connect, read, write and timeout errors.
	SocketErrors int
	// Non2xx counts answers wrk reports as "Non-2xx or 3xx" (status >= 400).
	Non2xx int
}

var (
	wrkReqPerSec = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkTotal     = regexp.MustCompile(`([0-9]+) requests in`)
	wrkPct       = regexp.MustCompile(`(?m)^\s+(50|99)(?:\.000)?%\s+([0-9.]+)(us|ms|s)\s*$`)
	wrkSockErrs  = regexp.MustCompile(`Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)`)
	wrkNon2xx    = regexp.MustCompile(`Non-2xx or 3xx responses: ([0-9]+)`)
)

// RunWrk drives url for d with conns keep-alive connections on one wrk
// thread, pinned to cpu with taskset when cpu >= 0, sending the extra
// headers ("Name: value").
func RunWrk(ctx context.Context, cpu int, url string, d time.Duration, conns int, headers []string) (WrkResult, error) {
	args := []string{"-t1", "-c" + strconv.Itoa(conns), "-d" + strconv.Itoa(int(d.Seconds())) + "s", "--latency"}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	args = append(args, url)
	name := "wrk"
	if cpu >= 0 {
		args = append([]string{"-c", strconv.Itoa(cpu), "wrk"}, args...)
		name = "taskset"
	}
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return WrkResult{}, fmt.Errorf("wrk %s: %w: %s", url, err, out)
	}
	return ParseWrk(out)
}

// ParseWrk reads the output of `wrk --latency`.
func ParseWrk(out []byte) (WrkResult, error) {
	var r WrkResult
	m := wrkReqPerSec.FindSubmatch(out)
	if m == nil {
		return r, errors.New("wrk output has no Requests/sec line")
	}
	var err error
	if r.RequestsPerSec, err = strconv.ParseFloat(string(m[1]), 64); err != nil {
		return r, fmt.Errorf("wrk Requests/sec: %w", err)
	}
	m = wrkTotal.FindSubmatch(out)
	if m == nil {
		return r, errors.New("wrk output has no request count")
	}
	if r.Requests, err = strconv.Atoi(string(m[1])); err != nil {
		return r, fmt.Errorf("wrk request count: %w", err)
	}
	for _, p := range wrkPct.FindAllSubmatch(out, -1) {
		v, err := strconv.ParseFloat(string(p[2]), 64)
		if err != nil {
			return r, fmt.Errorf("wrk latency: %w", err)
		}
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[string(p[3])]
		d := time.Duration(v * float64(unit))
		if string(p[1]) == "50" {
			r.P50 = d
		} else {
			r.P99 = d
		}
	}
	if m := wrkSockErrs.FindSubmatch(out); m != nil {
		for _, g := range m[1:] {
			n, _ := strconv.Atoi(string(g)) // digits only by the pattern
			r.SocketErrors += n
		}
	}
	if m := wrkNon2xx.FindSubmatch(out); m != nil {
		r.Non2xx, _ = strconv.Atoi(string(m[1]))
	}
	return r, nil
}
