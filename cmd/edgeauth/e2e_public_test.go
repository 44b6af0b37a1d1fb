package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/edgeauth/edgeauth/internal/e2etest"
)

// public: prefixes inside a protected route skip sign-in and nothing else:
// identity headers a client sends are still stripped, and a path that
// only looks like the prefix, or escapes it with "..", is still protected.
func TestPublicPrefixesInsideAProtectedRoute(t *testing.T) {
	t.Parallel()
	tmpl := strings.Replace(e2etest.DefaultConfig, "  - name: app\n    path: /\n", "  - name: app\n    path: /\n    public: [/static/, /favicon.ico]\n", 1)
	if tmpl == e2etest.DefaultConfig {
		t.Fatal("could not add public prefixes to the config")
	}
	s := e2etest.StartStack(t, tmpl)
	anon := e2etest.NewClient(t)
	spoof := http.Header{"X-Auth-Request-User": {"mallory"}, "X_Auth_Request_Email": {"mallory@example.com"}}
	for _, tc := range []struct {
		path string
		want int
	}{
		{"/static/app.css", http.StatusOK},
		{"/favicon.ico", http.StatusOK},
		{"/staticfiles/x", http.StatusUnauthorized},
		{"/static/../reports", http.StatusUnauthorized},
		{"/static/%2e%2e/reports", http.StatusUnauthorized},
		{"/reports", http.StatusUnauthorized},
	} {
		s.Upstream.Reset()
		resp, _ := e2etest.Do(t, anon, http.MethodGet, s.Edgeauth.URL+tc.path, spoof, nil)
		if resp.StatusCode != tc.want {
			t.Errorf("%s: status %d, want %d", tc.path, resp.StatusCode, tc.want)
		}
		if tc.want != http.StatusOK {
			if n := s.Upstream.Count(); n != 0 {
				t.Errorf("%s: %d requests reached the app", tc.path, n)
			}
			continue
		}
		for _, r := range s.Upstream.Requests() {
			if got := e2etest.IdentityHeaders(r.Header); len(got) != 0 {
				t.Errorf("%s: spoofed identity reached the app: %v", tc.path, got)
			}
		}
	}
}
