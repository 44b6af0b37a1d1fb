package config

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"
)

// writeSecrets creates the files the example config names through
// ${EDGEAUTH_SECRETS_DIR} and returns the directory.
func writeSecrets(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"admin.token":    "admin-token-0123456789abcdef0123456789\n",
		"client.secret":  "client-secret-value\r\n",
		"session.keys":   "# newest first\n" + "k1-0123456789abcdef0123456789abcdef\n\n" + "k0-0123456789abcdef0123456789abcdef\n",
		"redis.password": "redis-password\n",
		"alerts.secret":  "alerts-0123456789abcdef0123456789abcdef",
	}
	for name, v := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func envMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

const examplePath = "../deploy/edgeauth.example.yaml"

// The example in deploy/ is documentation that must keep working: it has to
// load and validate with its secrets provided.
func TestExampleConfigLoads(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	dir := writeSecrets(t)
	cfg, err := Parse(data, "edgeauth.example.yaml", envMap(map[string]string{"EDGEAUTH_SECRETS_DIR": dir}))
	if err != nil {
		t.Fatalf("example config does not validate:\n%v", err)
	}
	type summary struct {
		Listen, AdminToken, ClientSecret, RedisPassword, AlertSecret string
		SessionKeys                                                  []string
		RouteNames                                                   []string
		BodyLimits                                                   []int64
		WikiAdminAuthAge                                             time.Duration
		Store                                                        SessionStore
		Scopes                                                       []string
		Algorithms                                                   []string
		MemoryBudget                                                 int64
		Claims                                                       map[string][]string
		StatusAuth                                                   AuthMode
		APIBearer                                                    bool
	}
	got := summary{
		Listen:           cfg.Listen,
		AdminToken:       cfg.Admin.Token.Reveal(),
		ClientSecret:     cfg.OIDC.ClientSecret.Reveal(),
		RedisPassword:    cfg.Redis.Password.Reveal(),
		AlertSecret:      cfg.Audit.Alerts.Secret.Reveal(),
		WikiAdminAuthAge: cfg.Routes[1].MaxAuthAge.D(),
		Store:            cfg.Session.Store,
		Scopes:           cfg.OIDC.Scopes,
		Algorithms:       cfg.Tokens.Issuers[0].Algorithms,
		MemoryBudget:     cfg.Session.MemoryBudget.Int64(),
		Claims:           cfg.Routes[1].Allow.Claims,
		StatusAuth:       cfg.Routes[3].Auth,
		APIBearer:        cfg.Routes[2].Bearer,
	}
	for _, s := range cfg.Session.Secrets {
		got.SessionKeys = append(got.SessionKeys, s.Reveal())
	}
	for _, r := range cfg.Routes {
		got.RouteNames = append(got.RouteNames, r.Name)
		got.BodyLimits = append(got.BodyLimits, r.MaxBodyBytes.Int64())
	}
	want := summary{
		Listen:           ":8443",
		AdminToken:       "admin-token-0123456789abcdef0123456789",
		ClientSecret:     "client-secret-value",
		RedisPassword:    "redis-password",
		AlertSecret:      "alerts-0123456789abcdef0123456789abcdef",
		SessionKeys:      []string{"k1-0123456789abcdef0123456789abcdef", "k0-0123456789abcdef0123456789abcdef"},
		RouteNames:       []string{"wiki", "wiki-admin", "api", "status"},
		BodyLimits:       []int64{10 << 20, 10 << 20, 50 << 20, 10 << 20},
		WikiAdminAuthAge: 15 * time.Minute,
		Store:            StoreRedis,
		Scopes:           []string{"openid", "email", "profile", "groups"},
		Algorithms:       []string{"RS256", "ES256", "EdDSA"},
		MemoryBudget:     512 << 20,
		Claims:           map[string][]string{"department": {"it"}},
		StatusAuth:       AuthNone,
		APIBearer:        true,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("example config (-want +got):\n%s", diff)
	}
	// Validate is pure and must agree with Parse on a parsed config.
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate after Parse: %v", err)
	}
}

// Without the secrets directory the example must fail on every secret file,
// each naming its key and line, not on the first only.
func TestExampleConfigMissingSecrets(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "absent")
	_, err = Parse(data, "edgeauth.example.yaml", envMap(map[string]string{"EDGEAUTH_SECRETS_DIR": dir}))
	got := Problems(err)
	var paths []string
	for _, p := range got {
		paths = append(paths, p.Path)
		if p.Line == 0 {
			t.Errorf("%s: no line", p.Path)
		}
	}
	want := []string{"admin.token_file", "oidc.client_secret_file", "session.secrets_file", "redis.password_file", "audit.alerts.secret_file"}
	if diff := cmp.Diff(want, paths); diff != "" {
		t.Errorf("problems (-want +got):\n%s\nerror: %v", diff, err)
	}
}

// TestKubernetesExampleConfigLoads: the config embedded in the Kubernetes
// example's ConfigMap must validate too, with its secret files where the
// Deployment mounts them (here a temporary directory).
func TestKubernetesExampleConfigLoads(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../deploy/kubernetes/edgeauth.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var embedded string
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc struct {
			Kind string            `yaml:"kind"`
			Data map[string]string `yaml:"data"`
		}
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("kubernetes example: %v", err)
		}
		if doc.Kind == "ConfigMap" {
			embedded = doc.Data["edgeauth.yaml"]
		}
	}
	if embedded == "" {
		t.Fatal("kubernetes example: no ConfigMap with edgeauth.yaml")
	}
	dir := writeSecrets(t)
	embedded = strings.ReplaceAll(embedded, "/etc/edgeauth/secrets/", dir+"/")
	cfg, err := Parse([]byte(embedded), "edgeauth.yaml (deploy/kubernetes)", envMap(nil))
	if err != nil {
		t.Fatalf("kubernetes example config does not validate:\n%v", err)
	}
	if cfg.Session.Store != "redis" || len(cfg.Routes) != 1 || cfg.Admin.Token.Reveal() == "" {
		t.Errorf("unexpected config: store %q, %d routes, admin token set %v", cfg.Session.Store, len(cfg.Routes), cfg.Admin.Token.Reveal() != "")
	}
}
