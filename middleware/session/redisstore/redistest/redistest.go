// Package redistest starts real redis-server processes for tests: one per
// call, on a free loopback port, with persistence off and a private temp
// directory, stopped by PID when the test ends. Tests of edgeauth run
// against the real Redis that operators run, not a fake; if redis-server is
// not installed the test fails with a message saying how to install it.
//
// Trust boundary: test-only. It binds 127.0.0.1 and nothing else.
package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Options configures a server. The zero value starts an open server.
type Options struct {
	// Password sets requirepass (the "default" user's password). Zero: none.
	Password string
	// ACLUsers are written one per line into an aclfile, in the syntax of
	// ACL SETUSER, e.g. "user app on >secret ~* &* +@all". When set, the
	// default user is disabled unless a line for it is given. Zero: none.
	ACLUsers []string
	// StartTimeout bounds how long Start waits for PING. Zero: 10s.
	StartTimeout time.Duration
}

// Server is a running redis-server owned by one test.
type Server struct {
	// Addr is host:port on 127.0.0.1.
	Addr string

	t    testing.TB
	opts Options
	dir  string
	port int

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Start runs a redis-server and waits until it answers PING. It is stopped
// by t.Cleanup.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redistest: redis-server not found (apt-get install -y redis-server): %v", err)
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 10 * time.Second
	}
	s := &Server{t: t, opts: opts, dir: t.TempDir()}
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		s.port, err = freePort()
		if err != nil {
			continue
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
		if err = s.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(s.Kill)
	return s
}

// freePort asks the kernel for a free loopback port. Another process could
// take it before redis-server binds; Start retries in that case.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) start() error {
	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--daemonize", "no",
		"--logfile", "",
		"--loglevel", "warning",
	}
	if s.opts.Password != "" {
		args = append(args, "--requirepass", s.opts.Password)
	}
	if len(s.opts.ACLUsers) > 0 {
		f := filepath.Join(s.dir, "users.acl")
		if err := os.WriteFile(f, []byte(strings.Join(s.opts.ACLUsers, "\n")+"\n"), 0o600); err != nil {
			return err
		}
		args = append(args, "--aclfile", f)
	}
	cmd := exec.Command("redis-server", args...)
	cmd.Dir = s.dir
	out, err := os.Create(filepath.Join(s.dir, "redis.log"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("start redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); out.Close(); close(done) }()
	deadline := time.Now().Add(s.opts.StartTimeout)
	for {
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			return fmt.Errorf("redis-server on %s exited: %s", s.Addr, log)
		default:
		}
		if err := s.ping(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return errors.New("redis-server did not answer PING on " + s.Addr)
		}
		time.Sleep(10 * time.Millisecond) // poll interval while waiting for the port
	}
	s.mu.Lock()
	s.cmd = cmd
	s.mu.Unlock()
	return nil
}

// ping speaks RESP directly so the helper does not depend on a client
// library. Any reply (PONG, or NOAUTH when a password is set) means the
// server is up.
func (s *Server) ping() error {
	c, err := net.DialTimeout("tcp", s.Addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line == "" {
		return errors.New("empty reply")
	}
	if strings.HasPrefix(line, "-LOADING") {
		return errors.New("loading")
	}
	return nil
}

// Kill stops the server (SIGKILL, by PID) and waits until its port refuses
// connections. Safe to call twice.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for s.ping() == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // poll until the port is closed
	}
}

// Restart starts the server again on the same address after Kill. Data is
// gone (persistence is off), as after a real crash without persistence.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The old socket may linger briefly; retry on the same port.
		if err = s.start(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redistest: restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Do sends one command over a fresh connection and returns the first reply
// line; tests use it to plant raw data (corrupt records) without a client.
// auth, if not empty, is sent first as AUTH arguments.
func (s *Server) Do(ctx context.Context, auth []string, args ...string) (string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	} else {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	}
	r := bufio.NewReader(c)
	send := func(a []string) (string, error) {
		var b strings.Builder
		fmt.Fprintf(&b, "*%d\r\n", len(a))
		for _, x := range a {
			fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(x), x)
		}
		if _, err := c.Write([]byte(b.String())); err != nil {
			return "", err
		}
		line, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		line = strings.TrimRight(line, "\r\n")
		if strings.HasPrefix(line, "-") {
			return "", errors.New(line[1:])
		}
		if strings.HasPrefix(line, "$") {
			n, _ := strconv.Atoi(line[1:])
			if n < 0 {
				return "", nil
			}
			buf := make([]byte, n+2)
			if _, err := io.ReadFull(r, buf); err != nil {
				return "", err
			}
			return string(buf[:n]), nil
		}
		return line, nil
	}
	if len(auth) > 0 {
		if _, err := send(append([]string{"AUTH"}, auth...)); err != nil {
			return "", err
		}
	}
	return send(args)
}
