package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeauth/edgeauth/middleware/reqstate"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/valyala/fasthttp"
)

func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

var fixed = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// syncBuffer is an io.Writer safe to read after Close.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) events(t *testing.T) []map[string]any {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(s.b.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Bytes(), err)
		}
		out = append(out, m)
	}
	return out
}

func closeRec(t *testing.T, r *Recorder) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestMiddlewareRecordsDecisions(t *testing.T) {
	t.Parallel()
	out := &syncBuffer{}
	reg := prometheus.NewRegistry()
	rec, err := New(Options{Writer: out, Registerer: reg, Now: func() time.Time { return fixed }})
	if err != nil {
		t.Fatal(err)
	}
	mw, err := Middleware(rec, MiddlewareOptions{Route: "wiki", Shadow: func(*fasthttp.RequestCtx) reqstate.Decision { return reqstate.DecisionStepUp }})
	if err != nil {
		t.Fatal(err)
	}
	// The rest of the chain: identify, risk and policy set the state; a
	// deny writes 403 without calling the upstream.
	h := mw(func(ctx *fasthttp.RequestCtx) {
		st := reqstate.Get(ctx)
		st.Method = reqstate.MethodSession
		st.SessionID = "raw-session-id-secret"
		st.DeviceID = "raw-device-id"
		st.Principal.Subject, st.Principal.Issuer = "alice", "https://idp"
		st.ClientIP = netip.MustParseAddr("175.16.199.0")
		st.Location = reqstate.Location{Country: "CN", City: "Changchun", ASN: 4134}
		st.RiskScore = 95
		st.AddReason("impossible_travel")
		st.AddReason("new_device")
		st.Decision, st.DenyReason = reqstate.DecisionDeny, "risk_too_high"
		ctx.SetStatusCode(403)
	})
	ctx := new(fasthttp.RequestCtx)
	ctx.Request.Header.Set("X-Request-Id", "req-42")
	h(ctx)
	// Plain allows take the counter looked up when the middleware was
	// built; they must land in the same series as any other.
	allow := mw(func(ctx *fasthttp.RequestCtx) { reqstate.Get(ctx).Decision = reqstate.DecisionAllow })
	for range 2 {
		allow(new(fasthttp.RequestCtx))
	}
	rec.Emit(Event{Type: "admin", Subject: "ops", Detail: "revoked sessions of alice"})
	closeRec(t, rec)

	want := []map[string]any{
		{
			"time": "2026-03-01T12:00:00Z", "type": "request", "request_id": "req-42", "route": "wiki",
			"sub": "alice", "iss": "https://idp", "session": HashID("raw-session-id-secret"), "method": "session",
			"client_ip": "175.16.199.0", "country": "CN", "city": "Changchun", "asn": float64(4134),
			"device": HashID("raw-device-id"), "score": float64(95), "reasons": []any{"impossible_travel", "new_device"},
			"decision": "deny", "shadow_decision": "step_up", "reason": "risk_too_high", "status": float64(403),
		},
		{"time": "2026-03-01T12:00:00Z", "type": "request", "route": "wiki", "method": "none", "score": float64(0), "decision": "allow", "shadow_decision": "step_up", "status": float64(200)},
		{"time": "2026-03-01T12:00:00Z", "type": "request", "route": "wiki", "method": "none", "score": float64(0), "decision": "allow", "shadow_decision": "step_up", "status": float64(200)},
		{"time": "2026-03-01T12:00:00Z", "type": "admin", "sub": "ops", "detail": "revoked sessions of alice", "score": float64(0), "decision": ""},
	}
	got := out.events(t)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	// Attack: log exfiltration of live credentials. A raw session id in
	// an audit log is a bearer credential for whoever reads the log.
	if strings.Contains(out.b.String(), "raw-session-id-secret") || strings.Contains(out.b.String(), "raw-device-id") {
		t.Error("raw session or device id written to the audit log")
	}
	if v := counterValue(t, rec.decisions.WithLabelValues("wiki", "deny", "risk_too_high")); v != 1 {
		t.Errorf("decisions{wiki,deny,risk_too_high} = %v, want 1", v)
	}
	if v := counterValue(t, rec.decisions.WithLabelValues("wiki", "allow", "")); v != 2 {
		t.Errorf("decisions{wiki,allow,\"\"} = %v, want 2", v)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	if diff := cmp.Diff([]string{"edgeauth_alerts_dropped_total", "edgeauth_alerts_failed_total", "edgeauth_alerts_sent_total", "edgeauth_audit_dropped_total", "edgeauth_decisions_total"}, names); diff != "" {
		t.Errorf("registered metrics (-want +got):\n%s", diff)
	}
}

// blockingWriter blocks every Write until released and counts the events
// (lines) written: several may share one write. entered is closed when
// the first Write starts.
type blockingWriter struct {
	release chan struct{}
	entered chan struct{}
	once    sync.Once
	writes  atomic.Int64
}

func (b *blockingWriter) Write(p []byte) (int, error) {
	b.once.Do(func() { close(b.entered) })
	<-b.release
	b.writes.Add(int64(bytes.Count(p, []byte("\n"))))
	return len(p), nil
}

func TestFullQueueDropsWithoutBlocking(t *testing.T) {
	t.Parallel()
	w := &blockingWriter{release: make(chan struct{}), entered: make(chan struct{})}
	rec, err := New(Options{Writer: w, QueueSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	// Get the writer stuck in a write (the audit file's disk is slow or
	// full), then flood it.
	rec.Emit(Event{Type: "request", Decision: "allow"})
	<-w.entered
	done := make(chan struct{})
	go func() {
		for range 999 {
			rec.Emit(Event{Type: "request", Decision: "allow"})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Emit blocked on a full queue")
	}
	// At most 4 queued behind the stuck writer; the rest dropped.
	if d := rec.Dropped(); d < 995 {
		t.Errorf("dropped = %d, want >= 995", d)
	}
	if v := counterValue(t, rec.dropped); v != float64(rec.Dropped()) {
		t.Errorf("dropped counter = %v, want %d", v, rec.Dropped())
	}
	close(w.release)
	closeRec(t, rec)
	if got := w.writes.Load() + int64(rec.Dropped()); got != 1000 {
		t.Errorf("written + dropped = %d, want 1000", got)
	}
}

// receiver is a real loopback webhook endpoint that verifies signatures
// and fails the first failFirst deliveries with status failStatus.
type receiver struct {
	secret     []byte
	failFirst  int
	failStatus int
	attempts   atomic.Int64
	badSig     atomic.Int64
	mu         sync.Mutex
	bodies     []map[string]any
	url        string
}

func startReceiver(t *testing.T, secret []byte, failFirst, failStatus int) *receiver {
	t.Helper()
	rv := &receiver{secret: secret, failFirst: failFirst, failStatus: failStatus}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := rv.attempts.Add(1)
		body, _ := io.ReadAll(r.Body)
		ts := r.Header.Get("X-Edgeauth-Timestamp")
		sec, err := strconv.ParseInt(ts, 10, 64)
		want := Sign(rv.secret, ts, body)
		if err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute ||
			!hmac.Equal([]byte(want), []byte(r.Header.Get("X-Edgeauth-Signature"))) || r.Method != http.MethodPost {
			rv.badSig.Add(1)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if int(n) <= rv.failFirst {
			w.WriteHeader(rv.failStatus)
			return
		}
		var m map[string]any
		_ = json.Unmarshal(body, &m)
		rv.mu.Lock()
		rv.bodies = append(rv.bodies, m)
		rv.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	rv.url = "http://" + ln.Addr().String() + "/hook"
	return rv
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAlertsSignedAndRetried(t *testing.T) {
	t.Parallel()
	secret := []byte("webhook-secret")
	tests := []struct {
		name         string
		failFirst    int
		failStatus   int
		maxAttempts  int
		wantAttempts int64
		wantSent     float64
		wantFailed   float64
	}{
		{name: "transient failures retried", failFirst: 2, failStatus: 503, maxAttempts: 5, wantAttempts: 3, wantSent: 1},
		{name: "gives up after max attempts", failFirst: 100, failStatus: 500, maxAttempts: 3, wantAttempts: 3, wantFailed: 1},
		{name: "permanent 4xx not retried", failFirst: 100, failStatus: 400, maxAttempts: 5, wantAttempts: 1, wantFailed: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rv := startReceiver(t, secret, tt.failFirst, tt.failStatus)
			rec, err := New(Options{Writer: io.Discard, Alerts: AlertOptions{
				URL: rv.url, Secret: secret, On: []string{"deny", "step_up_failed"},
				MaxAttempts: tt.maxAttempts, InitialBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond,
			}})
			if err != nil {
				t.Fatal(err)
			}
			rec.Emit(Event{Type: "request", Route: "wiki", Decision: "allow", SessionID: "s1"}) // no alert
			rec.Emit(Event{Type: "request", Route: "wiki", Decision: "deny", DenyReason: "country_denied", SessionID: "s1"})
			waitFor(t, "delivery outcome", func() bool {
				return counterValue(t, rec.alertsSent)+counterValue(t, rec.alertsFailed) == 1
			})
			closeRec(t, rec)
			got := []any{rv.attempts.Load(), rv.badSig.Load(), counterValue(t, rec.alertsSent), counterValue(t, rec.alertsFailed)}
			if diff := cmp.Diff([]any{tt.wantAttempts, int64(0), tt.wantSent, tt.wantFailed}, got); diff != "" {
				t.Errorf("[attempts badSig sent failed] (-want +got):\n%s", diff)
			}
			if tt.wantSent == 1 {
				rv.mu.Lock()
				defer rv.mu.Unlock()
				if len(rv.bodies) != 1 || rv.bodies[0]["reason"] != "country_denied" || rv.bodies[0]["session"] != HashID("s1") {
					t.Errorf("alert bodies = %v", rv.bodies)
				}
			}
		})
	}
}

func TestAlertOnReasonAndType(t *testing.T) {
	t.Parallel()
	secret := []byte("s")
	rv := startReceiver(t, secret, 0, 0)
	rec, err := New(Options{Writer: io.Discard, Alerts: AlertOptions{URL: rv.url, Secret: secret, On: []string{"impossible_travel", "step_up_failed"}}})
	if err != nil {
		t.Fatal(err)
	}
	rec.Emit(Event{Type: "request", Decision: "step_up", Reasons: []string{"impossible_travel"}})
	rec.Emit(Event{Type: "step_up_failed", Subject: "alice"})
	rec.Emit(Event{Type: "request", Decision: "allow", Reasons: []string{"new_asn"}})
	closeRec(t, rec) // waits for queued deliveries
	if n := rv.attempts.Load(); n != 2 {
		t.Errorf("alerts = %d, want 2", n)
	}
}

func TestSignatureFormat(t *testing.T) {
	t.Parallel()
	// Known-answer: HMAC-SHA256("key", "1700000000.{}").
	got := Sign([]byte("key"), "1700000000", []byte("{}"))
	if !strings.HasPrefix(got, "sha256=") || len(got) != len("sha256=")+64 {
		t.Fatalf("Sign = %q", got)
	}
	if got == Sign([]byte("key"), "1700000001", []byte("{}")) {
		t.Error("signature does not bind the timestamp")
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	t.Parallel()
	for name, o := range map[string]Options{
		"negative queue":   {QueueSize: -1},
		"bad url":          {Alerts: AlertOptions{URL: "ftp://x", Secret: []byte("s")}},
		"relative url":     {Alerts: AlertOptions{URL: "/hook", Secret: []byte("s")}},
		"missing secret":   {Alerts: AlertOptions{URL: "https://hooks.example/x"}},
		"negative attempt": {Alerts: AlertOptions{URL: "https://hooks.example/x", Secret: []byte("s"), MaxAttempts: -1}},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: want error", name)
		}
	}
	if _, err := Middleware(nil, MiddlewareOptions{}); err == nil {
		t.Error("nil recorder: want error")
	}
}

func newReqCtx() *fasthttp.RequestCtx {
	ctx := new(fasthttp.RequestCtx)
	ctx.Request.Header.Set("X-Request-Id", "0123456789abcdef")
	st := reqstate.Get(ctx)
	st.Route = "wiki"
	st.Method = reqstate.MethodSession
	st.SessionID = "sess"
	st.Principal.Subject = "alice"
	st.ClientIP = netip.MustParseAddr("81.2.69.142")
	st.AddReason("new_asn")
	st.Decision = reqstate.DecisionAllow
	return ctx
}

// The request path itself (state → pooled entry → queue) must not
// allocate; encoding happens on the writer goroutine. With the writer
// held, entries are dropped and pooled, so only request-path work is
// measured.
func TestMiddlewareRequestPathAllocs(t *testing.T) {
	w := &blockingWriter{release: make(chan struct{}), entered: make(chan struct{})}
	rec, err := New(Options{Writer: w, QueueSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { close(w.release); closeRec(t, rec) }()
	mw, _ := Middleware(rec, MiddlewareOptions{})
	h := mw(func(*fasthttp.RequestCtx) {})
	ctx := newReqCtx()
	for range 10 {
		h(ctx)
	}
	if n := testing.AllocsPerRun(500, func() { h(ctx) }); n > 0 {
		t.Errorf("request path allocs = %v, want 0", n)
	}
}

// BenchmarkMiddleware includes the writer goroutine's encoding work in
// allocs/op (it runs concurrently), so it is the full cost per event.
func BenchmarkMiddleware(b *testing.B) {
	rec, _ := New(Options{Writer: io.Discard, QueueSize: 1 << 16})
	mw, _ := Middleware(rec, MiddlewareOptions{})
	h := mw(func(*fasthttp.RequestCtx) {})
	ctx := newReqCtx()
	b.ReportAllocs()
	for b.Loop() {
		h(ctx)
	}
	b.StopTimer()
	_ = rec.Close(context.Background())
	b.ReportMetric(float64(rec.Dropped())/float64(b.N), "dropped/op")
}

// countingWriter counts Write calls and lines, blocking the first call
// until released so that events queue up behind it.
type countingWriter struct {
	mu      sync.Mutex
	first   chan struct{}
	calls   int
	lines   int
	started chan struct{}
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.calls++
	n := c.calls
	c.lines += bytes.Count(p, []byte("\n"))
	c.mu.Unlock()
	if n == 1 {
		close(c.started)
		<-c.first
	}
	return len(p), nil
}

// Events that queue while a write is in progress go out together: one
// write(2) for many requests under load.
func TestEventsQueuedDuringAWriteShareTheNextWrite(t *testing.T) {
	t.Parallel()
	w := &countingWriter{first: make(chan struct{}), started: make(chan struct{})}
	rec, err := New(Options{Writer: w, QueueSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	rec.Emit(Event{Type: "request", Decision: "allow"})
	<-w.started
	for range 20 {
		rec.Emit(Event{Type: "request", Decision: "allow"})
	}
	close(w.first)
	closeRec(t, rec)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lines != 21 {
		t.Fatalf("%d events written, want 21", w.lines)
	}
	if w.calls != 2 {
		t.Errorf("%d writes for 21 events, want 2 (one, then the 20 queued behind it)", w.calls)
	}
}

func TestIDHashesMatchHashID(t *testing.T) {
	t.Parallel()
	var c idHashes
	if c.hash("") != "" {
		t.Error(`hash("") not empty`)
	}
	for i := range maxIDHashes + 10 { // past the bound: the map is reset, answers stay right
		id := fmt.Sprintf("session-%d", i%(maxIDHashes+5))
		if got, want := c.hash(id), HashID(id); got != want {
			t.Fatalf("hash(%q) = %q, want %q", id, got, want)
		}
	}
	if len(c.m) > maxIDHashes {
		t.Errorf("cache holds %d ids, bound %d", len(c.m), maxIDHashes)
	}
}
