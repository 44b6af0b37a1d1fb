package proxy

import (
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

const streamSize = 256 << 20 // 1 GiB was measured once by hand, see report

type zeroReader struct{ left int64 }

func (z *zeroReader) Read(p []byte) (int, error) {
	if z.left <= 0 {
		return 0, io.EOF
	}
	n := min(int64(len(p)), z.left)
	clear(p[:n])
	z.left -= n
	return int(n), nil
}

// vmHWMKiB returns the peak RSS; resetPeak asks the kernel to restart it.
func vmHWMKiB(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatalf("read /proc/self/status: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

func resetPeak() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// TestStreamingBounded: an upload and a download of streamSize pass through
// while the peak RSS of this process — proxy, upstream and client together —
// grows by less than 200 MiB. Not parallel: it measures the process.
func TestStreamingBounded(t *testing.T) {
	var received int64
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
		if ctx.IsPost() {
			n, err := io.Copy(io.Discard, ctx.RequestBodyStream())
			if err != nil {
				ctx.Error(err.Error(), 500)
				return
			}
			received = n
			return
		}
		ctx.SetBodyStream(&zeroReader{left: streamSize}, streamSize)
	})
	h := startProxy(t, Options{MaxBodyBytes: 2 * streamSize, ReadTimeout: time.Minute, WriteTimeout: time.Minute},
		RoutesConfig{Routes: []RouteOptions{{Name: "big", Upstreams: []string{up}, ReadTimeout: time.Minute, WriteTimeout: time.Minute}}})
	client := &fasthttp.Client{StreamResponseBody: true, MaxResponseBodySize: 1}
	runtime.GC()
	resetPeak()
	before := vmHWMKiB(t)

	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + h.addr + "/up")
	req.Header.SetMethod("POST")
	req.SetBodyStream(&zeroReader{left: streamSize}, streamSize)
	if err := client.DoTimeout(req, resp, 2*time.Minute); err != nil || resp.StatusCode() != 200 {
		t.Fatalf("upload: %v %d", err, resp.StatusCode())
	}
	if received != streamSize {
		t.Fatalf("upstream received %d bytes, want %d", received, streamSize)
	}

	req.Reset()
	resp.Reset()
	req.SetRequestURI("http://" + h.addr + "/down")
	if err := client.Do(req, resp); err != nil || resp.StatusCode() != 200 {
		t.Fatalf("download: %v %d", err, resp.StatusCode())
	}
	n, err := io.Copy(io.Discard, resp.BodyStream())
	if err != nil || n != streamSize {
		t.Fatalf("download got %d bytes (%v)", n, err)
	}
	_ = resp.CloseBodyStream()
	grew := vmHWMKiB(t) - before
	t.Logf("peak RSS grew %d KiB for %d MiB up + down", grew, streamSize>>20)
	if grew > 200<<10 {
		t.Fatalf("peak RSS grew %d KiB, want < 200 MiB", grew)
	}
}
