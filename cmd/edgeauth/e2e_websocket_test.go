package main

import (
	"bufio"
	"crypto/sha1" //nolint:gosec // RFC 6455 fixes SHA-1 for the accept key
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeauth/edgeauth/internal/e2etest"
)

// wsEchoUpstream is a minimal RFC 6455 app: it records the identity header
// of each handshake, answers 101 and echoes every (small, masked) frame.
func wsEchoUpstream(t *testing.T) (string, func() []string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var mu sync.Mutex
	var users []string
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				mu.Lock()
				users = append(users, strings.Join(req.Header.Values("X-Auth-Request-User"), ","))
				mu.Unlock()
				sum := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")) //nolint:gosec // RFC 6455
				io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+
					base64.StdEncoding.EncodeToString(sum[:])+"\r\n\r\n")
				for {
					var hdr [2]byte
					if _, err := io.ReadFull(br, hdr[:]); err != nil {
						return
					}
					n := int(hdr[1] & 0x7f)
					var mask [4]byte
					io.ReadFull(br, mask[:])
					p := make([]byte, n)
					io.ReadFull(br, p)
					for i := range p {
						p[i] ^= mask[i%4]
					}
					c.Write(append([]byte{hdr[0], byte(n)}, p...))
				}
			}(c)
		}
	}()
	return "http://" + ln.Addr().String(), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), users...)
	}
}

// wsDial sends a WebSocket handshake with extra header lines and returns
// the connection, its reader and the response head.
func wsDial(t *testing.T, addr, path string, extra ...string) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	for _, h := range extra {
		req += h + "\r\n"
	}
	io.WriteString(c, req+"\r\n")
	br := bufio.NewReader(c)
	var head strings.Builder
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("handshake: %v (%q)", err, head.String())
		}
		head.WriteString(l)
		if l == "\r\n" {
			return c, br, head.String()
		}
	}
}

// A WebSocket on a protected route goes through the whole pipeline: the
// handshake needs a session, carries the user's identity (and never a
// client-sent one) to the app, and then frames flow both ways.
func TestWebSocketThroughAuthPipeline(t *testing.T) {
	t.Parallel()
	wsURL, seen := wsEchoUpstream(t)
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
	_, _, head := wsDial(t, u.Host, "/ws/chat")
	if !strings.HasPrefix(head, "HTTP/1.1 401") {
		t.Fatalf("anonymous upgrade:\n%s", head)
	}

	// The session cookie from another client stack (no User-Agent): the
	// cookie moved to another device, so risk asks for a step-up (an API
	// style 401 with RFC 9470's error) instead of letting it through.
	_, _, head = wsDial(t, u.Host, "/ws/chat", "Cookie: "+cookie)
	if !strings.HasPrefix(head, "HTTP/1.1 401") || !strings.Contains(head, "insufficient_user_authentication") {
		t.Fatalf("session cookie from another device:\n%s", head)
	}

	// The same browser that signed in (same User-Agent).
	conn, br, head := wsDial(t, u.Host, "/ws/chat", "Cookie: "+cookie, "User-Agent: "+e2etest.UserAgent, "X-Auth-Request-User: mallory")
	if !strings.HasPrefix(head, "HTTP/1.1 101") || !strings.Contains(head, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") {
		t.Fatalf("signed-in upgrade:\n%s", head)
	}
	msg := "hello over the tunnel"
	frame := []byte{0x81, 0x80 | byte(len(msg)), 1, 2, 3, 4}
	for i := range len(msg) {
		frame = append(frame, msg[i]^[4]byte{1, 2, 3, 4}[i%4])
	}
	if _, err := conn.Write(frame); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 2+len(msg))
	if _, err := io.ReadFull(br, got); err != nil {
		t.Fatal(err)
	}
	if string(got[2:]) != msg {
		t.Fatalf("echo %q, want %q", got[2:], msg)
	}
	if users := seen(); len(users) != 1 || users[0] != "u-alice" {
		t.Fatalf("identity at the app's handshakes: %q, want exactly [u-alice]", users)
	}
}
