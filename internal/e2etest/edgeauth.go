package e2etest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// Edgeauth is a running `edgeauth run -config FILE` process.
type Edgeauth struct {
	// URL is the main listener, http://127.0.0.1:PORT (from listen:).
	URL string
	// AdminURL is the admin listener, http://127.0.0.1:PORT (from
	// admin.listen:); "" when the config has none.
	AdminURL string
	// ConfigPath is the config file, alone in a directory of its own
	// (edgeauth watches the directory: WriteConfig reloads).
	ConfigPath string
	// Proc is the current process; Restart replaces it.
	Proc *Proc

	env       []string
	waitDisc  bool // wait for discovery in WaitReady
	hasIssuer bool // the config has oidc.issuer
}

// EdgeauthOptions configure StartEdgeauthWith.
type EdgeauthOptions struct {
	// Env holds extra "K=V" environment entries for the process, e.g. for
	// ${VAR} references in the config. Zero: the test's environment only.
	Env []string
	// NoDiscoveryWait skips waiting for OIDC provider discovery (set it
	// when the provider is down on purpose). Zero: when the config has an
	// oidc.issuer, readiness also waits for edgeauth to log
	// "sso: provider discovered", because /readyz does not cover
	// discovery and logins get 503 until it is done.
	NoDiscoveryWait bool
}

// StartEdgeauth writes configYAML to a temporary file, runs edgeauth with
// it, and waits (StartTimeout) until admin /readyz answers 200 — or, when
// the config has no admin listener, until the main listener accepts
// connections — and, for a config with oidc.issuer, until edgeauth logged
// DiscoveredLog (see EdgeauthOptions.NoDiscoveryWait). The config must name its listeners with known 127.0.0.1
// ports (use FreePort); plain HTTP only. t.Cleanup stops the process.
func StartEdgeauth(t testing.TB, configYAML string) *Edgeauth {
	t.Helper()
	return StartEdgeauthWith(t, configYAML, EdgeauthOptions{})
}

// StartEdgeauthWith is StartEdgeauth with options.
func StartEdgeauthWith(t testing.TB, configYAML string, o EdgeauthOptions) *Edgeauth {
	t.Helper()
	e := &Edgeauth{env: o.Env, waitDisc: !o.NoDiscoveryWait, ConfigPath: filepath.Join(t.TempDir(), "edgeauth.yaml")}
	e.writeConfig(t, configYAML)
	e.start(t)
	return e
}

// WriteConfig replaces the config file (atomically, by rename) with
// configYAML. A running edgeauth notices the change and reloads; the
// listeners must stay the same.
func (e *Edgeauth) WriteConfig(t testing.TB, configYAML string) {
	t.Helper()
	e.writeConfig(t, configYAML)
}

func (e *Edgeauth) writeConfig(t testing.TB, configYAML string) {
	t.Helper()
	listen, admin, issuer, err := listeners(configYAML, e.env)
	if err != nil {
		t.Fatalf("e2etest: %v", err)
	}
	e.hasIssuer = issuer != ""
	if e.URL != "" && (e.URL != "http://"+listen || e.AdminURL != adminURL(admin)) {
		t.Fatalf("e2etest: WriteConfig cannot move the listeners (%s, admin %s)", e.URL, e.AdminURL)
	}
	e.URL, e.AdminURL = "http://"+listen, adminURL(admin)
	tmp := e.ConfigPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(configYAML), 0o600); err != nil {
		t.Fatalf("e2etest: write config: %v", err)
	}
	if err := os.Rename(tmp, e.ConfigPath); err != nil {
		t.Fatalf("e2etest: write config: %v", err)
	}
}

func adminURL(listen string) string {
	if listen == "" {
		return ""
	}
	return "http://" + listen
}

// listeners reads listen and admin.listen from a config document,
// expanding ${VAR} like edgeauth does.
func listeners(doc string, env []string) (listen, admin, issuer string, err error) {
	var c struct {
		Listen string `yaml:"listen"`
		Admin  struct {
			Listen string `yaml:"listen"`
		} `yaml:"admin"`
		OIDC struct {
			Issuer string `yaml:"issuer"`
		} `yaml:"oidc"`
	}
	if err := yaml.Unmarshal([]byte(doc), &c); err != nil {
		return "", "", "", fmt.Errorf("config YAML: %w", err)
	}
	lookup := func(k string) string {
		for i := len(env) - 1; i >= 0; i-- {
			if v, ok := strings.CutPrefix(env[i], k+"="); ok {
				return v
			}
		}
		return os.Getenv(k)
	}
	listen, admin = os.Expand(c.Listen, lookup), os.Expand(c.Admin.Listen, lookup)
	for _, a := range []string{listen, admin} {
		if a == "" {
			continue
		}
		host, port, err := net.SplitHostPort(a)
		if err != nil || host != "127.0.0.1" || port == "0" {
			return "", "", "", fmt.Errorf("config: listeners must be 127.0.0.1 with a known port (use FreePort), got %q", a)
		}
	}
	if listen == "" {
		return "", "", "", fmt.Errorf("config: listen is required")
	}
	return listen, admin, c.OIDC.Issuer, nil
}

func (e *Edgeauth) start(t testing.TB) {
	t.Helper()
	e.Proc = StartProc(t, "edgeauth", Binary(t), []string{"run", "-config", e.ConfigPath}, e.env)
	e.WaitReady(t)
}

// WaitReady waits (StartTimeout) until edgeauth is ready as StartEdgeauth
// describes and, unless NoDiscoveryWait, has discovered its OIDC provider;
// it fails the test if the process exits first.
func (e *Edgeauth) WaitReady(t testing.TB) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 2 * time.Second}
	defer c.CloseIdleConnections()
	probe := func() bool {
		if e.AdminURL == "" {
			conn, err := net.DialTimeout("tcp", strings.TrimPrefix(e.URL, "http://"), time.Second)
			if err != nil {
				return false
			}
			conn.Close()
			return true
		}
		resp, err := c.Get(e.AdminURL + "/readyz")
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	err := pollUntil(context.Background(), StartTimeout, 25*time.Millisecond, e.Proc.Done(), probe)
	if err != nil {
		t.Fatalf("e2etest: edgeauth (pid %d) not ready: %v; output:\n%s", e.Proc.PID(), err, tail(e.Proc.Output(), 8<<10))
	}
	if e.waitDisc && e.hasIssuer {
		e.Proc.WaitOutput(t, DiscoveredLog, StartTimeout)
	}
}

// DiscoveredLog is what edgeauth logs once OIDC discovery succeeded.
const DiscoveredLog = "sso: provider discovered"

// Reload sends SIGHUP: edgeauth reads its config file again and keeps the
// previous config serving if the new one is invalid.
func (e *Edgeauth) Reload(t testing.TB) {
	t.Helper()
	if err := e.Proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatalf("e2etest: reload: %v", err)
	}
}

// Restart stops edgeauth with SIGTERM (it drains and, when configured,
// writes its session snapshot), fails the test if it did not exit cleanly,
// and starts it again with the same config file and environment.
func (e *Edgeauth) Restart(t testing.TB) {
	t.Helper()
	if err := e.Proc.Stop(); err != nil {
		t.Fatalf("e2etest: edgeauth (pid %d) did not stop cleanly: %v; output:\n%s", e.Proc.PID(), err, tail(e.Proc.Output(), 8<<10))
	}
	e.start(t)
}

// Output is the current process's log output.
func (e *Edgeauth) Output() string { return e.Proc.Output() }

// pollUntil calls ok every interval until it returns true, the timeout
// passes, ctx ends or abort is closed.
func pollUntil(ctx context.Context, timeout, interval time.Duration, abort <-chan struct{}, ok func() bool) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if ok() {
			return nil
		}
		select {
		case <-tick.C:
		case <-abort:
			if ok() {
				return nil
			}
			return fmt.Errorf("process exited")
		case <-deadline.C:
			return fmt.Errorf("timed out after %s", timeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Eventually polls cond every 20ms until it returns true, failing the test
// with msg after timeout. It is the kit's answer to "wait until": no bare
// sleeps.
func Eventually(t testing.TB, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	if err := pollUntil(context.Background(), timeout, 20*time.Millisecond, nil, cond); err != nil {
		t.Fatalf("e2etest: %s: %v", msg, err)
	}
}
