//go:build linux

package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Procs starts the servers of one harness run and stops every one of them,
// by PID, however the run ends. Each child gets its own process group (so a
// terminal's ^C reaches only the harness, which then stops them in order)
// and a parent-death signal, so even a SIGKILLed harness leaves nothing
// behind. The load and Redis harnesses share it.
type Procs struct {
	// Dir receives one log file per process.
	Dir string

	mu     sync.Mutex
	list   []*Proc
	handed map[string]bool // addresses FreeAddr returned
}

// Proc is one started process.
type Proc struct {
	Name string
	// Log is the file holding its stdout and stderr.
	Log  string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, valid after done
}

// Start runs bin with args and extra environment env, pinned to cpu when
// cpu >= 0 (taskset execs the program, so the PID is the server's own).
func (p *Procs) Start(name string, cpu int, env []string, bin string, args ...string) (*Proc, error) {
	logPath := filepath.Join(p.Dir, name+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("bench: %s: %w", name, err)
	}
	defer lf.Close() // the child has its own copy of the descriptor
	var cmd *exec.Cmd
	if cpu >= 0 {
		cmd = exec.Command("taskset", append([]string{"-c", strconv.Itoa(cpu), bin}, args...)...)
	} else {
		cmd = exec.Command(bin, args...)
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start %s: %w", name, err)
	}
	pr := &Proc{Name: name, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		pr.err = cmd.Wait()
		close(pr.done)
	}()
	p.mu.Lock()
	p.list = append(p.list, pr)
	p.mu.Unlock()
	return pr, nil
}

// PID is the process id.
func (pr *Proc) PID() int { return pr.cmd.Process.Pid }

// Done is closed when the process has exited.
func (pr *Proc) Done() <-chan struct{} { return pr.done }

// Exited reports whether the process has exited.
func (pr *Proc) Exited() bool {
	select {
	case <-pr.done:
		return true
	default:
		return false
	}
}

// WaitListening polls addr until it accepts a connection, the process
// exits, or the deadline passes.
func (pr *Proc) WaitListening(ctx context.Context, addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-pr.done:
			return fmt.Errorf("bench: %s exited before listening on %s (%v); log: %s", pr.Name, addr, pr.err, Tail(pr.Log))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: %s not listening on %s after %s; log: %s", pr.Name, addr, within, Tail(pr.Log))
		}
	}
}

// StopAll stops every started process, newest first: SIGTERM to its PID,
// then SIGKILL to the process group it leads if it has not exited within
// grace (nginx's worker is in that group).
func (p *Procs) StopAll(grace time.Duration) []error {
	p.mu.Lock()
	list := p.list
	p.list = nil
	p.mu.Unlock()
	var errs []error
	for i := len(list) - 1; i >= 0; i-- {
		pr := list[i]
		pid := pr.PID()
		if pr.Exited() {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-pr.done:
		case <-time.After(grace):
			errs = append(errs, fmt.Errorf("bench: %s (pid %d) ignored SIGTERM for %s; killed", pr.Name, pid, grace))
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			<-pr.done
		}
		// A master that exited may leave a worker behind in its group.
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	return errs
}

// FreeAddr returns a loopback address whose port was free a moment ago and
// that this run has not handed out before: the kernel may give a released
// port out again, and two of our servers must not race for it. The child
// binds it a moment later; a collision makes WaitListening fail loudly
// rather than measure the wrong server.
func (p *Procs) FreeAddr() (string, error) {
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", fmt.Errorf("bench: free port: %w", err)
		}
		a := ln.Addr().String()
		ln.Close()
		p.mu.Lock()
		if p.handed == nil {
			p.handed = map[string]bool{}
		}
		seen := p.handed[a]
		p.handed[a] = true
		p.mu.Unlock()
		if !seen {
			return a, nil
		}
	}
	return "", fmt.Errorf("bench: no unused free port after 100 tries")
}

// Tail returns the last part of a log file for error messages.
func Tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 800 {
		s = "…" + s[len(s)-800:]
	}
	return s
}
