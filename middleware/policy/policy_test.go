package policy

import (
	"testing"
	"time"

	"github.com/edgeauth/edgeauth/middleware/reqstate"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func alice() *reqstate.Principal {
	return &reqstate.Principal{
		Subject: "alice", Email: "alice@example.com", EmailVerified: true,
		Groups: []string{"staff", "eng"}, ACR: "pwd", AuthTime: now.Add(-30 * time.Minute),
		Claims: map[string][]string{"dept": {"research"}},
	}
}

func with(f func(p *reqstate.Principal)) *reqstate.Principal {
	p := alice()
	f(p)
	return p
}

type want struct {
	Kind         reqstate.Decision
	Reason       string
	ShadowKind   reqstate.Decision
	ShadowReason string
}

func TestDecide(t *testing.T) {
	t.Parallel()
	riskRoute := RouteOptions{StepUpAt: 40, DenyAt: 90, StepUpACR: []string{"mfa"}}
	tests := []struct {
		name string
		opts RouteOptions
		in   Input
		want want
	}{
		{name: "public prefix allows anonymous", opts: RouteOptions{Public: []string{"/static/"}},
			in: Input{Path: []byte("/static/app.js")}, want: want{Kind: reqstate.DecisionAllow, Reason: ReasonPublic}},
		{name: "prefix is not a substring match", opts: RouteOptions{Public: []string{"/static/"}},
			in: Input{Path: []byte("/app/static/x")}, want: want{Kind: reqstate.DecisionLogin, Reason: ReasonLoginRequired}},
		{
			// Attack: path traversal out of a public prefix. The
			// middleware passes the normalized path, so the rule sees
			// /admin; a raw path would still not start with /static/.
			name: "public prefix does not cover sibling", opts: RouteOptions{Public: []string{"/static/"}},
			in: Input{Path: []byte("/staticX/admin")}, want: want{Kind: reqstate.DecisionLogin, Reason: ReasonLoginRequired},
		},
		{name: "auth none route", opts: RouteOptions{AuthNone: true},
			in: Input{Path: []byte("/x")}, want: want{Kind: reqstate.DecisionAllow, Reason: ReasonPublic}},
		{name: "protected by default", opts: RouteOptions{},
			in: Input{Path: []byte("/")}, want: want{Kind: reqstate.DecisionLogin, Reason: ReasonLoginRequired}},
		{name: "authenticated without principal is login", opts: RouteOptions{},
			in: Input{Path: []byte("/"), Authenticated: true}, want: want{Kind: reqstate.DecisionLogin, Reason: ReasonLoginRequired}},
		{name: "no allow rule admits any authenticated user", opts: RouteOptions{},
			in: Input{Path: []byte("/"), Authenticated: true, Principal: alice(), Now: now}, want: want{Kind: reqstate.DecisionAllow}},
		{name: "group allowed", opts: RouteOptions{AllowGroups: []string{"eng"}},
			in: Input{Authenticated: true, Principal: alice(), Now: now}, want: want{Kind: reqstate.DecisionAllow}},
		{name: "group not in allowed list", opts: RouteOptions{AllowGroups: []string{"admins"}},
			in: Input{Authenticated: true, Principal: alice(), Now: now}, want: want{Kind: reqstate.DecisionDeny, Reason: ReasonNotAllowed}},
		{name: "group match is case-sensitive", opts: RouteOptions{AllowGroups: []string{"Staff"}},
			in: Input{Authenticated: true, Principal: alice(), Now: now}, want: want{Kind: reqstate.DecisionDeny, Reason: ReasonNotAllowed}},
		{name: "email allowed case-insensitively", opts: RouteOptions{AllowEmails: []string{"Alice@Example.com"}},
			in: Input{Authenticated: true, Principal: alice(), Now: now}, want: want{Kind: reqstate.DecisionAllow}},
		{
			// Attack: a provider that lets users set any email address
			// (unverified) must not satisfy an email rule.
			name: "unverified email does not match", opts: RouteOptions{AllowEmails: []string{"alice@example.com"}},
			in:   Input{Authenticated: true, Principal: with(func(p *reqstate.Principal) { p.EmailVerified = false }), Now: now},
			want: want{Kind: reqstate.DecisionDeny, Reason: ReasonNotAllowed},
		},
		{name: "unverified email allowed when configured", opts: RouteOptions{AllowEmails: []string{"alice@example.com"}, AllowUnverifiedEmail: true},
			in:   Input{Authenticated: true, Principal: with(func(p *reqstate.Principal) { p.EmailVerified = false }), Now: now},
			want: want{Kind: reqstate.DecisionAllow}},
		{name: "email domain allowed", opts: RouteOptions{AllowEmailDomains: []string{"@EXAMPLE.com"}},
			in: Input{Authenticated: true, Principal: alice(), Now: now}, want: want{Kind: reqstate.DecisionAllow}},
		{
			// Attack: look-alike domains must not pass a suffix check.
			name: "email domain is exact", opts: RouteOptions{AllowEmailDomains: []string{"example.com"}},
			in:   Input{Authenticated: true, Principal: with(func(p *reqstate.Principal) { p.Email = "mallory@evil-example.com" }), Now: now},
			want: want{Kind: reqstate.DecisionDeny, Reason: ReasonNotAllowed},
		},
		{name: "email domain with subdomain not matched", opts: RouteOptions{AllowEmailDomains: []string{"example.com"}},
			in:   Input{Authenticated: true, Principal: with(func(p *reqstate.Principal) { p.Email = "m@example.com.evil.net" }), Now: now},
			want: want{Kind: reqstate.DecisionDeny, Reason: ReasonNotAllowed}},
		{name: "claim value allowed", opts: RouteOptions{AllowClaims: map[string][]string{"dept": {"research"}}},
			in: Input{Authenticated: true, Principal: alice(), Now: now}, want: want{Kind: reqstate.DecisionAllow}},
		{name: "claim value not allowed", opts: RouteOptions{AllowClaims: map[string][]string{"dept": {"sales"}}},
			in: Input{Authenticated: true, Principal: alice(), Now: now}, want: want{Kind: reqstate.DecisionDeny, Reason: ReasonNotAllowed}},
		{name: "rules are alternatives", opts: RouteOptions{AllowGroups: []string{"admins"}, AllowEmails: []string{"alice@example.com"}},
			in: Input{Authenticated: true, Principal: alice(), Now: now}, want: want{Kind: reqstate.DecisionAllow}},
		{name: "acr required", opts: RouteOptions{RequireACR: []string{"mfa", "hwk"}},
			in: Input{Authenticated: true, Principal: alice(), Now: now}, want: want{Kind: reqstate.DecisionStepUp, Reason: ReasonACRRequired}},
		{name: "acr satisfied", opts: RouteOptions{RequireACR: []string{"mfa", "hwk"}},
			in: Input{Authenticated: true, Principal: with(func(p *reqstate.Principal) { p.ACR = "hwk" }), Now: now}, want: want{Kind: reqstate.DecisionAllow}},
		{name: "auth too old", opts: RouteOptions{MaxAuthAge: 15 * time.Minute},
			in: Input{Authenticated: true, Principal: alice(), Now: now}, want: want{Kind: reqstate.DecisionStepUp, Reason: ReasonAuthTooOld}},
		{name: "auth fresh enough", opts: RouteOptions{MaxAuthAge: time.Hour},
			in: Input{Authenticated: true, Principal: alice(), Now: now}, want: want{Kind: reqstate.DecisionAllow}},
		{name: "missing auth_time cannot prove freshness", opts: RouteOptions{MaxAuthAge: time.Hour},
			in:   Input{Authenticated: true, Principal: with(func(p *reqstate.Principal) { p.AuthTime = time.Time{} }), Now: now},
			want: want{Kind: reqstate.DecisionStepUp, Reason: ReasonAuthTooOld}},
		{name: "auth_time far in the future not believed", opts: RouteOptions{MaxAuthAge: time.Hour},
			in:   Input{Authenticated: true, Principal: with(func(p *reqstate.Principal) { p.AuthTime = now.Add(time.Hour) }), Now: now},
			want: want{Kind: reqstate.DecisionStepUp, Reason: ReasonAuthTooOld}},
		{name: "auth_time within skew accepted", opts: RouteOptions{MaxAuthAge: time.Hour},
			in:   Input{Authenticated: true, Principal: with(func(p *reqstate.Principal) { p.AuthTime = now.Add(30 * time.Second) }), Now: now},
			want: want{Kind: reqstate.DecisionAllow}},
		{name: "low risk allows", opts: riskRoute,
			in: Input{Authenticated: true, Principal: alice(), Score: 10, Reasons: []string{"new_asn"}, Now: now}, want: want{Kind: reqstate.DecisionAllow}},
		{name: "risk at step_up_at steps up", opts: riskRoute,
			in:   Input{Authenticated: true, Principal: alice(), Score: 40, Reasons: []string{"new_country"}, Now: now},
			want: want{Kind: reqstate.DecisionStepUp, Reason: ReasonRiskStepUp}},
		{name: "impossible travel steps up, does not deny", opts: riskRoute,
			in:   Input{Authenticated: true, Principal: alice(), Score: 80, Reasons: []string{"impossible_travel"}, Now: now},
			want: want{Kind: reqstate.DecisionStepUp, Reason: ReasonRiskStepUp}},
		{name: "score at deny_at denies", opts: riskRoute,
			in:   Input{Authenticated: true, Principal: alice(), Score: 90, Now: now},
			want: want{Kind: reqstate.DecisionDeny, Reason: ReasonRiskTooHigh}},
		{name: "thresholds zero disable risk", opts: RouteOptions{},
			in: Input{Authenticated: true, Principal: alice(), Score: 1000, Now: now}, want: want{Kind: reqstate.DecisionAllow}},
		{name: "deny-listed country denies even with low score", opts: riskRoute,
			in:   Input{Authenticated: true, Principal: alice(), Score: 0, Reasons: []string{"country_denied"}, Now: now},
			want: want{Kind: reqstate.DecisionDeny, Reason: ReasonCountryDenied}},
		{name: "failed step-ups deny", opts: RouteOptions{},
			in:   Input{Authenticated: true, Principal: alice(), Reasons: []string{ReasonStepUpFailed}, Now: now},
			want: want{Kind: reqstate.DecisionDeny, Reason: ReasonStepUpFailed}},
		{name: "tor steps up by default", opts: riskRoute,
			in:   Input{Authenticated: true, Principal: alice(), Score: 60, Reasons: []string{"tor"}, Now: now},
			want: want{Kind: reqstate.DecisionStepUp, Reason: ReasonRiskStepUp}},
		{name: "tor denied where operator forbids it", opts: RouteOptions{StepUpAt: 40, HardDenyReasons: []string{"tor"}},
			in:   Input{Authenticated: true, Principal: alice(), Score: 60, Reasons: []string{"tor"}, Now: now},
			want: want{Kind: reqstate.DecisionDeny, Reason: "tor"}},
		{name: "hard deny beats acr step-up", opts: RouteOptions{RequireACR: []string{"mfa"}},
			in:   Input{Authenticated: true, Principal: alice(), Reasons: []string{"country_denied"}, Now: now},
			want: want{Kind: reqstate.DecisionDeny, Reason: ReasonCountryDenied}},
		{name: "acr step-up before risk step-up", opts: RouteOptions{RequireACR: []string{"mfa"}, StepUpAt: 10},
			in:   Input{Authenticated: true, Principal: alice(), Score: 50, Now: now},
			want: want{Kind: reqstate.DecisionStepUp, Reason: ReasonACRRequired}},
		{name: "allow rule checked before risk", opts: RouteOptions{AllowGroups: []string{"admins"}, StepUpAt: 10},
			in:   Input{Authenticated: true, Principal: alice(), Score: 50, Now: now},
			want: want{Kind: reqstate.DecisionDeny, Reason: ReasonNotAllowed}},
		{name: "shadow: risk step-up recorded, allowed", opts: RouteOptions{StepUpAt: 40, RiskMode: RiskShadow},
			in:   Input{Authenticated: true, Principal: alice(), Score: 80, Reasons: []string{"impossible_travel"}, Now: now},
			want: want{Kind: reqstate.DecisionAllow, ShadowKind: reqstate.DecisionStepUp, ShadowReason: ReasonRiskStepUp}},
		{name: "shadow: hard deny recorded, allowed", opts: RouteOptions{RiskMode: RiskShadow},
			in:   Input{Authenticated: true, Principal: alice(), Reasons: []string{"country_denied"}, Now: now},
			want: want{Kind: reqstate.DecisionAllow, ShadowKind: reqstate.DecisionDeny, ShadowReason: ReasonCountryDenied}},
		{name: "shadow: quiet request records allow", opts: RouteOptions{StepUpAt: 40, RiskMode: RiskShadow},
			in:   Input{Authenticated: true, Principal: alice(), Score: 0, Now: now},
			want: want{Kind: reqstate.DecisionAllow, ShadowKind: reqstate.DecisionAllow}},
		{name: "shadow: allow rules still enforced", opts: RouteOptions{AllowGroups: []string{"admins"}, RiskMode: RiskShadow},
			in: Input{Authenticated: true, Principal: alice(), Now: now}, want: want{Kind: reqstate.DecisionDeny, Reason: ReasonNotAllowed}},
		{name: "shadow: login still enforced", opts: RouteOptions{RiskMode: RiskShadow},
			in: Input{}, want: want{Kind: reqstate.DecisionLogin, Reason: ReasonLoginRequired}},
		{name: "shadow: acr still enforced", opts: RouteOptions{RequireACR: []string{"mfa"}, StepUpAt: 10, RiskMode: RiskShadow},
			in:   Input{Authenticated: true, Principal: alice(), Score: 50, Now: now},
			want: want{Kind: reqstate.DecisionStepUp, Reason: ReasonACRRequired, ShadowKind: reqstate.DecisionStepUp, ShadowReason: ReasonRiskStepUp}},
		{name: "off: hard deny reason ignored", opts: RouteOptions{RiskMode: RiskOff, StepUpAt: 10},
			in: Input{Authenticated: true, Principal: alice(), Score: 99, Reasons: []string{"country_denied"}, Now: now}, want: want{Kind: reqstate.DecisionAllow}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := NewRule(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			d := r.Decide(tt.in)
			got := want{Kind: d.Kind, Reason: d.Reason, ShadowKind: d.ShadowKind, ShadowReason: d.ShadowReason}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Decide (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecideStepUpRequirements(t *testing.T) {
	t.Parallel()
	r, err := NewRule(RouteOptions{RequireACR: []string{"mfa"}, MaxAuthAge: 15 * time.Minute, StepUpAt: 40, StepUpACR: []string{"hwk", "mfa"}, StepUpMaxAge: 0})
	if err != nil {
		t.Fatal(err)
	}
	d := r.Decide(Input{Authenticated: true, Principal: alice(), Now: now})
	if diff := cmp.Diff(Decision{Kind: reqstate.DecisionStepUp, Reason: ReasonACRRequired, ACR: []string{"mfa"}, MaxAge: 15 * time.Minute, HasMaxAge: true}, d, cmpopts.IgnoreUnexported(Decision{})); diff != "" {
		t.Errorf("acr step-up (-want +got):\n%s", diff)
	}
	if got, want := string(r.Challenge(d)), `Bearer error="insufficient_user_authentication", error_description="A different authentication level is required", acr_values="mfa", max_age=900`; got != want {
		t.Errorf("acr challenge = %s, want %s", got, want)
	}
	mfa := with(func(p *reqstate.Principal) { p.ACR = "mfa"; p.AuthTime = now.Add(-time.Minute) })
	d = r.Decide(Input{Authenticated: true, Principal: mfa, Score: 50, Now: now})
	if diff := cmp.Diff(Decision{Kind: reqstate.DecisionStepUp, Reason: ReasonRiskStepUp, ACR: []string{"hwk", "mfa"}, MaxAge: 0, HasMaxAge: true}, d, cmpopts.IgnoreUnexported(Decision{})); diff != "" {
		t.Errorf("risk step-up (-want +got):\n%s", diff)
	}
	if got, want := string(r.Challenge(d)), `Bearer error="insufficient_user_authentication", error_description="A different authentication level is required", acr_values="hwk mfa", max_age=0`; got != want {
		t.Errorf("risk challenge = %s, want %s", got, want)
	}
}

func TestNewRuleRejectsBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts RouteOptions
	}{
		{"relative public prefix", RouteOptions{Public: []string{"static/"}}},
		{"email without at", RouteOptions{AllowEmails: []string{"alice"}}},
		{"bad domain", RouteOptions{AllowEmailDomains: []string{"a@b"}}},
		{"empty group", RouteOptions{AllowGroups: []string{""}}},
		{"claim without values", RouteOptions{AllowClaims: map[string][]string{"dept": nil}}},
		{"deny below step-up", RouteOptions{StepUpAt: 50, DenyAt: 40}},
		{"negative threshold", RouteOptions{StepUpAt: -1}},
		{"negative age", RouteOptions{MaxAuthAge: -time.Second}},
		{"acr with quote", RouteOptions{RequireACR: []string{`mfa"`}}},
		{"bad mode", RouteOptions{RiskMode: 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := NewRule(tt.opts); err == nil {
				t.Fatal("NewRule: want error")
			}
		})
	}
}

func TestParseRiskMode(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]RiskMode{"": RiskEnforce, "enforce": RiskEnforce, "shadow": RiskShadow, "off": RiskOff} {
		got, err := ParseRiskMode(in)
		if err != nil || got != want || (in != "" && got.String() != in) {
			t.Errorf("ParseRiskMode(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseRiskMode("audit"); err == nil {
		t.Error("ParseRiskMode(audit): want error")
	}
}

func TestDecideAllocs(t *testing.T) {
	r, err := NewRule(RouteOptions{Public: []string{"/static/"}, AllowGroups: []string{"eng"}, StepUpAt: 40, DenyAt: 90, RequireACR: []string{"pwd"}, MaxAuthAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	in := Input{Path: []byte("/app"), Authenticated: true, Principal: alice(), Score: 10, Reasons: []string{"new_asn"}, Now: now}
	if n := testing.AllocsPerRun(200, func() { _ = r.Decide(in) }); n != 0 {
		t.Errorf("Decide allocs = %v, want 0", n)
	}
}

func BenchmarkDecide(b *testing.B) {
	r, _ := NewRule(RouteOptions{Public: []string{"/static/"}, AllowGroups: []string{"eng"}, StepUpAt: 40, DenyAt: 90})
	in := Input{Path: []byte("/app"), Authenticated: true, Principal: alice(), Score: 10, Reasons: []string{"new_asn"}, Now: now}
	b.ReportAllocs()
	for b.Loop() {
		_ = r.Decide(in)
	}
}
