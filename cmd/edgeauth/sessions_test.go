package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/edgeauth/edgeauth/middleware/session"
	"github.com/edgeauth/edgeauth/middleware/session/admin"
	"github.com/edgeauth/edgeauth/middleware/session/redisstore"
	"github.com/edgeauth/edgeauth/middleware/session/redisstore/redistest"
)

// TestSessionsCLIRoundTrip drives the CLI against the real admin handler
// on a loopback listener, backed by a real Redis store.
func TestSessionsCLIRoundTrip(t *testing.T) {
	const token = "cli-test-token-0123456789abcdef0123"
	const iss = "https://idp.test"
	srv := redistest.Start(t, redistest.Options{})
	st, err := redisstore.New(t.Context(), redisstore.Options{
		Addrs: []string{srv.Addr}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var forgot []string
	h, err := admin.New(admin.Options{Store: st, Token: []byte(token), Issuer: iss,
		ForgetDevices: func(_ context.Context, iss, sub string) error { forgot = append(forgot, sub); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := &fasthttp.Server{Handler: h.Handle}
	go fs.Serve(ln)
	t.Cleanup(func() { fs.Shutdown() })
	adminURL := "http://" + ln.Addr().String()
	tokenFile := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	now := time.Now()
	put := func(sub string) *session.Session {
		s := &session.Session{ID: session.NewID(), Issuer: iss, Subject: sub, CreatedAt: now, LastSeen: now,
			ExpiresAt: now.Add(time.Hour), IP: "198.51.100.9", Country: "DE", DeviceID: "d"}
		if err := st.Put(t.Context(), s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	a1, a2, b := put("alice"), put("alice"), put("dept/bob")

	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := sessionsCommand(append(args, "-admin", adminURL, "-token-file", tokenFile), &out, &errb)
		return code, out.String(), errb.String()
	}

	code, out, errOut := run("list", "-sub", "alice")
	if code != 0 || !strings.Contains(out, admin.HashID(a1.ID)) || !strings.Contains(out, admin.HashID(a2.ID)) || !strings.Contains(out, "198.51.100.9") {
		t.Fatalf("list: %d %q %q", code, out, errOut)
	}
	if strings.Contains(out, a1.ID) {
		t.Errorf("list prints a raw session id")
	}
	if code, out, _ := run("list", "-sub", "dept/bob", "-json"); code != 0 || !strings.Contains(out, admin.HashID(b.ID)) {
		t.Errorf("list dept/bob: %d %q", code, out)
	}
	if code, _, errOut := run("revoke", "-id", admin.HashID(a1.ID), "-sub", "alice"); code != 0 {
		t.Errorf("revoke by hash: %d %q", code, errOut)
	}
	if code, _, errOut := run("revoke", "-id", admin.HashID(a1.ID), "-sub", "alice"); code != 1 || !strings.Contains(errOut, "HTTP 404") {
		t.Errorf("revoke of a revoked session: %d %q, want 1 and a 404 message", code, errOut)
	}
	if code, out, errOut := run("revoke", "-sub", "alice"); code != 0 || !strings.Contains(out, `"revoked":1`) {
		t.Errorf("revoke all: %d %q %q", code, out, errOut)
	}
	if _, err := st.Get(t.Context(), a2.ID); err == nil {
		t.Error("alice's session alive after revoke -sub")
	}
	if code, _, errOut := run("forget-devices", "-sub", "dept/bob"); code != 0 || len(forgot) != 1 || forgot[0] != "dept/bob" {
		t.Errorf("forget-devices: %d %q %v", code, errOut, forgot)
	}

	// Usage errors exit 2, failures 1.
	for _, args := range [][]string{{}, {"list"}, {"revoke"}, {"frobnicate", "-sub", "x"}, {"list", "-sub", "x", "extra"}} {
		var out, errb bytes.Buffer
		if code := sessionsCommand(args, &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	var out2, errb bytes.Buffer
	wrong := filepath.Join(t.TempDir(), "wrong.token")
	os.WriteFile(wrong, []byte("not-the-token"), 0o600)
	if code := sessionsCommand([]string{"list", "-sub", "alice", "-admin", adminURL, "-token-file", wrong}, &out2, &errb); code != 1 || !strings.Contains(errb.String(), "HTTP 401") {
		t.Errorf("wrong token: %d %q, want 1 and HTTP 401", code, errb.String())
	}
	t.Setenv("EDGEAUTH_ADMIN_TOKEN", token)
	out2.Reset()
	if code := sessionsCommand([]string{"list", "-sub", "alice", "-admin", adminURL}, &out2, &errb); code != 0 || !strings.Contains(out2.String(), "no active sessions") {
		t.Errorf("list with token from env: %d %q", code, out2.String())
	}
	t.Setenv("EDGEAUTH_ADMIN_TOKEN", "")
	if code := sessionsCommand([]string{"list", "-sub", "alice", "-admin", adminURL}, &out2, &errb); code != 2 {
		t.Errorf("no token: exit %d, want 2", code)
	}
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := "http://" + ln2.Addr().String()
	ln2.Close()
	if code := sessionsCommand([]string{"list", "-sub", "alice", "-admin", closed, "-token-file", tokenFile}, &out2, &errb); code != 1 {
		t.Errorf("unreachable admin API: exit %d, want 1", code)
	}
}
