package e2etest

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMain(m *testing.M) {
	code := m.Run()
	RemoveBinary()
	os.Exit(code)
}

// TestStackLogin pins the kit's own contract on the real binary: the stack
// starts, Login signs alice in through the provider and lands on the deep
// link with her identity, hdr reaches edgeauth but not the provider, and
// Restart brings edgeauth back on the same ports.
func TestStackLogin(t *testing.T) {
	t.Parallel()
	s := StartStack(t, DefaultConfig)
	c := NewClient(t)

	// Anonymous navigation is sent to the provider.
	resp, _ := Navigate(t, c, s.Edgeauth.URL+"/reports/q3?view=full", nil)
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), s.IDP.Issuer) {
		t.Fatalf("anonymous navigation: %d Location %q, want 302 to %s", resp.StatusCode, resp.Header.Get("Location"), s.IDP.Issuer)
	}

	resp, err := Login(t, c, s.Edgeauth.URL+"/reports/q3?view=full", "alice", "alice-password", "", http.Header{"X-Kit-Marker": {"edge-only"}})
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after login: status %d, want 200", resp.StatusCode)
	}
	var got Echo
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatalf("decode echo: %v", err)
	}
	if got.Path != "/reports/q3" || got.RawQuery != "view=full" {
		t.Errorf("landed on %s?%s, want /reports/q3?view=full", got.Path, got.RawQuery)
	}
	if got.Identity["X-Auth-Request-User"] == "" || !strings.Contains(got.Identity["X-Auth-Request-Groups"], "admins") {
		t.Errorf("identity = %v, want a user and the admins group", got.Identity)
	}
	reqs := s.Upstream.Requests()
	if len(reqs) != 1 || reqs[0].Header.Get("X-Kit-Marker") != "edge-only" {
		t.Errorf("upstream saw %d requests, marker %q; want 1 with the marker", len(reqs), firstMarker(reqs))
	}
	if strings.Contains(s.IDP.Proc.Output(), "edge-only") {
		t.Error("hdr reached the provider")
	}

	s.Upstream.Reset()
	s.Edgeauth.Restart(t)
	resp, _ = Navigate(t, c, s.Edgeauth.URL+"/public/x", nil)
	if resp.StatusCode != http.StatusOK || s.Upstream.Count() != 1 {
		t.Fatalf("after restart: public page %d, upstream count %d", resp.StatusCode, s.Upstream.Count())
	}
}

func firstMarker(r []Recorded) string {
	if len(r) == 0 {
		return ""
	}
	return r[0].Header.Get("X-Kit-Marker")
}

func TestLoginRejectsBadPassword(t *testing.T) {
	t.Parallel()
	s := StartStack(t, DefaultConfig)
	_, err := Login(t, NewClient(t), s.Edgeauth.URL+"/x", "alice", "wrong", "", nil)
	if err == nil || !strings.Contains(err.Error(), "rejected") {
		t.Fatalf("Login with a wrong password: err %v, want ErrLoginRejected", err)
	}
}

func TestLoginForm(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		page       string
		wantAction string
		wantFields map[string][]string
		wantOK     bool
	}{
		{
			name:       "devidp form",
			page:       `<form method="post" action="/login"><input type="hidden" name="id" value="a&amp;b"><input name="username"><input name="password" type="password"></form>`,
			wantAction: "/login", wantFields: map[string][]string{"id": {"a&b"}}, wantOK: true,
		},
		{name: "no password field", page: `<form action="/x"><input type="hidden" name="id" value="1"></form>`},
		{name: "no form", page: `<input name="password">`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			action, fields, ok := loginForm([]byte(tt.page))
			if ok != tt.wantOK || action != tt.wantAction {
				t.Fatalf("loginForm = %q, %v; want %q, %v", action, ok, tt.wantAction, tt.wantOK)
			}
			if diff := cmp.Diff(tt.wantFields, map[string][]string(fields)); ok && diff != "" {
				t.Errorf("fields (-want +got):\n%s", diff)
			}
		})
	}
}

func TestListeners(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, doc         string
		env               []string
		wantMain, wantAdm string
		wantErr           bool
	}{
		{name: "both", doc: "listen: \"127.0.0.1:1234\"\nadmin: {listen: \"127.0.0.1:1235\"}\n", wantMain: "127.0.0.1:1234", wantAdm: "127.0.0.1:1235"},
		{name: "env", doc: "listen: \"127.0.0.1:${P}\"\n", env: []string{"P=42"}, wantMain: "127.0.0.1:42"},
		{name: "all interfaces refused", doc: "listen: \":8080\"\n", wantErr: true},
		{name: "port zero refused", doc: "listen: \"127.0.0.1:0\"\n", wantErr: true},
		{name: "missing listen", doc: "admin: {listen: \"127.0.0.1:1\"}\n", wantErr: true},
		{name: "bad yaml", doc: "listen: [\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, a, _, err := listeners(tt.doc, tt.env)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && (m != tt.wantMain || a != tt.wantAdm) {
				t.Errorf("listeners = %q, %q; want %q, %q", m, a, tt.wantMain, tt.wantAdm)
			}
		})
	}
}

// TestParseRequestURLKeepsPayloads pins that open-redirect payloads reach
// the server as written: an escaped backslash would hide the attack.
func TestParseRequestURLKeepsPayloads(t *testing.T) {
	t.Parallel()
	tests := []struct{ raw, wantURI string }{
		{"http://127.0.0.1:1/reports/q3?view=full", "/reports/q3?view=full"},
		{"http://127.0.0.1:1//evil.com", "//evil.com"},
		{`http://127.0.0.1:1/\evil.com`, `/\evil.com`},
		{`http://127.0.0.1:1/\/evil.com?x=1`, `/\/evil.com?x=1`},
		{"http://127.0.0.1:1/%2F%2Fevil.com", "/%2F%2Fevil.com"},
		{"http://127.0.0.1:1/", "/"},
	}
	for _, tt := range tests {
		u, err := parseRequestURL(tt.raw)
		if err != nil {
			t.Fatalf("parseRequestURL(%q): %v", tt.raw, err)
		}
		if got := u.RequestURI(); got != tt.wantURI {
			t.Errorf("parseRequestURL(%q).RequestURI() = %q, want %q", tt.raw, got, tt.wantURI)
		}
		if u.Host != "127.0.0.1:1" {
			t.Errorf("parseRequestURL(%q).Host = %q", tt.raw, u.Host)
		}
	}
}
