// Package wstest is a minimal RFC 6455 WebSocket app for tests that check
// upgrades pass through a proxy: it answers the handshake, optionally
// greets in the same write as its 101 head, records each handshake's
// headers, and echoes small masked frames back unmasked. It handles only
// what those tests send (single frames under 126 bytes).
package wstest

import (
	"bufio"
	"crypto/sha1" //nolint:gosec // RFC 6455 fixes SHA-1 for the accept key
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server is a running echo app on 127.0.0.1.
type Server struct {
	// URL is http://127.0.0.1:PORT.
	URL string

	mu         sync.Mutex
	handshakes []http.Header
}

// Start runs an echo app until the test ends. greeting, when not empty, is
// sent in the same write as the 101 head (bytes a proxy reads past the head
// must still reach the client).
func Start(t testing.TB, greeting []byte) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s := &Server{URL: "http://" + ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c, greeting)
		}
	}()
	return s
}

// Handshakes returns the headers of every upgrade request received.
func (s *Server) Handshakes() []http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]http.Header(nil), s.handshakes...)
}

func (s *Server) serve(c net.Conn, greeting []byte) {
	defer c.Close()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	s.mu.Lock()
	s.handshakes = append(s.handshakes, req.Header)
	s.mu.Unlock()
	head := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		AcceptKey(req.Header.Get("Sec-WebSocket-Key")) + "\r\n\r\n"
	if _, err := c.Write(append([]byte(head), greeting...)); err != nil {
		return
	}
	for {
		var hdr [2]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return
		}
		n := int(hdr[1] & 0x7f)
		var mask [4]byte
		if _, err := io.ReadFull(br, mask[:]); err != nil {
			return
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(br, p); err != nil {
			return
		}
		for i := range p {
			p[i] ^= mask[i%4]
		}
		if _, err := c.Write(append([]byte{hdr[0], byte(n)}, p...)); err != nil {
			return
		}
	}
}

// AcceptKey is the Sec-WebSocket-Accept value for key (RFC 6455 §4.2.2).
func AcceptKey(key string) string {
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")) //nolint:gosec // RFC 6455
	return base64.StdEncoding.EncodeToString(sum[:])
}

// MaskedText is a client's text frame carrying msg (under 126 bytes).
func MaskedText(msg string) []byte {
	mask := [4]byte{1, 2, 3, 4}
	frame := append([]byte{0x81, 0x80 | byte(len(msg))}, mask[:]...)
	for i := range len(msg) {
		frame = append(frame, msg[i]^mask[i%4])
	}
	return frame
}

// Dial sends a WebSocket handshake for path to addr, with extra header
// lines ("Name: value"), and returns the connection (closed when the test
// ends), a reader positioned after the response head, and the head.
func Dial(t testing.TB, addr, path string, extra ...string) (net.Conn, *bufio.Reader, string) {
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
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var head strings.Builder
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("wstest: handshake: %v (%q)", err, head.String())
		}
		head.WriteString(l)
		if l == "\r\n" {
			return c, br, head.String()
		}
	}
}

// SampleAccept is the Sec-WebSocket-Accept for the key Dial sends (RFC
// 6455 §1.3's example).
const SampleAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
