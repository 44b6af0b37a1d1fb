package reqstate

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/valyala/fasthttp"
)

func TestGetAttachesOneStatePerRequest(t *testing.T) {
	var ctx fasthttp.RequestCtx
	if Peek(&ctx) != nil {
		t.Fatal("Peek before Get must be nil")
	}
	s := Get(&ctx)
	s.Route = "wiki"
	if Get(&ctx) != s || Peek(&ctx) != s {
		t.Fatal("Get must return the attached state")
	}
}

// fasthttp closes io.Closer user values when it resets a request context;
// the state must come back empty, or one user's identity would leak into
// the next request served from the pool.
func TestResetClearsState(t *testing.T) {
	var ctx fasthttp.RequestCtx
	s := Get(&ctx)
	s.Principal.Subject = "alice"
	s.ClientIP = netip.MustParseAddr("192.0.2.1")
	s.AddReason("new_device")
	ctx.ResetUserValues()
	if Peek(&ctx) != nil {
		t.Fatal("state still attached after reset")
	}
	if s.Principal.Subject != "" || s.ClientIP.IsValid() || len(s.Reasons()) != 0 {
		t.Fatalf("state not cleared on close: %+v", s)
	}
}

func TestAddReasonIsBounded(t *testing.T) {
	var s State
	for i := range MaxReasons + 3 {
		s.AddReason(string(rune('a' + i)))
	}
	want := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	if diff := cmp.Diff(want, s.Reasons()); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

func TestEnumStringsAreStable(t *testing.T) {
	got := []string{MethodNone.String(), MethodSession.String(), MethodBearer.String(), MethodDPoP.String(),
		DecisionNone.String(), DecisionAllow.String(), DecisionLogin.String(), DecisionStepUp.String(), DecisionDeny.String()}
	want := []string{"none", "session", "bearer", "dpop", "none", "allow", "login", "step_up", "deny"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

func TestGetAllocatesNothingOnceWarm(t *testing.T) {
	var ctx fasthttp.RequestCtx
	Get(&ctx)
	ctx.ResetUserValues()
	allocs := testing.AllocsPerRun(100, func() {
		Get(&ctx)
		ctx.ResetUserValues()
	})
	if allocs > 0 {
		t.Fatalf("Get+reset allocates %.1f times per request", allocs)
	}
}
