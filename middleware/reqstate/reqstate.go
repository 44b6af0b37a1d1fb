// Package reqstate holds the per-request authentication state that the
// middleware steps share: client IP, principal, how it was authenticated,
// location, device, risk and the decision.
//
// It is a leaf: it imports no project package, so every step can depend on
// it without depending on each other. A State is taken from a sync.Pool the
// first time a request asks for it, attached to the fasthttp.RequestCtx under
// an unexported key, and returned to the pool by fasthttp's io.Closer hook
// when the request context is reset. Never keep a *State after the handler
// returns.
package reqstate

import (
	"net/netip"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// Method says how the principal was authenticated.
type Method uint8

// The order of these constants never changes: they appear in metrics and logs.
const (
	MethodNone    Method = iota // no credential presented or none valid
	MethodSession               // browser session cookie
	MethodBearer                // Authorization: Bearer JWT or opaque token
	MethodDPoP                  // sender-constrained token with a DPoP proof
)

func (m Method) String() string {
	switch m {
	case MethodSession:
		return "session"
	case MethodBearer:
		return "bearer"
	case MethodDPoP:
		return "dpop"
	default:
		return "none"
	}
}

// Decision is what the pipeline decided for the request.
type Decision uint8

// The order of these constants never changes.
const (
	DecisionNone   Decision = iota // not decided yet
	DecisionAllow                  // forward upstream
	DecisionLogin                  // no valid credential: redirect or 401
	DecisionStepUp                 // stronger or fresher authentication needed
	DecisionDeny                   // 403
)

func (d Decision) String() string {
	switch d {
	case DecisionAllow:
		return "allow"
	case DecisionLogin:
		return "login"
	case DecisionStepUp:
		return "step_up"
	case DecisionDeny:
		return "deny"
	default:
		return "none"
	}
}

// Principal is the authenticated identity. Slices and maps are owned by the
// session or token cache that produced them and must be treated as read-only.
type Principal struct {
	Issuer            string
	Subject           string
	Email             string
	EmailVerified     bool
	PreferredUsername string
	Name              string
	Groups            []string
	Scopes            []string
	ACR               string
	AMR               []string
	AuthTime          time.Time
	// Claims holds further claims a route may match on (string or []string
	// values only), read-only.
	Claims map[string][]string
}

// Location is what GeoIP knew about the client IP. The zero value means
// unknown (private address, no database, or not in the database).
type Location struct {
	Country        string // ISO 3166-1 alpha-2
	Subdivision    string
	City           string
	Latitude       float64
	Longitude      float64
	AccuracyKM     uint16
	HasCoordinates bool
	ASN            uint32
	ASOrg          string
	Anonymous      bool
	AnonymousVPN   bool
	Hosting        bool
	TorExit        bool
	PublicProxy    bool
}

// MaxReasons bounds the reasons kept per request so the hot path never grows
// a slice.
const MaxReasons = 8

// State is the per-request auth state.
type State struct {
	// RequestID is the id sent upstream as X-Request-Id and shown on error
	// pages.
	RequestID string
	// Route is the name of the matched route.
	Route string
	// ClientIP is the real client address (see middleware/clientip).
	ClientIP netip.Addr

	Method    Method
	Principal Principal
	// SessionID is the raw session id (never log it; use a hash).
	SessionID string
	// AcceptedIP is the client IP from which the session last passed a
	// risk check at login or step-up; the zero value means none did.
	// Signals that are properties of that address (anonymous network,
	// hosting) were accepted then and are not asked about again.
	AcceptedIP netip.Addr
	// SessionFingerprint is the device fingerprint the session was created
	// or stepped up with, 0 if unknown.
	SessionFingerprint uint64

	Location       Location
	DeviceID       string // from the signed device cookie, "" if none
	Fingerprint    uint64 // device fingerprint hash, 0 if unknown
	TLSFingerprint string // JA4 of the TLS ClientHello, "" if TLS did not end here

	RiskScore   int
	reasons     [MaxReasons]string
	reasonCount uint8

	Decision Decision
	// DenyReason is a short code that is safe to show to the client.
	DenyReason string
}

// AddReason records why risk or policy fired. Reasons beyond MaxReasons are
// dropped.
func (s *State) AddReason(r string) {
	if int(s.reasonCount) < MaxReasons {
		s.reasons[s.reasonCount] = r
		s.reasonCount++
	}
}

// Reasons returns the recorded reasons; the slice aliases the state.
func (s *State) Reasons() []string { return s.reasons[:s.reasonCount] }

// Authenticated reports whether a credential was verified.
func (s *State) Authenticated() bool { return s.Method != MethodNone }

// Close returns the state to the pool. fasthttp calls it when the request
// context's user values are reset.
func (s *State) Close() error {
	*s = State{}
	pool.Put(s)
	return nil
}

type key struct{}

var pool = sync.Pool{New: func() any { return new(State) }}

// Now is the time of ctx's request: one clock read per request, shared by
// every step (fasthttp's RequestCtx.Time, which the proxy reads as the
// request's start), or the real clock when ctx has no time (outside a
// server, as in unit tests). Steps with a test clock use that instead.
func Now(ctx *fasthttp.RequestCtx) time.Time {
	if t := ctx.Time(); !t.IsZero() {
		return t
	}
	return time.Now()
}

// NowOr is testNow() when a step was given a test clock, else Now(ctx).
func NowOr(ctx *fasthttp.RequestCtx, testNow func() time.Time) time.Time {
	if testNow != nil {
		return testNow()
	}
	return Now(ctx)
}

// Get returns the request's state, attaching a fresh one on first use.
func Get(ctx *fasthttp.RequestCtx) *State {
	if v, ok := ctx.UserValue(key{}).(*State); ok {
		return v
	}
	s := pool.Get().(*State)
	ctx.SetUserValue(key{}, s)
	return s
}

// Peek returns the request's state or nil if none was attached.
func Peek(ctx *fasthttp.RequestCtx) *State {
	s, _ := ctx.UserValue(key{}).(*State)
	return s
}
