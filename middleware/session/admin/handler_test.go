package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/valyala/fasthttp"

	"github.com/edgeauth/edgeauth/middleware/session"
	"github.com/edgeauth/edgeauth/middleware/session/admin"
	"github.com/edgeauth/edgeauth/middleware/session/redisstore"
	"github.com/edgeauth/edgeauth/middleware/session/redisstore/redistest"
)

const (
	token  = "0123456789abcdef0123456789abcdef"
	issuer = "https://idp.test"
)

type auditEvent struct {
	Action, Sub string
	OK          bool
}

type fixture struct {
	url    string
	store  *redisstore.Store
	mu     sync.Mutex
	events []auditEvent
	forgot []string
}

func (f *fixture) audit() []auditEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]auditEvent(nil), f.events...)
}

// start serves the admin handler on a loopback port, backed by a real
// Redis store.
func start(t *testing.T) *fixture {
	t.Helper()
	srv := redistest.Start(t, redistest.Options{})
	st, err := redisstore.New(t.Context(), redisstore.Options{
		Addrs: []string{srv.Addr}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{store: st}
	h, err := admin.New(admin.Options{
		Store: st, Token: []byte(token), Issuer: issuer,
		ForgetDevices: func(_ context.Context, iss, sub string) error {
			f.mu.Lock()
			f.forgot = append(f.forgot, iss+" "+sub)
			f.mu.Unlock()
			return nil
		},
		Audit: func(action, sub, detail string, ok bool) {
			f.mu.Lock()
			f.events = append(f.events, auditEvent{action, sub, ok})
			f.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fasthttp.Server{Handler: h.Handle}
	go s.Serve(ln)
	t.Cleanup(func() { s.Shutdown() })
	f.url = "http://" + ln.Addr().String()
	return f
}

func (f *fixture) put(t *testing.T, sub string) *session.Session {
	t.Helper()
	now := time.Now()
	s := &session.Session{
		ID: session.NewID(), Issuer: issuer, Subject: sub, SID: "sid",
		CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(time.Hour),
		IP: "203.0.113.7", Country: "CH", DeviceID: "device-1",
	}
	if err := f.store.Put(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	return s
}

func (f *fixture) do(t *testing.T, method, path, auth string) (int, map[string]any, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, f.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s %s: body %q is not JSON: %v", method, path, b, err)
	}
	return resp.StatusCode, m, resp.Header.Get("WWW-Authenticate")
}

func TestAuthFailures(t *testing.T) {
	t.Parallel()
	f := start(t)
	victim := f.put(t, "alice")
	tests := []struct{ name, auth string }{
		{"missing", ""},
		{"wrong token", "Bearer " + strings.Repeat("x", len(token))},
		{"token prefix", "Bearer " + token[:len(token)-1]},
		{"token with suffix", "Bearer " + token + "x"},
		{"basic scheme", "Basic " + token},
		{"bearer without token", "Bearer "},
		{"lowercase scheme with token", "bearer" + token},
	}
	for _, tc := range tests {
		for _, m := range []string{http.MethodGet, http.MethodDelete} {
			code, body, wwwAuth := f.do(t, m, "/admin/users/alice/sessions", tc.auth)
			if code != http.StatusUnauthorized || body["error"] != "unauthorized" || !strings.HasPrefix(wwwAuth, "Bearer") {
				t.Errorf("%s %s: %d %v %q, want 401 unauthorized with WWW-Authenticate", tc.name, m, code, body, wwwAuth)
			}
		}
	}
	// Nothing was revoked by the unauthorised DELETEs.
	if _, err := f.store.Get(t.Context(), victim.ID); err != nil {
		t.Fatalf("session after unauthorised DELETE: %v", err)
	}
	for _, e := range f.audit() {
		if e.Action != admin.ActionAuthFailed || e.OK {
			t.Errorf("audit event %+v, want only failed auth", e)
		}
	}
	if got := len(f.audit()); got != 2*len(tests) {
		t.Errorf("%d audit events, want %d", got, 2*len(tests))
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	t.Parallel()
	if _, err := admin.New(admin.Options{Store: nil, Token: []byte(token)}); err == nil {
		t.Error("New without store succeeded")
	}
}

func TestParsePath(t *testing.T) {
	t.Parallel()
	id := session.NewID()
	tests := []struct {
		path    string
		want    admin.Route
		wantErr error
	}{
		{"/admin/users/alice/sessions", admin.Route{Kind: admin.RouteUserSessions, Subject: "alice"}, nil},
		{"/admin/users/a%2Fb/sessions", admin.Route{Kind: admin.RouteUserSessions, Subject: "a/b"}, nil},
		{"/admin/users/a%2Fsessions/sessions", admin.Route{Kind: admin.RouteUserSessions, Subject: "a/sessions"}, nil},
		{"/admin/users/x/devices/forget", admin.Route{Kind: admin.RouteForgetDevices, Subject: "x"}, nil},
		{"/admin/sessions/0123456789abcdef", admin.Route{Kind: admin.RouteSession, Ref: "0123456789abcdef"}, nil},
		{"/admin/sessions/" + id, admin.Route{Kind: admin.RouteSession, Ref: id}, nil},
		{"/admin/users/%zz/sessions", admin.Route{Kind: admin.RouteUserSessions}, admin.ErrBadRequest},
		{"/admin/users//sessions", admin.Route{Kind: admin.RouteUserSessions}, admin.ErrBadRequest},
		{"/admin/sessions/0123456789ABCDEF", admin.Route{Kind: admin.RouteSession, Ref: "0123456789ABCDEF"}, admin.ErrBadRequest},
		{"/admin/users/alice/sessions/", admin.Route{}, admin.ErrNotFound},
		{"/metrics", admin.Route{}, admin.ErrNotFound},
	}
	for _, tc := range tests {
		got, err := admin.ParsePath(tc.path)
		if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
			t.Errorf("ParsePath(%q) err = %v, want %v", tc.path, err, tc.wantErr)
		}
		if tc.wantErr == nil {
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParsePath(%q) (-want +got):\n%s", tc.path, diff)
			}
		}
	}
}

func TestSessionsAPI(t *testing.T) {
	t.Parallel()
	f := start(t)
	bearer := "Bearer " + token
	a1, a2 := f.put(t, "alice"), f.put(t, "alice")
	slash := f.put(t, "team/bob")

	code, body, _ := f.do(t, http.MethodGet, "/admin/users/alice/sessions", bearer)
	if code != 200 {
		t.Fatalf("list: %d %v", code, body)
	}
	got := map[string]bool{}
	for _, s := range body["sessions"].([]any) {
		m := s.(map[string]any)
		got[m["id"].(string)] = true
		if m["device"] != admin.HashID("device-1") || m["ip"] != "203.0.113.7" || m["country"] != "CH" {
			t.Errorf("session view %v", m)
		}
	}
	if diff := cmp.Diff(map[string]bool{admin.HashID(a1.ID): true, admin.HashID(a2.ID): true}, got); diff != "" {
		t.Errorf("listed ids (-want +got):\n%s", diff)
	}
	raw, _ := json.Marshal(body)
	if strings.Contains(string(raw), a1.ID) || strings.Contains(string(raw), "device-1") {
		t.Errorf("list leaks a raw session or device id: %s", raw)
	}

	// A subject with "/" is addressed escaped and does not reach another route.
	if code, body, _ := f.do(t, http.MethodGet, "/admin/users/team%2Fbob/sessions", bearer); code != 200 || len(body["sessions"].([]any)) != 1 {
		t.Errorf("list team/bob: %d %v", code, body)
	}

	// Revoke by hash needs the subject.
	if code, _, _ := f.do(t, http.MethodDelete, "/admin/sessions/"+admin.HashID(a1.ID), bearer); code != 400 {
		t.Errorf("revoke by hash without sub: %d, want 400", code)
	}
	if code, body, _ := f.do(t, http.MethodDelete, "/admin/sessions/"+admin.HashID(a1.ID)+"?sub=alice", bearer); code != 200 {
		t.Errorf("revoke by hash: %d %v", code, body)
	}
	if _, err := f.store.Get(t.Context(), a1.ID); err == nil {
		t.Error("session alive after revoke by hash")
	}
	if code, _, _ := f.do(t, http.MethodDelete, "/admin/sessions/"+admin.HashID(a1.ID)+"?sub=alice", bearer); code != 404 {
		t.Errorf("second revoke by hash: %d, want 404", code)
	}
	// By raw id.
	if code, body, _ := f.do(t, http.MethodDelete, "/admin/sessions/"+slash.ID, bearer); code != 200 {
		t.Errorf("revoke by id: %d %v", code, body)
	}
	if code, _, _ := f.do(t, http.MethodDelete, "/admin/sessions/"+session.NewID(), bearer); code != 404 {
		t.Errorf("revoke unknown id: %d, want 404", code)
	}

	// Offboarding: all sessions, and bearer tokens issued before now.
	before := time.Now()
	code, body, _ = f.do(t, http.MethodDelete, "/admin/users/alice/sessions", bearer)
	if code != 200 || body["revoked"] != float64(1) {
		t.Errorf("revoke all: %d %v, want 1 revoked", code, body)
	}
	if _, err := f.store.Get(t.Context(), a2.ID); err == nil {
		t.Error("session alive after revoke all")
	}
	if at, ok := f.store.SubjectRevokedAt(t.Context(), issuer, "alice"); !ok || at.Before(before) {
		t.Errorf("SubjectRevokedAt = %v, %v", at, ok)
	}

	if code, _, _ := f.do(t, http.MethodPost, "/admin/users/alice/devices/forget?iss=https://other.test", bearer); code != 200 {
		t.Errorf("forget devices: %d", code)
	}
	f.mu.Lock()
	if diff := cmp.Diff([]string{"https://other.test alice"}, f.forgot); diff != "" {
		t.Errorf("ForgetDevices calls (-want +got):\n%s", diff)
	}
	f.mu.Unlock()

	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/admin/unknown", 404},
		{http.MethodGet, "/admin/users/alice", 404},
		{http.MethodGet, "/admin/users/alice/sessions/extra", 404},
		{http.MethodPost, "/admin/users/alice/sessions", 405},
		{http.MethodGet, "/admin/sessions/" + a2.ID, 405},
		{http.MethodGet, "/admin/users/" + strings.Repeat("a", 256) + "/sessions", 400},
		{http.MethodGet, "/admin/users/%00/sessions", 400},
		{http.MethodDelete, "/admin/sessions/not-an-id", 400},
	} {
		if code, body, _ := f.do(t, tc.method, tc.path, bearer); code != tc.want {
			t.Errorf("%s %s: %d %v, want %d", tc.method, tc.path, code, body, tc.want)
		}
	}

	var actions []string
	for _, e := range f.audit() {
		if e.OK {
			actions = append(actions, e.Action+" "+e.Sub)
		}
	}
	want := []string{
		admin.ActionList + " alice", admin.ActionList + " team/bob", admin.ActionRevoke + " alice",
		admin.ActionRevoke + " team/bob", admin.ActionRevokeAll + " alice", admin.ActionForgetDevices + " alice",
	}
	if diff := cmp.Diff(want, actions); diff != "" {
		t.Errorf("successful audit events (-want +got):\n%s", diff)
	}
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{
		"/admin/users/alice/sessions", "/admin/users/a%2Fb/sessions", "/admin/sessions/0123456789abcdef",
		"/admin/users/x/devices/forget", "/admin/users//sessions", "/admin/%", "/other",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		r, err := admin.ParsePath(p)
		if err != nil {
			return
		}
		if r.Kind == admin.RouteUnknown {
			t.Fatalf("%q parsed to an unknown route without error", p)
		}
		if len(r.Subject) > admin.MaxSubjectLen || (r.Kind != admin.RouteSession && r.Subject == "") {
			t.Fatalf("%q: subject %q", p, r.Subject)
		}
		if r.Kind == admin.RouteSession && len(r.Ref) != 16 && len(r.Ref) != session.IDLen {
			t.Fatalf("%q: ref %q", p, r.Ref)
		}
	})
}
