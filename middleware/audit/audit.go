// Package audit records one structured event per access decision, raises
// signed webhook alerts for the decisions an operator cares about, and
// counts decisions for Prometheus.
//
// Contract: the request path never blocks on audit. Events go through a
// bounded queue to one writer goroutine; when the queue is full the event
// is dropped and counted (edgeauth_audit_dropped_total), never waited for.
// Alerts go through a second bounded queue to one sender that retries with
// exponential backoff, a bounded number of times. Session and device ids
// are written only as hashes; tokens, cookies and codes are never part of
// an event.
//
// Trust boundary: events are built from our own per-request state. Strings
// that came from clients (route names do not; request ids may) are JSON
// escaped by the encoder and never interpreted.
package audit

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Event is one audit record. SessionID and DeviceID are given raw and
// written hashed (see HashID).
type Event struct {
	Time      time.Time  `json:"time"`
	Type      string     `json:"type"` // "request" for access decisions; e.g. "admin", "step_up" otherwise
	RequestID string     `json:"request_id,omitempty"`
	Route     string     `json:"route,omitempty"`
	Subject   string     `json:"sub,omitempty"`
	Issuer    string     `json:"iss,omitempty"`
	SessionID string     `json:"session,omitempty"` // written as HashID(raw)
	Method    string     `json:"method,omitempty"`  // session | bearer | dpop | none
	ClientIP  netip.Addr `json:"client_ip,omitzero"`
	Country   string     `json:"country,omitempty"`
	City      string     `json:"city,omitempty"`
	ASN       uint32     `json:"asn,omitempty"`
	DeviceID  string     `json:"device,omitempty"` // written as HashID(raw)
	Score     int        `json:"score"`
	Reasons   []string   `json:"reasons,omitempty"`
	Decision  string     `json:"decision"`
	Shadow    string     `json:"shadow_decision,omitempty"`
	// DenyReason is the client-safe reason code of a non-allow decision.
	DenyReason string `json:"reason,omitempty"`
	Status     int    `json:"status,omitempty"`
	// Detail is free text for non-request events (admin actions); never
	// put secrets here.
	Detail string `json:"detail,omitempty"`
}

// HashID returns the form in which session and device ids are logged:
// the first 64 bits of SHA-256, hex — the same form as session.HashID, so
// an audit event, a log line and the admin API's session list can be
// matched by security teams (cmd/edgeauth has a test holding the two
// together; audit must not import the session package). The ids are
// 256-bit random values, so the hash cannot be reversed.
func HashID(raw string) string {
	if raw == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(raw))
	return hex.EncodeToString(sum[:8])
}

// idHashes remembers HashID of recently seen ids: a signed-in user's
// requests carry the same session and device ids, and a SHA-256 plus a hex
// string per event was a fifth of the audit writer's time. Used by the
// writer goroutine only; cleared when full.
type idHashes struct{ m map[string]string }

const maxIDHashes = 4096

func (c *idHashes) hash(raw string) string {
	if raw == "" {
		return ""
	}
	if h, ok := c.m[raw]; ok {
		return h
	}
	if c.m == nil || len(c.m) >= maxIDHashes {
		c.m = make(map[string]string, maxIDHashes)
	}
	h := HashID(raw)
	c.m[raw] = h
	return h
}

// AlertOptions configures webhook alerts. The zero value disables alerts.
type AlertOptions struct {
	// URL receives a POST per alert. "" disables alerts.
	URL string
	// Secret keys the HMAC-SHA256 signature. Required with URL.
	Secret []byte
	// On lists what raises an alert: a decision ("deny", "step_up") or a
	// reason ("step_up_failed", "impossible_travel"), or an event type.
	On []string
	// QueueSize bounds pending alerts. 0 means 256.
	QueueSize int
	// MaxAttempts bounds deliveries per alert. 0 means 5.
	MaxAttempts int
	// InitialBackoff is the first retry delay, doubled each attempt. 0
	// means 500ms.
	InitialBackoff time.Duration
	// MaxBackoff caps the delay. 0 means 30s.
	MaxBackoff time.Duration
	// Client sends the requests. nil means a client with a 5s timeout.
	Client *http.Client
}

// Options configures a Recorder.
type Options struct {
	// Writer receives one JSON object per line. nil means os.Stdout.
	Writer io.Writer
	// QueueSize bounds pending events. 0 means 8192.
	QueueSize int
	// Registerer receives the metrics. nil: metrics are not registered
	// (they are still counted).
	Registerer prometheus.Registerer
	Alerts     AlertOptions
	// Logger reports write and delivery failures. nil discards.
	Logger *slog.Logger
	// Now is the clock. nil means time.Now.
	Now func() time.Time
}

// Recorder owns the audit and alert goroutines. Close it on shutdown.
type Recorder struct {
	out      io.Writer
	events   chan *entry
	wake     chan struct{} // nudges the writer when the queue is half full
	alerts   chan []byte
	alertOn  []string
	alertCfg AlertOptions
	logger   *slog.Logger
	now      func() time.Time
	// testNow is Options.Now as given (nil: none); request events use it
	// instead of the request's time.
	testNow func() time.Time

	decisions    *prometheus.CounterVec
	hashes       idHashes // the writer goroutine's only
	dropped      prometheus.Counter
	alertsSent   prometheus.Counter
	alertsFailed prometheus.Counter
	alertsDrop   prometheus.Counter
	droppedN     atomic.Uint64

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool
	mu     sync.RWMutex // held for reading while sending, for writing on Close
}

// entry is a pooled event with buffers reused across requests so the
// request path does not allocate.
type entry struct {
	ev    Event
	reqID []byte
}

var entries = sync.Pool{New: func() any { return new(entry) }}

// New validates o and starts the goroutines.
func New(o Options) (*Recorder, error) {
	r := &Recorder{out: o.Writer, logger: o.Logger, now: o.Now, testNow: o.Now, alertCfg: o.Alerts}
	if r.out == nil {
		r.out = os.Stdout
	}
	if r.logger == nil {
		r.logger = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	qs := o.QueueSize
	if qs == 0 {
		qs = 8192
	}
	if qs < 0 {
		return nil, errors.New("audit: negative queue size")
	}
	r.events = make(chan *entry, qs)
	r.wake = make(chan struct{}, 1)

	a := &r.alertCfg
	if a.URL != "" {
		u, err := url.Parse(a.URL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("audit: alert url %q is not an http(s) URL", a.URL)
		}
		if len(a.Secret) == 0 {
			return nil, errors.New("audit: alert secret required")
		}
		if a.QueueSize == 0 {
			a.QueueSize = 256
		}
		if a.MaxAttempts == 0 {
			a.MaxAttempts = 5
		}
		if a.InitialBackoff == 0 {
			a.InitialBackoff = 500 * time.Millisecond
		}
		if a.MaxBackoff == 0 {
			a.MaxBackoff = 30 * time.Second
		}
		if a.Client == nil {
			a.Client = &http.Client{Timeout: 5 * time.Second}
		}
		if a.QueueSize < 0 || a.MaxAttempts < 0 || a.InitialBackoff < 0 || a.MaxBackoff < 0 {
			return nil, errors.New("audit: negative alert option")
		}
		r.alerts = make(chan []byte, a.QueueSize)
		r.alertOn = slices.Clone(a.On)
	}

	r.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgeauth_decisions_total", Help: "Access decisions by route, decision and reason.",
	}, []string{"route", "decision", "reason"})
	r.dropped = prometheus.NewCounter(prometheus.CounterOpts{Name: "edgeauth_audit_dropped_total", Help: "Audit events dropped because the queue was full."})
	r.alertsSent = prometheus.NewCounter(prometheus.CounterOpts{Name: "edgeauth_alerts_sent_total", Help: "Alerts delivered."})
	r.alertsFailed = prometheus.NewCounter(prometheus.CounterOpts{Name: "edgeauth_alerts_failed_total", Help: "Alerts given up after all attempts."})
	r.alertsDrop = prometheus.NewCounter(prometheus.CounterOpts{Name: "edgeauth_alerts_dropped_total", Help: "Alerts dropped because the queue was full."})
	if o.Registerer != nil {
		for _, c := range []prometheus.Collector{r.decisions, r.dropped, r.alertsSent, r.alertsFailed, r.alertsDrop} {
			if err := o.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("audit: register metrics: %w", err)
			}
		}
	}

	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.wg.Add(1)
	go r.writeLoop()
	if r.alerts != nil {
		r.wg.Add(1)
		go r.alertLoop()
	}
	return r, nil
}

// Emit records a non-request event (admin actions, step-up failures). It
// never blocks; a zero Time is set to now.
func (r *Recorder) Emit(ev Event) {
	e := entries.Get().(*entry)
	reasons := e.ev.Reasons[:0]
	e.ev = ev
	e.ev.Reasons = append(reasons, ev.Reasons...)
	e.reqID = e.reqID[:0]
	if e.ev.Time.IsZero() {
		e.ev.Time = r.now()
	}
	r.count(&e.ev)
	r.enqueue(e)
}

func (r *Recorder) count(ev *Event) {
	if ev.Decision == "" {
		return
	}
	reason := ev.DenyReason
	if reason == "" && len(ev.Reasons) > 0 {
		reason = ev.Reasons[0]
	}
	r.decisions.WithLabelValues(ev.Route, ev.Decision, reason).Inc()
}

func (r *Recorder) enqueue(e *entry) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed.Load() {
		r.drop(e)
		return
	}
	select {
	case r.events <- e:
		// The writer sleeps between batches, so a send wakes nobody (a
		// goroutine switch per request on a busy core). It is woken early
		// only when the queue is half full.
		if len(r.events) > cap(r.events)/2 {
			select {
			case r.wake <- struct{}{}:
			default:
			}
		}
	default:
		r.drop(e)
	}
}

func (r *Recorder) drop(e *entry) {
	r.dropped.Inc()
	r.droppedN.Add(1)
	entries.Put(e)
}

// Dropped returns how many events were dropped.
func (r *Recorder) Dropped() uint64 { return r.droppedN.Load() }

// Close stops accepting events, writes those queued, waits for pending
// alert deliveries until ctx is done, and stops the goroutines.
func (r *Recorder) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closed.Swap(true) {
		r.mu.Unlock()
		return nil
	}
	close(r.events)
	r.mu.Unlock()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
		r.cancel()
		return nil
	case <-ctx.Done():
		r.cancel() // abort backoff waits and in-flight deliveries
		<-done
		return fmt.Errorf("audit: close: %w", ctx.Err())
	}
}

func (r *Recorder) writeLoop() {
	defer r.wg.Done()
	if r.alerts != nil {
		defer close(r.alerts)
	}
	// Events are written in batches, at most flushEvery apart or when a
	// batch fills: one write(2) for many requests. Writing each event at
	// once cost a system call and a goroutine wake-up per request, a third
	// of the proxy's writes on a single core. Alerts do not wait for this.
	var batch bytes.Buffer
	flush := func() {
		if batch.Len() == 0 {
			return
		}
		if _, err := r.out.Write(batch.Bytes()); err != nil {
			r.logger.LogAttrs(r.ctx, slog.LevelError, "audit: write events", slog.String("error", err.Error()))
		}
		batch.Reset()
	}
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-r.wake:
		}
		for drained := false; !drained; {
			select {
			case e, ok := <-r.events:
				if !ok {
					flush()
					return
				}
				r.encode(e, &batch)
				if batch.Len() >= maxBatch {
					flush()
				}
			default:
				drained = true
			}
		}
		flush()
	}
}

// flushEvery bounds how long an audit event waits in memory before it is
// written; Close writes what is left.
const flushEvery = 100 * time.Millisecond

// maxBatch bounds one audit write.
const maxBatch = 64 << 10

// encode appends e as one JSON line to batch, queues an alert when it
// matches, and returns e to the pool.
func (r *Recorder) encode(e *entry, batch *bytes.Buffer) {
	ev := &e.ev
	if len(e.reqID) > 0 {
		ev.RequestID = string(e.reqID)
	}
	ev.SessionID = r.hashes.hash(ev.SessionID)
	ev.DeviceID = r.hashes.hash(ev.DeviceID)
	start := batch.Len()
	batch.Write(ev.AppendJSON(batch.AvailableBuffer()))
	if r.alerts != nil && r.alerting(ev) {
		select {
		case r.alerts <- bytes.Clone(batch.Bytes()[start:]):
		default:
			r.alertsDrop.Inc()
		}
	}
	batch.WriteByte('\n')
	// Clear references before pooling so a pooled entry does not keep a
	// principal's strings alive.
	reasons := ev.Reasons[:0]
	clear(ev.Reasons)
	*ev = Event{Reasons: reasons}
	entries.Put(e)
}

func (r *Recorder) alerting(ev *Event) bool {
	for _, on := range r.alertOn {
		if on == ev.Decision || on == ev.Type || slices.Contains(ev.Reasons, on) || on == ev.DenyReason {
			return true
		}
	}
	return false
}

func (r *Recorder) alertLoop() {
	defer r.wg.Done()
	for body := range r.alerts {
		if r.deliver(body) {
			r.alertsSent.Inc()
		} else {
			r.alertsFailed.Inc()
		}
	}
}

// Sign returns the X-Edgeauth-Signature value for body sent at timestamp
// ts (Unix seconds): "sha256=" + hex(HMAC-SHA256(secret, ts + "." + body)).
// Binding the timestamp lets receivers reject replays older than a window.
func Sign(secret []byte, ts string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// deliver posts one alert, retrying transient failures (network errors,
// 408, 429, 5xx) with exponential backoff. Other 4xx are permanent.
func (r *Recorder) deliver(body []byte) bool {
	a := &r.alertCfg
	backoff := a.InitialBackoff
	for attempt := 1; attempt <= a.MaxAttempts; attempt++ {
		retry, err := r.post(body)
		if err == nil {
			return true
		}
		r.logger.LogAttrs(r.ctx, slog.LevelWarn, "audit: alert delivery failed",
			slog.Int("attempt", attempt), slog.String("error", err.Error()))
		if !retry || attempt == a.MaxAttempts {
			return false
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-r.ctx.Done():
			t.Stop()
			return false
		}
		backoff = min(backoff*2, a.MaxBackoff)
	}
	return false
}

func (r *Recorder) post(body []byte) (retry bool, err error) {
	a := &r.alertCfg
	req, err := http.NewRequestWithContext(r.ctx, http.MethodPost, a.URL, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("audit: alert request: %w", err)
	}
	ts := strconv.FormatInt(r.now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Edgeauth-Timestamp", ts)
	req.Header.Set("X-Edgeauth-Signature", Sign(a.Secret, ts, body))
	resp, err := a.Client.Do(req)
	if err != nil {
		return true, fmt.Errorf("audit: alert post: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return false, nil
	}
	transient := resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500
	return transient, fmt.Errorf("audit: alert post: status %d", resp.StatusCode)
}
