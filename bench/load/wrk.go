package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// wrkResult is what one wrk run measured.
type wrkResult struct {
	RequestsPerSec float64
	P50, P99       time.Duration
	Requests       int
	Errors         int // connect/read/write/timeout errors plus non-2xx/3xx responses
	Non2xx         int // of Errors, answers that were not 2xx/3xx
	// CPUPerReq is the server process's CPU time over the run divided by
	// Requests; filled in by the harness, not by wrk (0: not measured).
	CPUPerReq time.Duration
}

var (
	reqPerSec = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	percentil = regexp.MustCompile(`^\s+(50|99)(?:\.000)?%\s+([0-9.]+)(us|ms|s)`)
	totalReqs = regexp.MustCompile(`([0-9]+) requests in`)
	sockErrs  = regexp.MustCompile(`Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)`)
	non2xx    = regexp.MustCompile(`Non-2xx or 3xx responses: ([0-9]+)`)
)

// runWrk drives url for d with conns connections on one thread, pinned to
// cpu when cpu >= 0, sending the extra headers.
func runWrk(ctx context.Context, cpu int, url string, d time.Duration, conns int, headers []string) (wrkResult, error) {
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
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: %w: %s", url, err, out)
	}
	return parseWrk(out)
}

func parseWrk(out []byte) (wrkResult, error) {
	var r wrkResult
	m := reqPerSec.FindSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("wrk output has no Requests/sec: %s", out)
	}
	r.RequestsPerSec, _ = strconv.ParseFloat(string(m[1]), 64)
	if m := totalReqs.FindSubmatch(out); m != nil {
		r.Requests, _ = strconv.Atoi(string(m[1]))
	}
	if m := sockErrs.FindSubmatch(out); m != nil {
		for _, g := range m[1:] {
			n, _ := strconv.Atoi(string(g))
			r.Errors += n
		}
	}
	if m := non2xx.FindSubmatch(out); m != nil {
		n, _ := strconv.Atoi(string(m[1]))
		r.Errors += n
		r.Non2xx = n
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := percentil.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		v, _ := strconv.ParseFloat(m[2], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[m[3]]
		d := time.Duration(v * float64(unit))
		if strings.HasPrefix(m[1], "50") {
			r.P50 = d
		} else {
			r.P99 = d
		}
	}
	return r, nil
}
