package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
