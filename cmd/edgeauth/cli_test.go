package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/edgeauth/edgeauth/config"
	"github.com/edgeauth/edgeauth/middleware/audit"
	"github.com/edgeauth/edgeauth/middleware/session"
	"github.com/edgeauth/edgeauth/middleware/session/admin"
)

func TestValidateCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "routes:\n  - {name: app, path: /, upstream: \"http://127.0.0.1:9\", auth: none}\n")
	bad := write("bad.yaml", "listen: \"127.0.0.1:8080\"\nroutes:\n  - name: app\n    upstram: \"http://127.0.0.1:9\"\n  - name: two\n    upstream: \"htp://x\"\n    auth: none\n")
	tests := []struct {
		name        string
		args        []string
		code        int
		out, errOut []string
	}{
		{name: "valid", args: []string{"validate", "-config", good}, code: 0, out: []string{"valid (1 routes)"}},
		{name: "every problem with path and line", args: []string{"validate", "-config", bad}, code: 1,
			errOut: []string{`routes[0].upstram: unknown key (did you mean "upstream"?) (line 4)`}},
		{name: "missing file", args: []string{"validate", "-config", filepath.Join(dir, "nope.yaml")}, code: 1, errOut: []string{"nope.yaml"}},
		{name: "no -config", args: []string{"validate"}, code: 2, errOut: []string{"Usage: edgeauth validate -config FILE"}},
		{name: "stray argument", args: []string{"validate", "-config", good, "extra"}, code: 2, errOut: []string{"Usage:"}},
		{name: "run without -config", args: []string{"run"}, code: 2, errOut: []string{"Usage: edgeauth run -config FILE"}},
		{name: "run with an invalid config", args: []string{"run", "-config", bad}, code: 1, errOut: []string{"upstram"}},
		{name: "unknown command", args: []string{"serve"}, code: 2, errOut: []string{`unknown command "serve"`}},
		{name: "help", args: []string{"help"}, code: 0, out: []string{"edgeauth run ", "edgeauth demo", "edgeauth sessions"}},
		{name: "version", args: []string{"version"}, code: 0, out: []string{"edgeauth "}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			if code := runMain(tc.args, &stdout, &stderr); code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, &stdout, &stderr)
			}
			for _, want := range tc.out {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("stdout lacks %q:\n%s", want, &stdout)
				}
			}
			for _, want := range tc.errOut {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, &stderr)
				}
			}
		})
	}
}

// The profiler is on the admin listener behind the admin token: it shows
// memory and goroutine stacks, which must not be public.
func TestPprofNeedsAdminToken(t *testing.T) {
	t.Parallel()
	token := strings.Repeat("a", 40)
	doc := "admin: {listen: \"127.0.0.1:0\", token: \"" + token + "\"}\nroutes:\n  - {name: app, path: /, upstream: \"http://127.0.0.1:9\", auth: none}\n"
	cfg, err := config.Parse([]byte(doc), "t.yaml", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	svc, err := newServices(context.Background(), cfg, logger, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	h := svc.adminHandlers()["/debug/pprof/"]
	if h == nil {
		t.Fatal("no profiler on the admin listener")
	}
	for _, tc := range []struct {
		auth string
		want int
	}{
		{"", fasthttp.StatusUnauthorized},
		{"Bearer wrong", fasthttp.StatusUnauthorized},
		{"Bearer " + token, fasthttp.StatusOK},
	} {
		var ctx fasthttp.RequestCtx
		ctx.Request.SetRequestURI("/debug/pprof/")
		if tc.auth != "" {
			ctx.Request.Header.Set("Authorization", tc.auth)
		}
		h(&ctx)
		if got := ctx.Response.StatusCode(); got != tc.want {
			t.Errorf("Authorization %q: status %d, want %d", tc.auth, got, tc.want)
		}
	}
}

// Security teams match an audit event's session to a log line and to the
// admin API's session list: all three must print a session id the same
// way. audit cannot import session, so it keeps its own copy.
func TestSessionHashesCorrelate(t *testing.T) {
	t.Parallel()
	id := session.NewID()
	if a, s, ad := audit.HashID(id), session.HashID(id), admin.HashID(id); a != s || s != ad {
		t.Fatalf("audit %q, session %q, admin %q for the same id", a, s, ad)
	}
}
