package proxy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/valyala/fasthttp"
)

// logSink collects JSON log lines from concurrent writers.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

// access returns the access line for path, polling until it is written: a
// streamed response is logged when its body has been sent.
func (s *logSink) access(t *testing.T, path string) map[string]any {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		s.mu.Lock()
		lines := strings.Split(s.buf.String(), "\n")
		s.mu.Unlock()
		for _, l := range lines {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "access" && m["path"] == path {
				return m
			}
		}
	}
	t.Fatalf("no access line for %s", path)
	return nil
}

// TestAccessLogByteCounts: bytes_in and bytes_out are the bytes of body
// actually passed through, whatever the framing, and 0 without a body.
func TestAccessLogByteCounts(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
		switch string(ctx.Path()) {
		case "/chunked-down":
			ctx.SetBodyStream(strings.NewReader(strings.Repeat("d", 70000)), -1)
		case "/fixed-down":
			ctx.SetBodyString("12345")
		case "/empty":
		default:
			n, _ := io.Copy(io.Discard, ctx.RequestBodyStream())
			ctx.SetBodyString(strings.Repeat("u", int(n%7)))
		}
	})
	var sink logSink
	h := startProxy(t, Options{Logger: slog.New(slog.NewJSONHandler(&sink, nil))},
		RoutesConfig{Routes: []RouteOptions{{Name: "r", Upstreams: []string{up}}}})
	chunked := "b\r\nhello world\r\n" + "3e8\r\n" + strings.Repeat("x", 1000) + "\r\n0\r\n\r\n"
	tests := []struct {
		name, req, path string
		wantIn, wantOut float64
	}{
		{"no body", "GET /empty HTTP/1.1\r\nHost: a\r\n\r\n", "/empty", 0, 0},
		{"fixed download", "GET /fixed-down HTTP/1.1\r\nHost: a\r\n\r\n", "/fixed-down", 0, 5},
		{"chunked download", "GET /chunked-down HTTP/1.1\r\nHost: a\r\n\r\n", "/chunked-down", 0, 70000},
		{"fixed upload", "POST /fixed-up HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\nhello world!", "/fixed-up", 12, 5},
		{"chunked upload", "POST /chunked-up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked, "/chunked-up", 1011, 1011 % 7},
		{"proxy's own 404", "GET /.edgeauth/none HTTP/1.1\r\nHost: a\r\n\r\n", "/.edgeauth/none", 0, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out := raw(t, h.addr, tc.req)
			_, body, _ := strings.Cut(out, "\r\n\r\n")
			m := sink.access(t, tc.path)
			wantOut := tc.wantOut
			if wantOut < 0 { // the proxy's own error page: whatever it wrote
				wantOut = float64(len(body))
			}
			got := map[string]any{"bytes_in": m["bytes_in"], "bytes_out": m["bytes_out"]}
			want := map[string]any{"bytes_in": tc.wantIn, "bytes_out": wantOut}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("access line (-want +got):\n%s\n%v", diff, m)
			}
		})
	}
}

// slowReader yields n chunks of size bytes, pausing every time.
type slowReader struct {
	chunks, size int
	pause        time.Duration
}

func (s *slowReader) Read(p []byte) (int, error) {
	if s.chunks == 0 {
		return 0, io.EOF
	}
	time.Sleep(s.pause) // the slow peer under test, not a wait for a condition
	s.chunks--
	n := min(len(p), s.size)
	clear(p[:n])
	return n, nil
}

// TestSlowTransfersUseIdleTimeouts: with every timeout at 500ms, an upload
// and a download that each take ~1.5s but never pause longer than 100ms pass
// through; a transfer that stalls for longer than the timeout is cut.
func TestSlowTransfersUseIdleTimeouts(t *testing.T) {
	t.Parallel()
	const timeout = 500 * time.Millisecond
	const chunks, size, upChunk = 16, 1000, 9000
	var mu sync.Mutex
	received := map[string]int64{}
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
		if ctx.IsPost() {
			n, _ := io.Copy(io.Discard, ctx.RequestBodyStream())
			mu.Lock()
			received[string(ctx.Path())] = n
			mu.Unlock()
			return
		}
		pause := 100 * time.Millisecond
		if string(ctx.Path()) == "/stall" {
			pause = 3 * timeout
		}
		ctx.SetBodyStream(&slowReader{chunks: chunks, size: size, pause: pause}, -1)
	}, func(s *fasthttp.Server) { s.ReadTimeout = time.Minute })
	h := startProxy(t, Options{ReadTimeout: timeout, WriteTimeout: timeout},
		RoutesConfig{Routes: []RouteOptions{{Name: "r", Upstreams: []string{up}, ReadTimeout: timeout, WriteTimeout: timeout}}})

	// upload sends the head and the first chunk at once (fasthttp reads up
	// to 8 KiB of body with the head, under one ReadTimeout), then one chunk
	// per pause.
	upload := func(path string, pause time.Duration) (int, error) {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		var req fasthttp.Request
		req.Header.SetMethod("POST")
		req.Header.SetRequestURI(path)
		req.Header.SetHost("a")
		req.Header.SetContentLength(chunks * upChunk)
		chunk := make([]byte, upChunk)
		if _, err := c.Write(append(req.Header.Header(), chunk...)); err != nil {
			return 0, err
		}
		for range chunks - 1 {
			time.Sleep(pause) // the slow client under test
			if _, err := c.Write(chunk); err != nil {
				break
			}
		}
		var resp fasthttp.Response
		if err := resp.Read(bufio.NewReader(c)); err != nil {
			return 0, err
		}
		return resp.StatusCode(), nil
	}
	t.Run("slow upload", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		if code, err := upload("/up", 100*time.Millisecond); err != nil || code != 200 {
			t.Fatalf("upload: %d %v", code, err)
		}
		mu.Lock()
		n := received["/up"]
		mu.Unlock()
		if n != chunks*upChunk {
			t.Fatalf("upstream received %d bytes, want %d", n, chunks*upChunk)
		}
		if d := time.Since(start); d < 2*timeout {
			t.Fatalf("upload took %v; the test needs it to outlast the timeout", d)
		}
	})
	t.Run("stalled upload is cut", func(t *testing.T) {
		t.Parallel()
		// The client is the slow party: 408, not the upstream's 504.
		if code, err := upload("/stalled-up", 3*timeout); code != fasthttp.StatusRequestTimeout {
			t.Fatalf("upload stalled for 3× the read timeout: %d %v, want 408", code, err)
		}
	})
	download := func(path string) (int64, error) {
		var req fasthttp.Request
		var resp fasthttp.Response
		req.SetRequestURI("http://" + h.addr + path)
		c := &fasthttp.Client{StreamResponseBody: true}
		if err := c.DoTimeout(&req, &resp, 10*time.Second); err != nil {
			return 0, err
		}
		defer resp.CloseBodyStream() //nolint:errcheck
		return io.Copy(io.Discard, resp.BodyStream())
	}
	t.Run("slow download", func(t *testing.T) {
		t.Parallel()
		if n, err := download("/down"); err != nil || n != chunks*size {
			t.Fatalf("download: %d bytes, %v; want %d", n, err, chunks*size)
		}
	})
	t.Run("stalled download is cut", func(t *testing.T) {
		t.Parallel()
		if n, err := download("/stall"); err == nil && n == chunks*size {
			t.Fatal("download with 3× timeout stalls completed")
		}
	})
}
