package main

import (
	"testing"
	"time"
)

func TestParseWrk(t *testing.T) {
	out := []byte(`Running 10s test @ http://127.0.0.1:18080/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   650.21us  200.11us   9.93ms   90.00%
    Req/Sec    98.12k     3.01k  103.00k    80.00%
  Latency Distribution
     50%  612.00us
     75%  700.00us
     90%  800.00us
     99%    1.52ms
  976543 requests in 10.00s, 120.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  97654.30
Transfer/sec:     12.00MB
`)
	r, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.RequestsPerSec != 97654.30 || r.Requests != 976543 || r.Errors != 7 || r.Non2xx != 4 {
		t.Fatalf("got %+v", r)
	}
	if r.P50 != 612*time.Microsecond || r.P99 != 1520*time.Microsecond {
		t.Fatalf("percentiles %v %v", r.P50, r.P99)
	}
	if _, err := parseWrk([]byte("garbage")); err == nil {
		t.Fatal("want error for output without Requests/sec")
	}
}
