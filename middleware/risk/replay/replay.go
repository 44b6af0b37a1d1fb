// Package replay runs recorded access events through the very same risk
// Service (GeoIP, fingerprint, history, rules, thresholds) as the proxy, so
// operators can tune rules on their own logs before enforcing them.
//
// Input: JSON Lines, one event per line: time (RFC 3339), sub, ip, and
// optionally user_agent, accept_language, sec_ch_ua, sec_ch_ua_platform,
// sec_ch_ua_mobile, ja4, device_id, route, event (login | step_up |
// request; default request) and label (carried through untouched). Output:
// each input line with score, reasons, decision and location appended.
// Events are processed in input order with their own timestamps; a login
// or step_up is scored, then, when the proxy's login hook would trust it
// (see Options.LoginStepUpAt), binds the device and records the location
// through Service.BindDevice exactly as that hook does; an allowed request updates the last location through
// Service.Allowed exactly as the proxy does after policy allowed it.
//
// Trust boundary: the input is the operator's own log, but it is parsed
// strictly and malformed lines are reported (with line number) and skipped.
// Nothing here touches the network.
package replay

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/edgeauth/edgeauth/middleware/reqstate"
	"github.com/edgeauth/edgeauth/middleware/risk"
	"github.com/edgeauth/edgeauth/middleware/risk/device"
)

// Options configure a run.
type Options struct {
	// Service scores events. Required. Build it with L1MaxBytes < 0 for a
	// deterministic run (the L1's asynchronous admission would otherwise
	// make a replay depend on timing); the store is then the truth.
	Service *risk.Service
	// Routes maps route names to thresholds; events with an unknown or
	// empty route use Default.
	Routes map[string]risk.Thresholds
	// Default thresholds (zero value: step-up at 40, never deny on score).
	Default risk.Thresholds
	// Decide, when set, maps an event's route and result to the decision
	// instead of Routes and Default: cmd/edgeauth passes the proxy's own
	// policy rules, so a replay decides exactly as the proxy would.
	Decide func(route string, r *risk.Result) reqstate.Decision
	// Issuer is the issuer events are attributed to. "" means "replay".
	Issuer string
	// LoginStepUpAt is the score at which a login event is not trusted,
	// as in the proxy's login hook: a password-only login that scores this
	// much (new country, impossible travel, ...) does not bind its device
	// or record its location; only a later step_up event does. A step_up
	// event (the step-up factor was used) binds at any score. Neither
	// binds when a hard-deny reason fired. Zero means 40.
	LoginStepUpAt int
	// ProgressEvery prints progress to stderr every N lines. Zero means
	// 100,000; negative disables.
	ProgressEvery int
	// MaxLineBytes bounds one input line. Zero means 64 KiB.
	MaxLineBytes int
}

// Stats summarise a run.
type Stats struct {
	Lines     int
	Events    int
	Malformed int
	// Decisions counts output decisions by reqstate.Decision.
	Decisions [5]int
	Elapsed   time.Duration
}

type event struct {
	Time            string `json:"time"`
	Sub             string `json:"sub"`
	IP              string `json:"ip"`
	UserAgent       string `json:"user_agent"`
	AcceptLanguage  string `json:"accept_language"`
	SecCHUA         string `json:"sec_ch_ua"`
	SecCHUAPlatform string `json:"sec_ch_ua_platform"`
	SecCHUAMobile   string `json:"sec_ch_ua_mobile"`
	JA4             string `json:"ja4"`
	DeviceID        string `json:"device_id"`
	Route           string `json:"route"`
	Event           string `json:"event"`
}

// MemoryStore is a HistoryStore for replay: a map, bounded by the number of
// subjects times the per-user history limits.
type MemoryStore struct {
	mu sync.Mutex
	m  map[string][]byte
}

// ErrNotFound is MemoryStore's not-found sentinel.
var ErrNotFound = errors.New("replay: not found")

// NewMemoryStore returns an empty store.
func NewMemoryStore() *MemoryStore { return &MemoryStore{m: map[string][]byte{}} }

// GetBlob implements risk.HistoryStore.
func (s *MemoryStore) GetBlob(_ context.Context, k string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.m[k]; ok {
		return b, nil
	}
	return nil, ErrNotFound
}

// PutBlob implements risk.HistoryStore (TTL is enforced by the history's own
// timestamps during a replay, not by wall-clock expiry).
func (s *MemoryStore) PutBlob(_ context.Context, k string, b []byte, _ time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[k] = b
	return nil
}

// Run processes in to out. It returns an error only for I/O failures or a
// cancelled ctx; malformed lines are reported on stderr and skipped.
func Run(ctx context.Context, cfg Options, in io.Reader, out io.Writer, stderr io.Writer) (Stats, error) {
	var st Stats
	if cfg.Service == nil {
		return st, errors.New("replay: no risk service")
	}
	issuer := cfg.Issuer
	if issuer == "" {
		issuer = "replay"
	}
	every := cfg.ProgressEvery
	if every == 0 {
		every = 100_000
	}
	loginAt := cfg.LoginStepUpAt
	if loginAt <= 0 {
		loginAt = 40
	}
	maxLine := cfg.MaxLineBytes
	if maxLine <= 0 {
		maxLine = 64 << 10
	}
	start := time.Now()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	w := bufio.NewWriterSize(out, 256<<10)
	svc := cfg.Service
	var (
		ev  event
		a   risk.Assessment
		buf []byte
	)
	for sc.Scan() {
		st.Lines++
		if st.Lines%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return st, fmt.Errorf("replay: %w", err)
			}
		}
		if every > 0 && st.Lines%every == 0 {
			fmt.Fprintf(stderr, "replay: %d lines, %d events, %d malformed, %.0f lines/s\n",
				st.Lines, st.Events, st.Malformed, float64(st.Lines)/time.Since(start).Seconds())
		}
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		ev = event{}
		t, ip, kind, err := parse(line, &ev)
		if err != nil {
			st.Malformed++
			fmt.Fprintf(stderr, "replay: line %d: %v\n", st.Lines, err)
			continue
		}
		st.Events++
		req := risk.Request{
			Issuer:  issuer,
			Subject: ev.Sub,
			IP:      ip,
			Traits: device.Traits{
				UserAgent: []byte(ev.UserAgent), AcceptLanguage: []byte(ev.AcceptLanguage),
				SecCHUA: []byte(ev.SecCHUA), SecCHUAPlatform: []byte(ev.SecCHUAPlatform),
				SecCHUAMobile: []byte(ev.SecCHUAMobile), JA4: ev.JA4,
			},
			DeviceID: device.IDFromString(ev.DeviceID),
		}
		svc.Assess(ctx, &req, t, &a)
		var dec reqstate.Decision
		if cfg.Decide != nil {
			dec = cfg.Decide(ev.Route, &a.Result)
		} else {
			th, ok := cfg.Routes[ev.Route]
			if !ok {
				th = cfg.Default
			}
			dec = th.Decide(&a.Result)
		}
		st.Decisions[dec]++
		switch kind {
		case kindLogin, kindStepUp:
			// Exactly the proxy's login hook: an untrusted login leaves
			// the history alone, so the attacker who phished a password
			// does not become "home" by signing in.
			if a.Result.HardDeny || (kind == kindLogin && a.Result.Score >= loginAt) {
				break
			}
			if err := svc.BindDevice(ctx, issuer, ev.Sub, a.Location, req.DeviceID, a.Fingerprint, t); err != nil {
				return st, fmt.Errorf("replay: line %d: %w", st.Lines, err)
			}
		case kindRequest:
			if dec == reqstate.DecisionAllow {
				if err := svc.Allowed(ctx, issuer, ev.Sub, &a, req.DeviceID, t); err != nil {
					return st, fmt.Errorf("replay: line %d: %w", st.Lines, err)
				}
			}
		}
		buf = appendOutput(buf[:0], line, &a, dec)
		if _, err := w.Write(buf); err != nil {
			return st, fmt.Errorf("replay: write: %w", err)
		}
	}
	if err := sc.Err(); err != nil {
		return st, fmt.Errorf("replay: read line %d: %w", st.Lines+1, err)
	}
	if err := w.Flush(); err != nil {
		return st, fmt.Errorf("replay: write: %w", err)
	}
	st.Elapsed = time.Since(start)
	if every > 0 {
		fmt.Fprintf(stderr, "replay: done: %d lines, %d events, %d malformed in %s\n", st.Lines, st.Events, st.Malformed, st.Elapsed.Round(time.Millisecond))
	}
	return st, nil
}

type kind uint8

const (
	kindRequest kind = iota
	kindLogin        // password login: binds when not risky
	kindStepUp       // login with the step-up factor: binds unless hard-denied
)

func parse(line []byte, ev *event) (time.Time, netip.Addr, kind, error) {
	if line[0] != '{' || line[len(line)-1] != '}' {
		return time.Time{}, netip.Addr{}, 0, errors.New("not a JSON object")
	}
	if err := json.Unmarshal(line, ev); err != nil {
		return time.Time{}, netip.Addr{}, 0, fmt.Errorf("invalid JSON: %w", err)
	}
	if ev.Sub == "" {
		return time.Time{}, netip.Addr{}, 0, errors.New("missing sub")
	}
	t, err := time.Parse(time.RFC3339, ev.Time)
	if err != nil {
		return time.Time{}, netip.Addr{}, 0, fmt.Errorf("time: %w", err)
	}
	ip, err := netip.ParseAddr(ev.IP)
	if err != nil {
		return time.Time{}, netip.Addr{}, 0, fmt.Errorf("ip: %w", err)
	}
	var k kind
	switch ev.Event {
	case "", "request":
		k = kindRequest
	case "login":
		k = kindLogin
	case "step_up":
		k = kindStepUp
	default:
		return time.Time{}, netip.Addr{}, 0, fmt.Errorf("unknown event %q", ev.Event)
	}
	return t, ip, k, nil
}

// appendOutput writes the input object with the result fields added before
// its closing brace, so every input field (label included) is carried
// through byte for byte.
func appendOutput(b, line []byte, a *risk.Assessment, dec reqstate.Decision) []byte {
	body := bytes.TrimSpace(line[:len(line)-1])
	b = append(b, body...)
	if len(body) > 1 {
		b = append(b, ',')
	}
	b = append(b, `"score":`...)
	b = strconv.AppendInt(b, int64(a.Result.Score), 10)
	b = append(b, `,"reasons":[`...)
	for i, r := range a.Result.List() {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, r.String()...)
		b = append(b, '"')
	}
	b = append(b, `],"decision":"`...)
	b = append(b, dec.String()...)
	b = append(b, `","location":`...)
	l := &a.Location
	if l.Country == "" && !l.HasCoordinates {
		b = append(b, "null"...)
	} else {
		b = append(b, `{"country":`...)
		b = appendJSONString(b, l.Country)
		if l.City != "" {
			b = append(b, `,"city":`...)
			b = appendJSONString(b, l.City)
		}
		if l.HasCoordinates {
			b = append(b, `,"lat":`...)
			b = strconv.AppendFloat(b, l.Latitude, 'f', -1, 64)
			b = append(b, `,"lon":`...)
			b = strconv.AppendFloat(b, l.Longitude, 'f', -1, 64)
		}
		if l.ASN != 0 {
			b = append(b, `,"asn":`...)
			b = strconv.AppendUint(b, uint64(l.ASN), 10)
		}
		b = append(b, '}')
	}
	return append(b, '}', '\n')
}

// appendJSONString quotes s as a JSON string (RFC 8259 §7); the GeoIP
// database is operator data, but output must stay valid JSON whatever it
// holds.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
