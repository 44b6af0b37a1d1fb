package config

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// minimal is the smallest valid config: one public route.
const minimal = `routes:
  - upstream: http://127.0.0.1:8081
    auth: none
`

func TestParseErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "client.secret"), []byte("s3cret-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "empty.secret"), []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "session.keys"), []byte("short\n"+strings.Repeat("k", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := envMap(map[string]string{"DIR": dir, "PORT": "8080", "EMPTY": ""})

	tests := []struct {
		name string
		yaml string
		want string
	}{
		{
			name: "unknown key names path, line and suggestion",
			yaml: `listen: ":8080"
routes:
  - name: wiki
    upstram: http://127.0.0.1:8081
    auth: none
`,
			want: `routes[0].upstram: unknown key (did you mean "upstream"?) (line 4)`,
		},
		{
			name: "unknown top-level key without a close match",
			yaml: minimal + "frobnicate: 1\n",
			want: `frobnicate: unknown key (line 4)`,
		},
		{
			name: "every unknown key at once, sorted by line",
			yaml: `sever:
  read_timeout: 1s
routes:
  - upstream: http://127.0.0.1:8081
    auth: none
    alow: {groups: [a]}
    allow: {group: [a]}
`,
			want: `sever: unknown key (did you mean "server"?) (line 1)
routes[0].alow: unknown key (did you mean "allow"?) (line 6)
routes[0].allow.group: unknown key (did you mean "groups"?) (line 7)`,
		},
		{
			name: "wrong scalar type",
			yaml: minimal + "server:\n  max_conns: lots\n",
			want: `server.max_conns: "lots": must be an integer (line 5)`,
		},
		{
			name: "wrong bool",
			yaml: minimal + "redis:\n  tls: {enabled: maybe}\n",
			want: `redis.tls.enabled: "maybe": must be true or false (line 5)`,
		},
		{
			name: "list where a mapping belongs",
			yaml: minimal + "server: [1, 2]\n",
			want: `server: must be a mapping, got a list (line 4)`,
		},
		{
			name: "mapping where a list belongs",
			yaml: "routes:\n  upstream: http://127.0.0.1:8081\n",
			want: `routes: must be a list, got a mapping (line 2)`,
		},
		{
			name: "mapping where a scalar belongs",
			yaml: minimal + "listen: {host: x}\n",
			want: `listen: must be a string, got a mapping (line 4)`,
		},
		{
			name: "bad duration",
			yaml: minimal + "server:\n  read_timeout: 30\n  idle_timeout: 1h30x\n",
			want: `server.read_timeout: "30": invalid duration (want e.g. 30s, 1h30m) (line 5)
server.idle_timeout: "1h30x": invalid duration (want e.g. 30s, 1h30m) (line 6)`,
		},
		{
			name: "bad size",
			yaml: minimal + "session:\n  memory_budget: 512MB/s\n  store: memory\nserver:\n  max_body_bytes: -1\n",
			want: `session.memory_budget: "512MB/s": invalid size (want e.g. 1024, 16KiB, 10MB, 512MiB) (line 5)
server.max_body_bytes: "-1": invalid size (want e.g. 1024, 16KiB, 10MB, 512MiB) (line 8)`,
		},
		{
			name: "size overflow",
			yaml: minimal + "server:\n  max_body_bytes: 9000000000TiB\n",
			want: `server.max_body_bytes: "9000000000TiB": size too large (line 5)`,
		},
		{
			name: "empty value is not silently the default",
			yaml: minimal + "identity_headers:\n  assertion:\n",
			want: `identity_headers.assertion: empty value; write "" for an empty string, or remove the key to get the default (line 5)`,
		},
		{
			name: "duplicate key",
			yaml: `routes:
  - upstream: http://127.0.0.1:8081
    auth: required
    path: /
    auth: none
`,
			want: `routes[0].auth: duplicate key (first at line 3) (line 5)`,
		},
		{
			name: "unset environment variable names the path",
			yaml: minimal + "listen: ${LISTEN_ADDR}\n",
			want: `listen: "${LISTEN_ADDR}": environment variable LISTEN_ADDR is not set (line 4)`,
		},
		{
			name: "bad environment reference",
			yaml: minimal + "listen: ${1X}\nexternal_url: https://${HOST\n",
			want: `listen: "${1X}": invalid environment variable reference ${1X} (line 4)
external_url: "https://${HOST": unterminated ${ in value (line 5)`,
		},
		{
			name: "expanded value is type checked",
			yaml: minimal + "server:\n  max_conns: ${DIR}\n",
			want: `server.max_conns: "` + dir + `": must be an integer (line 5)`,
		},
		{
			name: "expanded empty value into a number",
			yaml: minimal + "server:\n  max_conns: ${EMPTY:-}\n",
			want: `server.max_conns: must be an integer, got an empty string (line 5)`,
		},
		{
			name: "missing secret file",
			yaml: minimal + "admin:\n  token_file: ${DIR}/absent.token\n",
			want: `admin.token_file: "` + dir + `/absent.token": cannot read: no such file or directory (line 5)`,
		},
		{
			name: "secret file is a directory",
			yaml: minimal + "admin:\n  token_file: ${DIR}\n",
			want: `admin.token_file: "` + dir + `": cannot read: not a regular file (line 5)`,
		},
		{
			name: "empty secret file",
			yaml: minimal + "admin:\n  token_file: ${DIR}/empty.secret\n",
			want: `admin.token_file: "` + dir + `/empty.secret": file is empty (line 5)`,
		},
		{
			name: "secret and secret_file both set",
			yaml: `oidc:
  issuer: https://login.example.com
  client_id: edgeauth
  client_secret: literal
  client_secret_file: ${DIR}/client.secret
session:
  secrets: ["0123456789abcdef0123456789abcdef"]
` + minimal,
			want: `oidc.client_secret_file: set only one of client_secret and client_secret_file (line 5)`,
		},
		{
			name: "session secrets and secrets_file both set",
			yaml: minimal + "session:\n  secrets: [\"0123456789abcdef0123456789abcdef\"]\n  secrets_file: ${DIR}/session.keys\n",
			want: `session.secrets_file: set only one of secrets and secrets_file (line 6)`,
		},
		{
			name: "short key in session secrets file",
			yaml: minimal + "session:\n  secrets_file: ${DIR}/session.keys\n",
			want: `session.secrets_file: key 1 is 5 bytes, must be at least 32 (line 5)`,
		},
		{
			name: "secret value never appears in a type error",
			yaml: minimal + "oidc:\n  client_secret: [hunter2-secret]\n",
			want: `oidc.client_secret: must be a string, got a list (line 5)`,
		},
		{
			name: "unsupported upstream scheme",
			yaml: `routes:
  - upstream: http://127.0.0.1:8081
    auth: none
  - path: /b/
    upstream: http://127.0.0.1:8082
    auth: none
  - path: /c/
    upstream: htp://x
    auth: none
`,
			want: `routes[2].upstream: "htp://x": unsupported scheme (line 8)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tt.yaml), "test.yaml", env)
			if err == nil {
				t.Fatalf("Parse succeeded, want error:\n%s", tt.want)
			}
			if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
}

// Document-level failures stop decoding and come alone.
func TestParseDocumentErrors(t *testing.T) {
	t.Parallel()
	deep := strings.Repeat("a: {", 40) + "b: 1" + strings.Repeat("}", 40) + "\n"
	tests := []struct {
		name string
		data string
		want string
	}{
		{name: "empty file", data: "", want: "config: test.yaml: empty document"},
		{name: "comments only", data: "# nothing here\n\n", want: "config: test.yaml: empty document"},
		{name: "explicit null", data: "~\n", want: "config: test.yaml: empty document"},
		{name: "top level list", data: "- a\n- b\n", want: "config: test.yaml: top level must be a mapping, got a list (line 1)"},
		{
			name: "multiple documents",
			data: minimal + "---\nlisten: \":9999\"\n",
			want: "config: test.yaml: more than one YAML document (second starts at line 4)",
		},
		{
			name: "syntax error",
			data: "routes:\n  - upstream: [\n",
			want: "config: test.yaml: yaml: line 2: did not find expected node content",
		},
		{name: "deep nesting", data: deep, want: "config: test.yaml: document is nested deeper than 32 levels (line 1)"},
		{
			name: "aliases are refused",
			data: "routes:\n  - &r {upstream: \"http://127.0.0.1:1\", auth: none}\n  - *r\n",
			want: "config: test.yaml: YAML aliases (*r) are not supported; repeat the value instead (line 3)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Parse([]byte(tt.data), "test.yaml", nil)
			if err == nil {
				t.Fatalf("Parse succeeded, want %q", tt.want)
			}
			if cfg != nil {
				t.Errorf("Parse returned a Config with a document error")
			}
			if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
}

// Attack: "billion laughs" — nine levels of aliases, each referring ten
// times to the level below, expand to 10^9 nodes in any decoder that follows
// them. It must be refused before expansion, quickly.
func TestParseRejectsYAMLBomb(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n")
	prev := "a"
	for _, n := range []string{"b", "c", "d", "e", "f", "g", "h", "i"} {
		b.WriteString(n + ": &" + n + " [")
		for j := 0; j < 9; j++ {
			if j > 0 {
				b.WriteString(",")
			}
			b.WriteString("*" + prev)
		}
		b.WriteString("]\n")
		prev = n
	}
	b.WriteString("routes: *i\n")
	start := time.Now()
	_, err := Parse([]byte(b.String()), "bomb.yaml", nil)
	elapsed := time.Since(start)
	want := "config: bomb.yaml: YAML aliases (*a) are not supported; repeat the value instead (line 2)"
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %q", err, want)
	}
	if elapsed > 2*time.Second {
		t.Errorf("rejecting the bomb took %v; it must not expand aliases", elapsed)
	}
}

// Attack: a huge file (or /dev/zero named as config) must be refused without
// reading it all into memory.
func TestLoadLimits(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte(minimal+"#"+strings.Repeat("x", MaxFileSize)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
	}{
		{"missing file", filepath.Join(dir, "absent.yaml"), "config: open " + dir + "/absent.yaml: no such file or directory"},
		{"too large", big, "config: read " + big + ": file is larger than 4194304 bytes"},
		{"directory", dir, "config: read " + dir + ": not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(tt.path)
			if err == nil || err.Error() != tt.want {
				t.Errorf("Load error = %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := Parse(make([]byte, MaxFileSize+1), "huge.yaml", nil); err == nil || err.Error() != "config: huge.yaml: file is larger than 4194304 bytes" {
		t.Errorf("Parse error = %v", err)
	}
}

func TestLoadReadsFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "edgeauth.yaml")
	if err := os.WriteFile(path, []byte(minimal), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Routes[0].Upstream; got != "http://127.0.0.1:8081" {
		t.Errorf("upstream = %q", got)
	}
}

func TestParseDefaultsAndExpansion(t *testing.T) {
	t.Parallel()
	env := envMap(map[string]string{"PORT": "8081", "HOST": "app.example.com", "CONNS": "64", "EMPTY": ""})
	cfg, err := Parse([]byte(`listen: "127.0.0.1:${PORT}"
external_url: https://${HOST}
identity_headers:
  assertion: "${EMPTY:-}"
server:
  max_conns: ${CONNS}
  max_body_bytes: ${BODY:-1MiB}
routes:
  - host: ${HOST}
    upstream: http://127.0.0.1:${PORT}
    auth: none
  - name: second
    host: WWW.Example.COM
    path: /x/
    upstream: http://127.0.0.1:9
    auth: none
    max_body_bytes: 1KiB
    public: ["/$${NOT_EXPANDED}/"]
`), "test.yaml", env)
	if err != nil {
		t.Fatal(err)
	}
	type view struct {
		Listen, ExternalURL, Assertion string
		MaxConns                       int
		Names, Hosts                   []string
		Body                           []ByteSize
		Public                         []string
		Path                           string
		Timeouts                       RouteTimeouts
		Bearer                         bool
		Admin                          string
	}
	got := view{
		Listen: cfg.Listen, ExternalURL: cfg.ExternalURL, Assertion: cfg.IdentityHeaders.Assertion,
		MaxConns: cfg.Server.MaxConns, Public: cfg.Routes[1].Public, Path: cfg.Routes[0].Path,
		Timeouts: cfg.Routes[0].Timeouts, Bearer: cfg.Routes[0].Bearer, Admin: cfg.Admin.Listen,
	}
	for _, r := range cfg.Routes {
		got.Names = append(got.Names, r.Name)
		got.Hosts = append(got.Hosts, r.Host)
		got.Body = append(got.Body, r.MaxBodyBytes)
	}
	want := view{
		Listen: "127.0.0.1:8081", ExternalURL: "https://app.example.com", Assertion: "",
		MaxConns: 64,
		Names:    []string{"route-0", "second"},
		Hosts:    []string{"app.example.com", "www.example.com"},
		Body:     []ByteSize{1 << 20, 1 << 10},
		Public:   []string{"/${NOT_EXPANDED}/"},
		Path:     "/",
		Timeouts: RouteTimeouts{Connect: Duration(5 * time.Second), Read: Duration(30 * time.Second), Write: Duration(30 * time.Second), Idle: Duration(90 * time.Second)},
		Bearer:   true,
		Admin:    "127.0.0.1:9090",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// Validation problems come with the decoded Config and with lines.
func TestParseValidationLines(t *testing.T) {
	t.Parallel()
	cfg, err := Parse([]byte(`listen: "127.0.0.1:8080"
log: {level: verbose}
trusted_proxies: [10.0.0.1/8, "not-an-ip"]
routes:
  - name: a
    host: "*.com"
    upstream: http://127.0.0.1:1
    auth: none
  - name: a
    path: static/
    upstream: http://127.0.0.1:2/app
  - name: c
    upstream: http://127.0.0.1:3
    auth: none
    step_up_at: 60
    deny_at: 50
default_route: nope
`), "test.yaml", nil)
	if cfg == nil {
		t.Fatal("no Config returned with validation problems")
	}
	want := `log.level: "verbose": must be one of debug, info, warn, error (line 2)
trusted_proxies[0]: "10.0.0.1/8": host bits set (did you mean 10.0.0.0/8?) (line 3)
trusted_proxies[1]: "not-an-ip": must be a CIDR such as 10.0.0.0/8 or an IP address (line 3)
routes[0].host: "*.com": wildcard must have at least two labels after *. (line 6)
routes[1].name: "a": duplicate of routes[0].name (line 9)
routes[1].auth: "required": needs oidc or tokens.issuers configured (line 9)
routes[1].path: "static/": must start with / (line 10)
routes[1].upstream: "http://127.0.0.1:2/app": must not have a path (line 11)
routes[2].step_up_at: "60": must not exceed deny_at (50) (line 15)
default_route: "nope": no route has this name (line 17)`
	if err == nil {
		t.Fatal("no error")
	}
	if diff := cmp.Diff(want, err.Error()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// Attack: a file of many thousands of misspelt keys must not cost seconds
// of suggestions or a megabyte error; the walk stops after maxProblems.
func TestParseStopsAfterTooManyProblems(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString(minimal)
	for i := range 5000 {
		b.WriteString("server_" + strings.Repeat("x", 40) + "_" + strconv.Itoa(i) + ": 1\n")
	}
	_, err := Parse([]byte(b.String()), "t.yaml", nil)
	got := Problems(err)
	if len(got) != maxProblems {
		t.Fatalf("%d problems, want %d", len(got), maxProblems)
	}
	want := &FieldError{Path: "server_" + strings.Repeat("x", 40) + "_99", Problem: "too many problems (100); stopped here", Line: 103}
	if diff := cmp.Diff(want, got[len(got)-1]); diff != "" {
		t.Errorf("last problem (-want +got):\n%s", diff)
	}
}
