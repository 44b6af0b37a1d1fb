package policy

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/edgeauth/edgeauth/middleware/reqstate"
	"github.com/google/go-cmp/cmp"
	"github.com/valyala/fasthttp"
)

// recorder is a Challenger that writes what a relying party would (a 302)
// and remembers what it was asked.
type recorder struct {
	calls  []string
	acr    []string
	maxAge time.Duration
}

func (r *recorder) Login(ctx *fasthttp.RequestCtx) {
	r.calls = append(r.calls, "login")
	ctx.Redirect("https://idp.example/authorize", fasthttp.StatusFound)
}

func (r *recorder) StepUp(ctx *fasthttp.RequestCtx, acr []string, maxAge time.Duration) {
	r.calls = append(r.calls, "step_up")
	r.acr, r.maxAge = acr, maxAge
	ctx.Redirect("https://idp.example/authorize?prompt=login", fasthttp.StatusFound)
}

type result struct {
	Status         int
	NextCalled     bool
	Calls          []string
	WWWAuth        string
	Body           map[string]string
	Decision       reqstate.Decision
	DenyReason     string
	ShadowDecision reqstate.Decision
}

func TestMiddleware(t *testing.T) {
	t.Parallel()
	browser := func(ctx *fasthttp.RequestCtx) {
		ctx.Request.Header.Set("Accept", "text/html,application/xhtml+xml")
	}
	api := func(ctx *fasthttp.RequestCtx) {
		ctx.Request.Header.Set("Accept", "application/json")
	}
	signedIn := func(st *reqstate.State) {
		st.Method = reqstate.MethodSession
		st.Principal = *alice()
		st.Principal.AuthTime = time.Now().Add(-time.Minute)
	}
	tests := []struct {
		name  string
		opts  RouteOptions
		path  string
		setup func(ctx *fasthttp.RequestCtx)
		state func(st *reqstate.State)
		want  result
	}{
		{name: "allow calls next", opts: RouteOptions{}, path: "/app", setup: api, state: signedIn,
			want: result{Status: 200, NextCalled: true, Decision: reqstate.DecisionAllow}},
		{name: "public path anonymous", opts: RouteOptions{Public: []string{"/static/"}}, path: "/static/a.css", setup: api,
			want: result{Status: 200, NextCalled: true, Decision: reqstate.DecisionAllow}},
		{
			// Attack: dot-segments to climb out of a public prefix. The
			// middleware decides on ctx.Path(), which fasthttp
			// normalizes, so this is /admin and needs a login.
			name: "dot segments do not escape public prefix", opts: RouteOptions{Public: []string{"/static/"}},
			path: "/static/../admin", setup: api,
			want: result{Status: 401, Calls: nil, WWWAuth: `Bearer realm="edgeauth"`, Body: map[string]string{"error": "login_required", "request_id": "req-1"}, Decision: reqstate.DecisionLogin, DenyReason: "login_required"},
		},
		{
			name: "encoded dot segments do not escape public prefix", opts: RouteOptions{Public: []string{"/static/"}},
			path: "/static/%2e%2e/admin", setup: api,
			want: result{Status: 401, WWWAuth: `Bearer realm="edgeauth"`, Body: map[string]string{"error": "login_required", "request_id": "req-1"}, Decision: reqstate.DecisionLogin, DenyReason: "login_required"},
		},
		{name: "login browser redirects via challenger", opts: RouteOptions{}, path: "/app", setup: browser,
			want: result{Status: 302, Calls: []string{"login"}, Decision: reqstate.DecisionLogin, DenyReason: "login_required"}},
		{name: "login API gets 401 bearer realm", opts: RouteOptions{}, path: "/app", setup: api,
			want: result{Status: 401, WWWAuth: `Bearer realm="edgeauth"`, Body: map[string]string{"error": "login_required", "request_id": "req-1"}, Decision: reqstate.DecisionLogin, DenyReason: "login_required"}},
		{name: "login XHR accepting html gets 401", opts: RouteOptions{}, path: "/app",
			setup: func(ctx *fasthttp.RequestCtx) {
				browser(ctx)
				ctx.Request.Header.Set("X-Requested-With", "XMLHttpRequest")
			},
			want: result{Status: 401, WWWAuth: `Bearer realm="edgeauth"`, Body: map[string]string{"error": "login_required", "request_id": "req-1"}, Decision: reqstate.DecisionLogin, DenyReason: "login_required"}},
		{name: "login POST gets 401", opts: RouteOptions{}, path: "/app",
			setup: func(ctx *fasthttp.RequestCtx) { browser(ctx); ctx.Request.Header.SetMethod("POST") },
			want:  result{Status: 401, WWWAuth: `Bearer realm="edgeauth"`, Body: map[string]string{"error": "login_required", "request_id": "req-1"}, Decision: reqstate.DecisionLogin, DenyReason: "login_required"}},
		{name: "step-up browser via challenger", opts: RouteOptions{RequireACR: []string{"mfa"}, MaxAuthAge: 15 * time.Minute}, path: "/admin", setup: browser, state: signedIn,
			want: result{Status: 302, Calls: []string{"step_up"}, Decision: reqstate.DecisionStepUp, DenyReason: "acr_required"}},
		{name: "step-up API gets RFC 9470 challenge", opts: RouteOptions{RequireACR: []string{"mfa"}, MaxAuthAge: 15 * time.Minute}, path: "/admin", setup: api, state: signedIn,
			want: result{Status: 401,
				WWWAuth:  `Bearer error="insufficient_user_authentication", error_description="A different authentication level is required", acr_values="mfa", max_age=900`,
				Body:     map[string]string{"error": "acr_required", "request_id": "req-1"},
				Decision: reqstate.DecisionStepUp, DenyReason: "acr_required"}},
		{name: "deny renders 403 with reason", opts: RouteOptions{AllowGroups: []string{"admins"}}, path: "/admin", setup: api, state: signedIn,
			want: result{Status: 403, Body: map[string]string{"error": "not_allowed", "request_id": "req-1"}, Decision: reqstate.DecisionDeny, DenyReason: "not_allowed"}},
		{name: "shadow records what risk would do", opts: RouteOptions{StepUpAt: 40, RiskMode: RiskShadow}, path: "/app", setup: api,
			state: func(st *reqstate.State) { signedIn(st); st.RiskScore = 80; st.AddReason("impossible_travel") },
			want:  result{Status: 200, NextCalled: true, Decision: reqstate.DecisionAllow, ShadowDecision: reqstate.DecisionStepUp}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rule, err := NewRule(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			rec := &recorder{}
			mw, err := Middleware(rule, rec, nil)
			if err != nil {
				t.Fatal(err)
			}
			var got result
			h := mw(func(ctx *fasthttp.RequestCtx) { got.NextCalled = true })
			ctx := new(fasthttp.RequestCtx)
			ctx.Request.SetRequestURI(tt.path)
			ctx.Request.Header.Set("X-Request-Id", "req-1")
			tt.setup(ctx)
			if tt.state != nil {
				tt.state(reqstate.Get(ctx))
			}
			h(ctx)
			st := reqstate.Get(ctx)
			got.Status = ctx.Response.StatusCode()
			got.Calls = rec.calls
			got.WWWAuth = string(ctx.Response.Header.Peek("WWW-Authenticate"))
			got.Decision, got.DenyReason = st.Decision, st.DenyReason
			got.ShadowDecision = ShadowDecision(ctx)
			if got.Status >= 400 {
				var body map[string]string
				if err := json.Unmarshal(ctx.Response.Body(), &body); err != nil {
					t.Fatalf("body %q: %v", ctx.Response.Body(), err)
				}
				delete(body, "message")
				got.Body = body
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestMiddlewareStepUpPassesRequirements(t *testing.T) {
	t.Parallel()
	rule, err := NewRule(RouteOptions{StepUpAt: 40, StepUpACR: []string{"mfa"}, StepUpMaxAge: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	mw, _ := Middleware(rule, rec, nil)
	h := mw(func(*fasthttp.RequestCtx) { t.Error("next called") })
	ctx := new(fasthttp.RequestCtx)
	ctx.Request.SetRequestURI("/app")
	ctx.Request.Header.Set("Accept", "text/html")
	st := reqstate.Get(ctx)
	st.Method, st.Principal, st.RiskScore = reqstate.MethodSession, *alice(), 45
	h(ctx)
	if diff := cmp.Diff([]string{"mfa"}, rec.acr); diff != "" || rec.maxAge != 5*time.Minute {
		t.Errorf("StepUp got acr %v maxAge %v (-want +got acr):\n%s", rec.acr, rec.maxAge, diff)
	}
}

func TestMiddlewareRejectsNil(t *testing.T) {
	t.Parallel()
	rule, _ := NewRule(RouteOptions{})
	if _, err := Middleware(nil, &recorder{}, nil); err == nil {
		t.Error("nil rule: want error")
	}
	if _, err := Middleware(rule, nil, nil); err == nil {
		t.Error("nil challenger: want error")
	}
}

func TestMiddlewareAllowAllocs(t *testing.T) {
	rule, _ := NewRule(RouteOptions{Public: []string{"/static/"}, AllowGroups: []string{"eng"}, StepUpAt: 40, DenyAt: 90})
	mw, _ := Middleware(rule, &recorder{}, nil)
	h := mw(func(*fasthttp.RequestCtx) {})
	ctx := new(fasthttp.RequestCtx)
	ctx.Request.SetRequestURI("/app")
	st := reqstate.Get(ctx)
	st.Method, st.Principal = reqstate.MethodSession, *alice()
	h(ctx)
	if n := testing.AllocsPerRun(200, func() { h(ctx) }); n != 0 {
		t.Errorf("allow path allocs = %v, want 0", n)
	}
}

func BenchmarkMiddlewareAllow(b *testing.B) {
	rule, _ := NewRule(RouteOptions{Public: []string{"/static/"}, AllowGroups: []string{"eng"}, StepUpAt: 40, DenyAt: 90})
	mw, _ := Middleware(rule, &recorder{}, nil)
	h := mw(func(*fasthttp.RequestCtx) {})
	ctx := new(fasthttp.RequestCtx)
	ctx.Request.SetRequestURI("/app")
	st := reqstate.Get(ctx)
	st.Method, st.Principal = reqstate.MethodSession, *alice()
	b.ReportAllocs()
	for b.Loop() {
		h(ctx)
	}
}

// With no sign-in provider, browsers get the same answers as API clients.
func TestAPIChallenger(t *testing.T) {
	t.Parallel()
	var login fasthttp.RequestCtx
	APIChallenger{}.Login(&login)
	if got := string(login.Response.Header.Peek("WWW-Authenticate")); login.Response.StatusCode() != 401 || got != `Bearer realm="edgeauth"` {
		t.Errorf("login: %d %q", login.Response.StatusCode(), got)
	}
	var step fasthttp.RequestCtx
	APIChallenger{}.StepUp(&step, []string{"mfa", "phr"}, 5*time.Minute)
	want := `Bearer error="insufficient_user_authentication", error_description="A different authentication level is required", acr_values="mfa phr", max_age=300`
	if got := string(step.Response.Header.Peek("WWW-Authenticate")); step.Response.StatusCode() != 401 || got != want {
		t.Errorf("step-up: %d %q, want %q", step.Response.StatusCode(), got, want)
	}
}
