// Package e2etest is the kit for real-process end-to-end tests of edgeauth:
// it builds the edgeauth binary once per test process, runs the development
// OIDC provider (`edgeauth idp`) and edgeauth itself (`edgeauth run`) as
// child processes, serves a recording upstream in-process, and drives the
// browser login flow over plain HTTP with a cookie jar.
//
// Quickest start: StartStack renders a config template (DefaultConfig is
// one: public /public/, admins-only /admin/, everything else protected)
// with free ports, a fresh session key, the provider's issuer and the
// upstream's URL, and starts all three:
//
//	s := e2etest.StartStack(t, e2etest.DefaultConfig)
//	c := e2etest.NewClient(t) // cookie jar, does not follow redirects
//	resp, err := e2etest.Login(t, c, s.Edgeauth.URL+"/reports/q3?view=full",
//		"alice", "alice-password", "", http.Header{"X-Forwarded-For": {"81.2.69.142"}})
//	// resp is the upstream's answer: a JSON e2etest.Echo of the identity headers.
//	s.Upstream.Requests() // every request the app received, headers included
//	s.Edgeauth.Restart(t) // SIGTERM, drain, start again on the same ports
//	s.IDP.Proc.Kill()     // take the provider away mid-flight
//
// The pieces work alone too: Binary, FreePort, StartProc, StartIDP,
// StartEdgeauth / StartEdgeauthWith (the config must name 127.0.0.1
// listeners with known ports), StartUpstream / StartUpstreamHandler,
// NewClient, Do, Navigate, Login, Cookie, Eventually.
//
// Users of the development provider: alice/alice-password (groups staff,
// admins), bob/bob-password (group contractors), MFA code MFACode.
//
// A package using the kit should remove the built binary afterwards (in
// cmd/edgeauth this TestMain lives in e2e_sso_test.go; do not add another):
//
//	func TestMain(m *testing.M) { code := m.Run(); e2etest.RemoveBinary(); os.Exit(code) }
//
// Contract:
//   - Every process listens on 127.0.0.1 only. Every child is stopped by its
//     own PID in t.Cleanup (SIGTERM, then SIGKILL after StopTimeout) and is
//     killed by the kernel if the test process dies (Linux Pdeathsig).
//   - Every wait is bounded by a deadline and fails the test with the
//     child's captured output, never hangs. Nothing sleeps to wait for a
//     condition: waits are woken by output or by polling with a deadline.
//   - Failures are reported with t.Fatal from the test goroutine; helpers
//     must therefore be called from the goroutine running the test.
//   - When a test fails, the output of every child it started is logged.
//
// Trust boundary: this is test code. It trusts the binary it builds and
// nothing it receives from the processes it drives: every response is
// checked by the caller. HTTP clients ignore proxy environment variables
// so that loopback traffic never leaves the machine.
package e2etest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

// Deadlines used by the kit. Generous because two cores are shared with
// other builds; a healthy start takes well under a second.
const (
	// BuildTimeout bounds `go build ./cmd/edgeauth`.
	BuildTimeout = 3 * time.Minute
	// StartTimeout bounds the wait for a child to report it is ready.
	StartTimeout = 30 * time.Second
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL.
	StopTimeout = 10 * time.Second
)

var build struct {
	once sync.Once
	path string
	err  error
}

// Binary returns the path of an edgeauth binary built from this module's
// ./cmd/edgeauth, building it on the first call of the test process. The
// binary lives in a temporary directory that RemoveBinary deletes (call it
// from TestMain after m.Run; otherwise the OS temp cleaner does).
func Binary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() { build.path, build.err = buildBinary() })
	if build.err != nil {
		t.Fatalf("e2etest: %v", build.err)
	}
	return build.path
}

// RemoveBinary deletes the directory of the binary Binary built, if any.
// Meant for TestMain, after m.Run.
func RemoveBinary() {
	if build.path != "" {
		_ = os.RemoveAll(filepath.Dir(build.path))
	}
}

// ModuleRoot returns the directory holding this module's go.mod, found from
// this source file's location so it works whatever the test's working
// directory is.
func ModuleRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("e2etest: cannot locate source file")
	}
	// file is <root>/internal/e2etest/e2etest.go
	root := filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return "", fmt.Errorf("e2etest: module root: %w", err)
	}
	return root, nil
}

func buildBinary() (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	dir, err := os.MkdirTemp("", "edgeauth-e2e-bin-")
	if err != nil {
		return "", fmt.Errorf("build: %w", err)
	}
	out := filepath.Join(dir, "edgeauth")
	cmd := exec.Command(goTool, "build", "-o", out, "./cmd/edgeauth")
	cmd.Dir = root
	done := make(chan struct{})
	var combined []byte
	var runErr error
	go func() {
		combined, runErr = cmd.CombinedOutput()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(BuildTimeout):
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
		<-done
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("go build ./cmd/edgeauth: timed out after %s", BuildTimeout)
	}
	if runErr != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("go build ./cmd/edgeauth: %w\n%s", runErr, combined)
	}
	return out, nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. The
// port is released before returning, so another process could take it
// first; the kernel hands out ephemeral ports in sequence, which makes that
// rare enough for tests.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("e2etest: free port: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		t.Fatalf("e2etest: free port: %v", err)
	}
	return port
}
