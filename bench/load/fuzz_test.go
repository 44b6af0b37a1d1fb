package main

import (
	"os"
	"path/filepath"
	"testing"
)

func FuzzParseWrk(f *testing.F) {
	f.Add([]byte("Requests/sec:  97654.30\n     50%  612.00us\n     99%    1.52ms\n"))
	f.Add([]byte("  976543 requests in 10.00s\n  Socket errors: connect 0, read 2, write 0, timeout 1\nRequests/sec: 1\n"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, out []byte) {
		r, err := parseWrk(out)
		if err == nil && (r.RequestsPerSec < 0 || r.Errors < 0) {
			t.Errorf("negative figures from %q: %+v", out, r)
		}
	})
}

func FuzzParseStraceC(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("testdata", "strace-c.txt")); err == nil {
		f.Add(b)
	}
	f.Add([]byte("% time     seconds  usecs/call     calls    errors syscall\n------ ----------- ----------- --------- --------- ----------------\n100.00    0.019600                 13600      1000 total\n"))
	f.Add([]byte("% time\n---\n"))
	f.Fuzz(func(t *testing.T, out []byte) {
		rows, total, err := parseStraceC(out)
		if err != nil {
			return
		}
		if total.Name != "total" {
			t.Errorf("accepted without a total line: %q", out)
		}
		for i := 1; i < len(rows); i++ {
			if rows[i].Calls > rows[i-1].Calls {
				t.Errorf("rows not sorted by calls: %+v", rows)
			}
		}
	})
}

func FuzzSumMetric(f *testing.F) {
	f.Add([]byte("edgeauth_requests_total{code=\"2xx\"} 5\n"), "edgeauth_requests_total")
	f.Add([]byte("m{a=\"}\"} 1e3\nm 2\n"), "m")
	f.Fuzz(func(t *testing.T, text []byte, name string) {
		if v, ok := sumMetric(text, name); !ok && v != 0 {
			t.Errorf("no sample but sum %v", v)
		}
	})
}

func FuzzParseSchedstat(f *testing.F) {
	f.Add([]byte("123456789 2000 30\n"))
	f.Add([]byte("-1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if d, err := parseSchedstat(b); err == nil && d < 0 {
			t.Errorf("negative run time %v from %q", d, b)
		}
	})
}
