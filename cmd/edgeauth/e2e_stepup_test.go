package main

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/edgeauth/edgeauth/internal/e2etest"
)

// A user who is asked for MFA on an admin page, first signs in without it
// (a mistake, or not having the phone at hand) and then completes it, must
// end up on the page: the failed attempt counts, but one mistake must not
// cost the session. Repeated failures do (see the risk scenario tests).
func TestStepUpRetryAfterOneFailure(t *testing.T) {
	t.Parallel()
	tmpl := strings.Replace(e2etest.DefaultConfig, `    allow: {groups: [admins]}
`, `    allow: {groups: [admins]}
    acr: [mfa]
`, 1)
	tmpl = strings.Replace(tmpl, `  post_logout_redirect_url:`, `  step_up: {acr_values: [mfa]}
  post_logout_redirect_url:`, 1)
	s := e2etest.StartStack(t, tmpl)
	c := e2etest.NewClient(t)

	// Signed in with a password.
	if resp, err := e2etest.Login(t, c, s.Vars.URL+"/", "alice", "alice-password", "", nil); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("password login: %v %v", resp, err)
	}
	// /admin/ asks for MFA; the user signs in again without the code.
	resp, err := e2etest.Login(t, c, s.Vars.URL+"/admin/", "alice", "alice-password", "", nil)
	if err != nil && !errors.Is(err, e2etest.ErrLoginRejected) {
		t.Fatalf("step-up without MFA: %v", err)
	}
	if resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("step-up without MFA: want 403, got %v", resp)
	}
	// Then completes it properly.
	resp, err = e2etest.Login(t, c, s.Vars.URL+"/admin/", "alice", "alice-password", e2etest.MFACode, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("step-up with MFA after one failure: %v %v\n%s", resp, err, s.Edgeauth.Output())
	}
	if got := s.Upstream.Requests(); len(got) == 0 || got[len(got)-1].Path != "/admin/" {
		t.Fatalf("the admin page was not reached: %+v", got)
	}
}
