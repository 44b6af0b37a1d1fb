package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"
)

func TestParseByteSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    ByteSize
		wantErr string
	}{
		{in: "1024", want: 1024},
		{in: "0", want: 0},
		{in: "16KiB", want: 16 << 10},
		{in: "512MiB", want: 512 << 20},
		{in: "512mib", want: 512 << 20},
		{in: "10MB", want: 10_000_000},
		{in: "2 GiB", want: 2 << 30},
		{in: "1TiB", want: 1 << 40},
		{in: "7B", want: 7},
		{in: "8388607TiB", want: 8388607 << 40},
		{in: "8388608TiB", wantErr: "size too large"},
		{in: "99999999999999999999", wantErr: "invalid size (want e.g. 1024, 16KiB, 10MB, 512MiB)"},
		{in: "", wantErr: "invalid size (want e.g. 1024, 16KiB, 10MB, 512MiB)"},
		{in: "MiB", wantErr: "invalid size (want e.g. 1024, 16KiB, 10MB, 512MiB)"},
		{in: "1.5GiB", wantErr: "invalid size (want e.g. 1024, 16KiB, 10MB, 512MiB)"},
		{in: "-1", wantErr: "invalid size (want e.g. 1024, 16KiB, 10MB, 512MiB)"},
		{in: "10 MiB extra", wantErr: "invalid size (want e.g. 1024, 16KiB, 10MB, 512MiB)"},
		{in: "10  MiB", wantErr: "invalid size (want e.g. 1024, 16KiB, 10MB, 512MiB)"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseByteSize(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("ParseByteSize(%q) = %v, %v; want error %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseByteSize(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
			// String must round-trip.
			back, err := ParseByteSize(got.String())
			if err != nil || back != got {
				t.Errorf("round trip %q -> %q -> %v, %v", tt.in, got.String(), back, err)
			}
		})
	}
}

func TestParseDuration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{in: "30s", want: 30 * time.Second},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "0", want: 0},
		{in: "0s", want: 0},
		{in: "-5s", want: -5 * time.Second},
		{in: "30", wantErr: true},
		{in: "1d", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if (err != nil) != tt.wantErr || got.D() != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestExpandEnv(t *testing.T) {
	t.Parallel()
	env := envMap(map[string]string{"A": "alpha", "EMPTY": "", "B_2": "two", "DOLLAR": "${A}"})
	tests := []struct {
		in, want, wantErr string
	}{
		{in: "plain", want: "plain"},
		{in: "${A}", want: "alpha"},
		{in: "x-${A}-${B_2}-y", want: "x-alpha-two-y"},
		{in: "${UNSET:-fallback}", want: "fallback"},
		{in: "${EMPTY:-fallback}", want: "fallback"},
		{in: "${EMPTY}", want: ""},
		{in: "${UNSET:-}", want: ""},
		{in: "${A:-unused}", want: "alpha"},
		{in: "$${A}", want: "${A}"},
		{in: "$2a$10$hash", want: "$2a$10$hash"},
		{in: "cost$", want: "cost$"},
		{in: "${DOLLAR}", want: "${A}"}, // values are not expanded again
		{in: "${UNSET}", wantErr: "environment variable UNSET is not set"},
		{in: "${A", wantErr: "unterminated ${ in value"},
		{in: "${}", wantErr: "invalid environment variable reference ${}"},
		{in: "${A B}", wantErr: "invalid environment variable reference ${A B}"},
		{in: "${9A}", wantErr: "invalid environment variable reference ${9A}"},
	}
	for _, tt := range tests {
		got, err := expandEnv(tt.in, env)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("expandEnv(%q) = %q, %v; want error %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("expandEnv(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// A secret must not leak through any way a config value is commonly
// printed: fmt verbs, slog, JSON, YAML, or a dump of the whole Config.
func TestSecretNeverPrints(t *testing.T) {
	t.Parallel()
	const value = "hunter2-very-secret-value"
	s := NewSecret(value)
	cfg := Default()
	cfg.OIDC.ClientSecret = s
	cfg.Session.Secrets = []Secret{s}

	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("cfg", "secret", s, "oidc", cfg.OIDC)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("cfg", "secret", s)
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ys, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{
		"%v":       fmt.Sprintf("%v", s),
		"%s":       fmt.Sprintf("%s", s),
		"%q":       fmt.Sprintf("%q", s),
		"%x":       fmt.Sprintf("%x", s),
		"%#v":      fmt.Sprintf("%#v", s),
		"%+v cfg":  fmt.Sprintf("%+v", cfg),
		"%#v cfg":  fmt.Sprintf("%#v", cfg),
		"%v slice": fmt.Sprint(cfg.Session.Secrets),
		"slog":     logs.String(),
		"json":     string(js),
		"yaml":     string(ys),
	}
	for name, out := range outputs {
		if strings.Contains(out, value) || strings.Contains(out, fmt.Sprintf("%x", value)) {
			t.Errorf("%s leaks the secret: %s", name, out)
		}
		if !strings.Contains(out, "[redacted]") {
			t.Errorf("%s does not show [redacted]: %s", name, out)
		}
	}
	if s.Reveal() != value {
		t.Errorf("Reveal = %q", s.Reveal())
	}
	if got := NewSecret("").String(); got != "" {
		t.Errorf("empty secret prints %q", got)
	}
}

// Secrets in a broken config must not end up in the error text, which is
// logged on a failed reload.
func TestParseErrorsDoNotLeakSecrets(t *testing.T) {
	t.Parallel()
	const value = "hunter2-literal-secret"
	_, err := Parse([]byte(minimal+`oidc:
  client_secret: `+value+`
  client_secret_file: /nonexistent
admin:
  token: `+value+`${UNSET}
redis:
  password: "`+value+`"
  password_file: /nonexistent
`), "test.yaml", nil)
	if err == nil {
		t.Fatal("no error")
	}
	if strings.Contains(err.Error(), value) {
		t.Errorf("error leaks a secret:\n%v", err)
	}
	want := `admin.token: environment variable UNSET is not set (line 8)`
	if diff := cmp.Diff(want, err.Error()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestProblems(t *testing.T) {
	t.Parallel()
	_, err := Parse([]byte("routes:\n  - upstream: ftp://x\n    auth: none\n    bogus: 1\n"), "t.yaml", nil)
	got := Problems(fmt.Errorf("wrapped: %w", err))
	want := []*FieldError{{Path: "routes[0].bogus", Problem: "unknown key", Line: 4}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Line != 4 {
		t.Errorf("errors.As = %v", fe)
	}
}
