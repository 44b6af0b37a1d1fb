package e2etest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Proc is a child process started by the kit. Its stdout and stderr are
// captured together in Output. All methods are safe for concurrent use.
type Proc struct {
	name string
	cmd  *exec.Cmd
	out  *notifyBuffer
	done chan struct{} // closed when the process has been waited for
	err  error         // Wait's result; read after done is closed

	stopOnce sync.Once
}

// StartProc starts binary with args (and extra environment entries
// "K=V" appended to the test's environment) and registers a t.Cleanup that
// stops it, logging its output if the test failed. name labels the process
// in messages.
func StartProc(t testing.TB, name, binary string, args []string, env []string) *Proc {
	t.Helper()
	p := &Proc{name: name, out: newNotifyBuffer(), done: make(chan struct{})}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.SysProcAttr = sysProcAttr()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("e2etest: start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.Stop()
		if t.Failed() {
			t.Logf("e2etest: output of %s (pid %d):\n%s", p.name, p.PID(), tail(p.Output(), 16<<10))
		}
	})
	return p
}

// PID is the child's process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Output returns everything the child wrote to stdout and stderr so far.
func (p *Proc) Output() string { return p.out.String() }

// Done is closed once the child has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the child has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err returns the child's exit error (nil for exit status 0) once it has
// exited, and an error saying it is still running otherwise.
func (p *Proc) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return fmt.Errorf("e2etest: %s (pid %d) still running", p.name, p.PID())
	}
}

// Signal sends sig to the child, by its PID only.
func (p *Proc) Signal(sig os.Signal) error {
	if p.Exited() {
		return fmt.Errorf("e2etest: %s (pid %d) already exited", p.name, p.PID())
	}
	return p.cmd.Process.Signal(sig)
}

// Kill ends the child at once (SIGKILL) and waits for it: a crash, not a
// drain. Use it to take a provider away mid-flight.
func (p *Proc) Kill() {
	if !p.Exited() {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

// Stop asks the child to drain (SIGTERM), kills it after StopTimeout, and
// returns its exit error (nil when it exited with status 0 after SIGTERM).
// Stop is idempotent.
func (p *Proc) Stop() error {
	p.stopOnce.Do(func() {
		if p.Exited() {
			return
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(StopTimeout):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	<-p.done
	return p.err
}

// WaitOutput waits until the child's output contains substr and returns
// the output; it fails the test when the child exits first or the timeout
// passes.
func (p *Proc) WaitOutput(t testing.TB, substr string, timeout time.Duration) string {
	t.Helper()
	return p.waitFor(t, fmt.Sprintf("%q", substr), timeout, func(out string) bool { return strings.Contains(out, substr) })
}

// WaitMatch waits until re matches the child's output and returns the
// submatches; it fails the test when the child exits first or the timeout
// passes.
func (p *Proc) WaitMatch(t testing.TB, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	var m []string
	p.waitFor(t, "a match of "+re.String(), timeout, func(out string) bool {
		m = re.FindStringSubmatch(out)
		return m != nil
	})
	return m
}

func (p *Proc) waitFor(t testing.TB, what string, timeout time.Duration, ok func(string) bool) string {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		out, changed := p.out.snapshot()
		if ok(out) {
			return out
		}
		select {
		case <-changed:
		case <-p.done:
			if out := p.Output(); ok(out) {
				return out
			}
			t.Fatalf("e2etest: %s (pid %d) exited (%v) before printing %s; output:\n%s", p.name, p.PID(), p.err, what, tail(p.Output(), 8<<10))
		case <-deadline.C:
			t.Fatalf("e2etest: %s (pid %d) did not print %s within %s; output:\n%s", p.name, p.PID(), what, timeout, tail(p.Output(), 8<<10))
		}
	}
}

// notifyBuffer is a goroutine-safe buffer that wakes waiters on each
// write, so waiting for a line needs no polling.
type notifyBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newNotifyBuffer() *notifyBuffer { return &notifyBuffer{changed: make(chan struct{})} }

// maxCapture bounds what a chatty child can make the test hold.
const maxCapture = 8 << 20

func (b *notifyBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() < maxCapture {
		b.buf.Write(p)
	}
	close(b.changed)
	b.changed = make(chan struct{})
	return len(p), nil
}

func (b *notifyBuffer) String() string {
	s, _ := b.snapshot()
	return s
}

func (b *notifyBuffer) snapshot() (string, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String(), b.changed
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
