package config

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	if data, err := os.ReadFile(examplePath); err == nil {
		f.Add(data)
	}
	f.Add([]byte("routes:\n  - &r {upstream: \"http://127.0.0.1:1\"}\n  - *r\n"))
	f.Add([]byte("a: &a [x, x]\nb: &b [*a, *a]\nroutes: *b\n"))
	f.Add([]byte("listen: ${PORT}\nserver: {max_conns: ${N:-3}, max_body_bytes: 1KiB}\n"))
	f.Add([]byte("---\na: 1\n---\nb: 2\n"))
	f.Add([]byte("routes: [{upstream: 'htp://x', host: '*.com', path: x, step_up_at: 200}]\n"))
	f.Add([]byte("{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{}"))
	f.Add([]byte("oidc: {issuer: http://10.0.0.1, client_secret_file: /dev/stdin}\n"))
	env := envMap(map[string]string{"PORT": "8080", "N": "7"})
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, "fuzz.yaml", env)
		if err == nil {
			// Parse validated it: Validate must agree.
			if verr := cfg.Validate(); verr != nil {
				t.Fatalf("Parse accepted a config that Validate rejects: %v", verr)
			}
			return
		}
		lines := bytes.Count(data, []byte("\n")) + 2
		for _, p := range Problems(err) {
			if p.Line < 0 || p.Line > lines {
				t.Fatalf("problem %q has line %d, document has %d lines", p, p.Line, lines)
			}
			if p.Path == "" || p.Problem == "" {
				t.Fatalf("problem without path or text: %q", p)
			}
		}
	})
}

func FuzzParseByteSize(f *testing.F) {
	for _, s := range []string{"1024", "16KiB", "10MB", "512 mib", "8388608TiB", "-1", "1.5GB", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseByteSize(s)
		if err != nil {
			return
		}
		if b < 0 {
			t.Fatalf("ParseByteSize(%q) = %d, negative", s, b)
		}
		back, err := ParseByteSize(b.String())
		if err != nil || back != b {
			t.Fatalf("round trip %q -> %q -> %d, %v", s, b.String(), back, err)
		}
	})
}

func FuzzExpandEnv(f *testing.F) {
	for _, s := range []string{"${A}", "x${B:-d}y", "$${A}", "${", "${A", "$$$", "${A:-${B}}"} {
		f.Add(s)
	}
	env := envMap(map[string]string{"A": "a", "B": ""})
	f.Fuzz(func(t *testing.T, s string) {
		got, err := expandEnv(s, env)
		if err != nil {
			return
		}
		if !strings.Contains(s, "${") && got != s {
			t.Fatalf("expandEnv(%q) = %q changed a value without references", s, got)
		}
	})
}
