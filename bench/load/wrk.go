package main

import (
	"context"
	"time"

	"github.com/edgeauth/edgeauth/bench"
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

// runWrk runs wrk (bench.RunWrk) and returns the harness's view of it.
func runWrk(ctx context.Context, cpu int, url string, d time.Duration, conns int, headers []string) (wrkResult, error) {
	r, err := bench.RunWrk(ctx, cpu, url, d, conns, headers)
	return fromWrk(r), err
}

// parseWrk reads wrk --latency output (bench.ParseWrk).
func parseWrk(out []byte) (wrkResult, error) {
	r, err := bench.ParseWrk(out)
	return fromWrk(r), err
}

func fromWrk(r bench.WrkResult) wrkResult {
	return wrkResult{RequestsPerSec: r.RequestsPerSec, P50: r.P50, P99: r.P99, Requests: r.Requests,
		Errors: r.SocketErrors + r.Non2xx, Non2xx: r.Non2xx}
}
