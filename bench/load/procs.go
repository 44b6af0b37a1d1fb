package main

import (
	"context"
	"errors"
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

// procs starts the servers of one harness run and stops every one of them,
// by PID, however the run ends. Each child gets its own process group (so a
// terminal's ^C reaches only the harness, which then stops them in order)
// and a parent-death signal, so even a SIGKILLed harness leaves nothing
// behind.
type procs struct {
	dir  string // logs go here
	mu   sync.Mutex
	list []*proc
}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, valid after done
	log  string
}

// start runs bin with args, pinned to cpu when cpu >= 0 (taskset execs the
// program, so the PID is the server's own).
func (p *procs) start(name string, cpu int, env []string, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(p.dir, name+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("load: %s: %w", name, err)
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
		return nil, fmt.Errorf("load: start %s: %w", name, err)
	}
	pr := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() {
		pr.err = cmd.Wait()
		close(pr.done)
	}()
	p.mu.Lock()
	p.list = append(p.list, pr)
	p.mu.Unlock()
	return pr, nil
}

// pid is the server's process id.
func (pr *proc) pid() int { return pr.cmd.Process.Pid }

// waitListening polls addr until it accepts a connection, the process
// exits, or the deadline passes.
func (pr *proc) waitListening(ctx context.Context, addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-pr.done:
			return fmt.Errorf("load: %s exited before listening on %s (%v); log: %s", pr.name, addr, pr.err, tail(pr.log))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("load: %s not listening on %s after %s; log: %s", pr.name, addr, within, tail(pr.log))
		}
	}
}

// stopAll stops every started process, newest first: SIGTERM to its PID,
// then SIGKILL to the process group it leads if it has not exited within
// grace (nginx's worker is in that group).
func (p *procs) stopAll(grace time.Duration) []error {
	p.mu.Lock()
	list := p.list
	p.list = nil
	p.mu.Unlock()
	var errs []error
	for i := len(list) - 1; i >= 0; i-- {
		pr := list[i]
		pid := pr.pid()
		select {
		case <-pr.done:
			continue
		default:
		}
		_ = syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-pr.done:
		case <-time.After(grace):
			errs = append(errs, fmt.Errorf("load: %s (pid %d) ignored SIGTERM for %s; killed", pr.name, pid, grace))
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			<-pr.done
		}
		// A master that exited may leave a worker behind in its group.
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	return errs
}

// freeAddr returns a loopback address with a port free at the time of the
// call. The child binds it a moment later; a collision makes waitListening
// fail loudly rather than measure the wrong server.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("load: free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// tail returns the last lines of a log file for error messages.
func tail(path string) string {
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

// children lists the PIDs of pid's child processes (nginx workers).
func children(pid int) ([]int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil, fmt.Errorf("load: children of %d: %w", pid, err)
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("load: children of %d: %w", pid, err)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("load: no child processes")
	}
	return out, nil
}
