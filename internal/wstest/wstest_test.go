package wstest

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestEchoAndGreeting(t *testing.T) {
	s := Start(t, []byte("\x81\x02hi"))
	c, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Test: 1\r\n\r\n")
	br := bufio.NewReader(c)
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(l, "Sec-WebSocket-Accept:") && !strings.Contains(l, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") {
			t.Fatalf("accept key: %q (RFC 6455 §1.3 example)", l)
		}
		if l == "\r\n" {
			break
		}
	}
	greet := make([]byte, 4)
	if _, err := io.ReadFull(br, greet); err != nil || string(greet) != "\x81\x02hi" {
		t.Fatalf("greeting %q, %v", greet, err)
	}
	c.Write(MaskedText("ping"))
	got := make([]byte, 6)
	if _, err := io.ReadFull(br, got); err != nil || string(got[2:]) != "ping" {
		t.Fatalf("echo %q, %v", got, err)
	}
	if hs := s.Handshakes(); len(hs) != 1 || hs[0].Get("X-Test") != "1" {
		t.Fatalf("handshakes %v", hs)
	}
}
