// Package policy turns what earlier steps established about a request
// (authenticated or not, who, how strongly and how recently, risk score and
// reasons) into one decision for the route: allow, login, step-up or deny.
//
// Contract: Decide is pure and deterministic (the clock comes in Input).
// Routes are protected unless a path is listed as public or the whole route
// is marked AuthNone. On a protected route:
//
//   - no verified credential → login;
//   - allow rules (emails, email domains, groups, claims) are alternatives:
//     matching any one grants access; when none is configured any
//     authenticated user of the trusted issuers is allowed (say so
//     explicitly in the config with an empty allow block);
//   - a route may always require one of a set of acr values and a maximum
//     age of the last authentication → step-up when not met;
//   - risk (score and reasons from middleware/risk) leads to step-up by
//     default. Only reasons the operator names (deny lists, Tor where
//     forbidden, failed step-ups) or a score at or above deny_at deny: a user
//     who can prove who they are must never be locked out by a heuristic.
//   - in shadow mode the risk outcome is computed and reported in
//     ShadowKind but only login, allow rules and acr/age requirements are
//     enforced.
//
// Trust boundary: Input comes from our own verified state (reqstate), never
// from request headers. Path must be the normalized path the proxy routes
// and forwards on; deciding on one path and forwarding another would let
// "/public/../admin" through.
package policy

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edgeauth/edgeauth/middleware/reqstate"
)

// Reason codes. They are shown to clients, logged, counted in metrics and
// must never change meaning. Risk reason names (country_denied, tor, ...)
// are produced by middleware/risk and matched here by string.
const (
	ReasonPublic        = "public"
	ReasonLoginRequired = "login_required"
	ReasonNotAllowed    = "not_allowed"
	ReasonACRRequired   = "acr_required"
	ReasonAuthTooOld    = "auth_too_old"
	ReasonRiskStepUp    = "risk_step_up"
	ReasonRiskTooHigh   = "risk_too_high"

	// Risk reasons that always deny: they only fire when the operator
	// configured the list behind them, or after step-ups already failed.
	ReasonCountryDenied = "country_denied"
	ReasonASNDenied     = "asn_denied"
	ReasonStepUpFailed  = "step_up_failed"
)

// DefaultHardDenyReasons are denied on every route whose risk mode is
// enforce, in addition to RouteOptions.HardDenyReasons.
var DefaultHardDenyReasons = []string{ReasonCountryDenied, ReasonASNDenied, ReasonStepUpFailed}

// RiskMode says what a route does with the risk outcome.
type RiskMode uint8

// The order of these constants never changes.
const (
	RiskEnforce RiskMode = iota // risk step-up and deny are enforced
	RiskShadow                  // risk is computed and reported, not enforced
	RiskOff                     // risk is ignored
)

func (m RiskMode) String() string {
	switch m {
	case RiskShadow:
		return "shadow"
	case RiskOff:
		return "off"
	default:
		return "enforce"
	}
}

// ParseRiskMode maps the config value; "" is enforce.
func ParseRiskMode(s string) (RiskMode, error) {
	switch s {
	case "", "enforce":
		return RiskEnforce, nil
	case "shadow":
		return RiskShadow, nil
	case "off":
		return RiskOff, nil
	}
	return RiskEnforce, fmt.Errorf("policy: unknown risk mode %q (want enforce, shadow or off)", s)
}

// RouteOptions is one route's policy as configured. The zero value is a
// protected route that allows any authenticated user and enforces risk with
// no thresholds set (so only hard-deny reasons act).
type RouteOptions struct {
	// Name is the route name, used in errors.
	Name string
	// AuthNone makes the whole route public (config auth: none). Zero value:
	// authentication required.
	AuthNone bool
	// Public lists path prefixes that skip authentication ("/static/").
	// Empty: none.
	Public []string

	// AllowEmails, AllowEmailDomains, AllowGroups and AllowClaims are
	// alternatives: a principal matching any one is allowed. All empty:
	// any authenticated principal is allowed. Emails and domains compare
	// case-insensitively and only match a verified email.
	AllowEmails       []string
	AllowEmailDomains []string
	AllowGroups       []string
	// AllowClaims maps a claim name to accepted values; any value of any
	// listed claim matches.
	AllowClaims map[string][]string
	// AllowUnverifiedEmail lets email rules match principals whose
	// email_verified is false or absent. Zero value: verified only, because
	// many providers let users type any address.
	AllowUnverifiedEmail bool

	// RequireACR, when set, requires the principal's acr to be one of
	// these, always (step-up otherwise). Empty: any acr.
	RequireACR []string
	// MaxAuthAge, when positive, requires the last authentication to be at
	// most this old, always. Zero: no limit.
	MaxAuthAge time.Duration

	// StepUpAt and DenyAt are risk score thresholds (score >= threshold).
	// Zero disables each.
	StepUpAt, DenyAt int
	// RiskMode is enforce (zero value), shadow or off.
	RiskMode RiskMode
	// StepUpACR are the acr values requested for a risk step-up. Empty: no
	// acr_values, only a fresh login.
	StepUpACR []string
	// StepUpMaxAge is the max_age sent with a risk step-up. Zero demands a
	// fresh authentication (RFC 9470 §3, OIDC max_age=0).
	StepUpMaxAge time.Duration
	// HardDenyReasons are risk reasons that deny instead of stepping up, in
	// addition to DefaultHardDenyReasons (e.g. "tor" where Tor is
	// forbidden). Empty: the defaults only.
	HardDenyReasons []string
}

// Input is what Decide needs to know about a request.
type Input struct {
	// Path is the normalized request path (fasthttp ctx.Path()).
	Path          []byte
	Authenticated bool
	// Principal is read-only and may be nil when not authenticated.
	Principal *reqstate.Principal
	Score     int
	Reasons   []string
	Now       time.Time
}

// Decision is the outcome for one request.
type Decision struct {
	Kind reqstate.Decision
	// Reason is a client-safe code (see the Reason constants or a risk
	// reason for hard denies).
	Reason string
	// ShadowKind and ShadowReason say what the risk outcome would have
	// enforced; set only on shadow-mode routes (DecisionNone otherwise).
	ShadowKind   reqstate.Decision
	ShadowReason string
	// ACR and MaxAge are the requirements of a step-up; HasMaxAge says
	// whether MaxAge is sent.
	ACR       []string
	MaxAge    time.Duration
	HasMaxAge bool

	risk bool // the step-up comes from risk, not the route's acr/age rule
}

// authTimeSkew tolerates clock differences between us and the provider.
const authTimeSkew = time.Minute

// Rule is a compiled route policy. It is immutable and safe for concurrent
// use.
type Rule struct {
	name        string
	authNone    bool
	public      [][]byte
	emails      []string // lower-case
	domains     []string // lower-case, no leading "@"
	groups      []string
	claims      map[string][]string
	hasAllow    bool
	unverified  bool
	requireACR  []string
	maxAuthAge  time.Duration
	stepUpAt    int
	denyAt      int
	mode        RiskMode
	stepUpACR   []string
	stepUpAge   time.Duration
	hardDeny    []string
	acrChal     []byte // WWW-Authenticate for acr/age step-up
	riskChal    []byte // WWW-Authenticate for risk step-up
	acrMaxAge   bool
	denyMessage string
}

// NewRule validates o and compiles it.
func NewRule(o RouteOptions) (*Rule, error) {
	var errs []error
	fail := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("policy: route %q: "+format, append([]any{o.Name}, a...)...))
	}
	r := &Rule{
		name:       o.Name,
		authNone:   o.AuthNone,
		groups:     slices.Clone(o.AllowGroups),
		unverified: o.AllowUnverifiedEmail,
		requireACR: slices.Clone(o.RequireACR),
		maxAuthAge: o.MaxAuthAge,
		stepUpAt:   o.StepUpAt,
		denyAt:     o.DenyAt,
		mode:       o.RiskMode,
		stepUpACR:  slices.Clone(o.StepUpACR),
		stepUpAge:  o.StepUpMaxAge,
	}
	for _, p := range o.Public {
		if !strings.HasPrefix(p, "/") {
			fail("public prefix %q must start with /", p)
			continue
		}
		r.public = append(r.public, []byte(p))
	}
	for _, e := range o.AllowEmails {
		if !strings.Contains(e, "@") {
			fail("allow email %q has no @", e)
		}
		r.emails = append(r.emails, strings.ToLower(e))
	}
	for _, d := range o.AllowEmailDomains {
		d = strings.ToLower(strings.TrimPrefix(d, "@"))
		if d == "" || strings.ContainsAny(d, "@ ") {
			fail("allow email domain %q is invalid", d)
		}
		r.domains = append(r.domains, d)
	}
	for _, g := range o.AllowGroups {
		if g == "" {
			fail("empty allow group")
		}
	}
	if len(o.AllowClaims) > 0 {
		r.claims = make(map[string][]string, len(o.AllowClaims))
		for k, v := range o.AllowClaims {
			if k == "" || len(v) == 0 {
				fail("allow claim %q needs a name and at least one value", k)
			}
			r.claims[k] = slices.Clone(v)
		}
	}
	r.hasAllow = len(r.emails)+len(r.domains)+len(r.groups)+len(r.claims) > 0
	if o.MaxAuthAge < 0 || o.StepUpMaxAge < 0 {
		fail("negative max age")
	}
	if o.StepUpAt < 0 || o.DenyAt < 0 {
		fail("negative risk threshold")
	}
	if o.StepUpAt > 0 && o.DenyAt > 0 && o.DenyAt < o.StepUpAt {
		fail("deny_at %d below step_up_at %d", o.DenyAt, o.StepUpAt)
	}
	if o.RiskMode > RiskOff {
		fail("invalid risk mode %d", o.RiskMode)
	}
	for _, a := range append(slices.Clone(o.RequireACR), o.StepUpACR...) {
		// acr values travel in a quoted auth-param (RFC 9470 §3).
		if a == "" || strings.ContainsAny(a, "\" \\\r\n") {
			fail("acr value %q is invalid", a)
		}
	}
	r.hardDeny = append(slices.Clone(DefaultHardDenyReasons), o.HardDenyReasons...)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	r.acrMaxAge = r.maxAuthAge > 0
	r.acrChal = challenge(r.requireACR, r.maxAuthAge, r.acrMaxAge)
	r.riskChal = challenge(r.stepUpACR, r.stepUpAge, true)
	return r, nil
}

// challenge builds the RFC 9470 §3 WWW-Authenticate value once per rule so
// the request path never formats it.
func challenge(acr []string, maxAge time.Duration, withAge bool) []byte {
	b := []byte(`Bearer error="insufficient_user_authentication", error_description="A different authentication level is required"`)
	if len(acr) > 0 {
		b = append(b, `, acr_values="`...)
		b = append(b, strings.Join(acr, " ")...)
		b = append(b, '"')
	}
	if withAge {
		b = append(b, ", max_age="...)
		b = strconv.AppendInt(b, int64(maxAge/time.Second), 10)
	}
	return b
}

// Name returns the route name.
func (r *Rule) Name() string { return r.name }

// Decide returns the decision for in. It does not allocate.
func (r *Rule) Decide(in Input) Decision {
	if r.authNone || r.isPublic(in.Path) {
		return Decision{Kind: reqstate.DecisionAllow, Reason: ReasonPublic}
	}
	if !in.Authenticated || in.Principal == nil {
		return Decision{Kind: reqstate.DecisionLogin, Reason: ReasonLoginRequired}
	}
	p := in.Principal
	if r.hasAllow && !r.allowed(p) {
		return Decision{Kind: reqstate.DecisionDeny, Reason: ReasonNotAllowed}
	}

	risk := r.riskDecision(in)
	if r.mode == RiskEnforce && risk.Kind == reqstate.DecisionDeny {
		// Stepping up cannot fix a denied country; deny before asking.
		return risk
	}
	if d, ok := r.authStrength(p, in.Now); !ok {
		if r.mode == RiskShadow {
			d.ShadowKind, d.ShadowReason = risk.Kind, risk.Reason
		}
		return d
	}
	switch r.mode {
	case RiskEnforce:
		return risk
	case RiskShadow:
		return Decision{Kind: reqstate.DecisionAllow, ShadowKind: risk.Kind, ShadowReason: risk.Reason}
	default:
		return Decision{Kind: reqstate.DecisionAllow}
	}
}

func (r *Rule) isPublic(path []byte) bool {
	for _, p := range r.public {
		if bytes.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// authStrength checks the route's permanent acr and auth-age requirements.
func (r *Rule) authStrength(p *reqstate.Principal, now time.Time) (Decision, bool) {
	d := Decision{Kind: reqstate.DecisionStepUp, ACR: r.requireACR, MaxAge: r.maxAuthAge, HasMaxAge: r.acrMaxAge}
	if len(r.requireACR) > 0 && !slices.Contains(r.requireACR, p.ACR) {
		d.Reason = ReasonACRRequired
		return d, false
	}
	if r.maxAuthAge > 0 {
		// A missing auth_time cannot prove freshness; one in the future
		// beyond clock skew is not believed either.
		if p.AuthTime.IsZero() || now.Sub(p.AuthTime) > r.maxAuthAge || p.AuthTime.Sub(now) > authTimeSkew {
			d.Reason = ReasonAuthTooOld
			return d, false
		}
	}
	return Decision{}, true
}

// RiskDecision is what the route's risk settings alone decide for a score
// and its reasons: hard-deny reasons, deny_at, step_up_at, under the
// route's risk mode (off: always allow). `edgeauth risk replay` decides
// with it, so a replay and the proxy cannot disagree on a threshold.
func (r *Rule) RiskDecision(score int, reasons []string) reqstate.Decision {
	return r.riskDecision(Input{Score: score, Reasons: reasons}).Kind
}

// riskDecision maps score and reasons to what risk alone would decide.
func (r *Rule) riskDecision(in Input) Decision {
	if r.mode == RiskOff {
		return Decision{Kind: reqstate.DecisionAllow}
	}
	for _, reason := range in.Reasons {
		if slices.Contains(r.hardDeny, reason) {
			return Decision{Kind: reqstate.DecisionDeny, Reason: reason}
		}
	}
	if r.denyAt > 0 && in.Score >= r.denyAt {
		return Decision{Kind: reqstate.DecisionDeny, Reason: ReasonRiskTooHigh}
	}
	if r.stepUpAt > 0 && in.Score >= r.stepUpAt {
		return Decision{Kind: reqstate.DecisionStepUp, Reason: ReasonRiskStepUp, ACR: r.stepUpACR, MaxAge: r.stepUpAge, HasMaxAge: true, risk: true}
	}
	return Decision{Kind: reqstate.DecisionAllow}
}

func (r *Rule) allowed(p *reqstate.Principal) bool {
	for _, g := range p.Groups {
		if slices.Contains(r.groups, g) {
			return true
		}
	}
	if (len(r.emails) > 0 || len(r.domains) > 0) && p.Email != "" && (p.EmailVerified || r.unverified) {
		for _, e := range r.emails {
			if strings.EqualFold(e, p.Email) {
				return true
			}
		}
		if at := strings.LastIndexByte(p.Email, '@'); at >= 0 {
			dom := p.Email[at+1:]
			for _, d := range r.domains {
				// Exact domain only: "example.com" must not admit
				// "evil-example.com" or "example.com.evil.net".
				if strings.EqualFold(d, dom) {
					return true
				}
			}
		}
	}
	for name, want := range r.claims {
		for _, v := range p.Claims[name] {
			if slices.Contains(want, v) {
				return true
			}
		}
	}
	return false
}

// Challenge returns the precomputed WWW-Authenticate value for an API
// step-up with decision d (RFC 9470 §3).
func (r *Rule) Challenge(d Decision) []byte {
	if d.risk {
		return r.riskChal
	}
	return r.acrChal
}
