package main

import (
	"github.com/edgeauth/edgeauth/internal/wstest"
	"io"
	"net/url"
	"strings"
	"testing"

	"github.com/edgeauth/edgeauth/internal/e2etest"
)

// A WebSocket on a protected route goes through the whole pipeline: the
// handshake needs a session, carries the user's identity (and never a
// client-sent one) to the app, and then frames flow both ways.
func TestWebSocketThroughAuthPipeline(t *testing.T) {
	t.Parallel()
	ws := wstest.Start(t, nil)
	wsURL := ws.URL
	tmpl := strings.Replace(e2etest.DefaultConfig, "  - name: app\n", `  - name: ws
    path: /ws/
    upstream: "`+wsURL+`"
  - name: app
`, 1)
	s := e2etest.StartStack(t, tmpl)
	c := e2etest.NewClient(t)
	loginAs(t, s, c, "/", "alice", "alice-password", "")
	u, _ := url.Parse(s.Edgeauth.URL)
	var cookie string
	for _, ck := range c.Jar.Cookies(u) {
		cookie += ck.Name + "=" + ck.Value + "; "
	}

	// Without a session: a clean 401, and the app never sees the upgrade.
	_, _, head := wstest.Dial(t, u.Host, "/ws/chat")
	if !strings.HasPrefix(head, "HTTP/1.1 401") {
		t.Fatalf("anonymous upgrade:\n%s", head)
	}

	// The session cookie from another client stack (no User-Agent): the
	// cookie moved to another device, so risk asks for a step-up (an API
	// style 401 with RFC 9470's error) instead of letting it through.
	_, _, head = wstest.Dial(t, u.Host, "/ws/chat", "Cookie: "+cookie)
	if !strings.HasPrefix(head, "HTTP/1.1 401") || !strings.Contains(head, "insufficient_user_authentication") {
		t.Fatalf("session cookie from another device:\n%s", head)
	}

	// The same browser that signed in (same User-Agent).
	conn, br, head := wstest.Dial(t, u.Host, "/ws/chat", "Cookie: "+cookie, "User-Agent: "+e2etest.UserAgent, "X-Auth-Request-User: mallory")
	if !strings.HasPrefix(head, "HTTP/1.1 101") || !strings.Contains(head, wstest.SampleAccept) {
		t.Fatalf("signed-in upgrade:\n%s", head)
	}
	msg := "hello over the tunnel"
	if _, err := conn.Write(wstest.MaskedText(msg)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 2+len(msg))
	if _, err := io.ReadFull(br, got); err != nil {
		t.Fatal(err)
	}
	if string(got[2:]) != msg {
		t.Fatalf("echo %q, want %q", got[2:], msg)
	}
	var users []string
	for _, h := range ws.Handshakes() {
		users = append(users, strings.Join(h.Values("X-Auth-Request-User"), ","))
	}
	if len(users) != 1 || users[0] != "u-alice" {
		t.Fatalf("identity at the app's handshakes: %q, want exactly [u-alice]", users)
	}
}
