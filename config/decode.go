package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Limits against a hostile or broken config file.
const (
	// MaxFileSize bounds the config file. Real configs are a few KiB.
	MaxFileSize = 4 << 20
	// MaxSecretFileSize bounds each *_file secret.
	MaxSecretFileSize = 64 << 10
	// maxDepth bounds nesting; the schema itself is 5 levels deep.
	maxDepth = 32
	// maxProblems stops the key and type walk: a file of 200,000 unknown
	// keys would otherwise cost seconds of suggestions and an error
	// message of megabytes.
	maxProblems = 100
)

// Load reads the file at path and parses it with the process environment.
// See Parse.
func Load(path string) (*Config, error) {
	data, err := readRegularFile(path, MaxFileSize)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, path, os.LookupEnv)
}

// Parse decodes data (named name in errors) on top of Default, expands
// ${ENV} references with env (nil means an empty environment), reads
// *_file secrets, fills route names and inherited limits, and validates.
//
// Errors that stop decoding (size, syntax, several documents, aliases,
// nesting) are returned alone with a nil Config. Otherwise every problem
// found is returned at once, errors.Join of *FieldError sorted by line;
// problems with keys, types and environment references stop before
// secret files are read and the Config is validated, and then the Config
// is nil too. Validation problems come with the decoded Config (for
// tooling); it must not be used to serve.
func Parse(data []byte, name string, env func(string) (string, bool)) (*Config, error) {
	if env == nil {
		env = func(string) (string, bool) { return "", false }
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("config: %s: file is larger than %d bytes", name, MaxFileSize)
	}
	root, err := parseDocument(data)
	if err != nil {
		return nil, fmt.Errorf("config: %s: %w", name, err)
	}
	if err := checkShape(root, 0); err != nil {
		return nil, fmt.Errorf("config: %s: %w", name, err)
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("config: %s: top level must be a mapping, got %s (line %d)", name, kindName(root), root.Line)
	}

	d := &decoder{env: env, lines: map[string]int{"": root.Line}}
	d.walk(root, reflect.TypeFor[Config](), "")
	if len(d.errs) > 0 {
		return nil, joinSorted(d.errs)
	}

	cfg := Default()
	// The walk has already checked every key and scalar; an error here
	// would be a bug in the walk, reported rather than ignored.
	if err := root.Decode(cfg); err != nil {
		return nil, fmt.Errorf("config: %s: decode: %w", name, err)
	}
	cfg.lines = d.lines
	cfg.normalize()
	errs := cfg.resolveSecrets()
	errs = append(errs, cfg.problems()...)
	return cfg, joinSorted(errs)
}

// parseDocument returns the content node of the only document in data.
func parseDocument(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty document")
		}
		return nil, err
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, err
	default:
		// Several documents: a second one would be silently ignored by a
		// plain Unmarshal, so half a config could take effect.
		return nil, fmt.Errorf("more than one YAML document (second starts at line %d)", next.Line)
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		return nil, errors.New("empty document")
	}
	return doc.Content[0], nil
}

// checkShape rejects aliases and deep nesting before anything walks the
// tree. Aliases are rejected outright, not bounded: a config has no need
// for them, and a "billion laughs" document (nested aliases that expand
// exponentially) costs nothing to parse but explodes in any walk that
// follows them. yaml.v3 only bounds alias expansion by ratio during
// Decode.
func checkShape(n *yaml.Node, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("document is nested deeper than %d levels (line %d)", maxDepth, n.Line)
	}
	if n.Kind == yaml.AliasNode {
		return fmt.Errorf("YAML aliases (*%s) are not supported; repeat the value instead (line %d)", truncate(n.Value, 64), n.Line)
	}
	for _, c := range n.Content {
		if err := checkShape(c, depth+1); err != nil {
			return err
		}
	}
	return nil
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "an empty value"
		}
		return "a scalar"
	}
	return "an unsupported node"
}

// decoder walks the node tree against the Config struct type, checking
// keys, shapes and scalar types, expanding ${ENV} in scalars, and
// recording the line of every key path.
type decoder struct {
	env   func(string) (string, bool)
	lines map[string]int
	errs  []*FieldError
}

var (
	durationType = reflect.TypeFor[Duration]()
	byteSizeType = reflect.TypeFor[ByteSize]()
	secretType   = reflect.TypeFor[Secret]()
)

func (d *decoder) fail(path, value, problem string, line int) {
	if d.full() {
		return
	}
	if len(d.errs) == maxProblems-1 {
		value, problem = "", fmt.Sprintf("too many problems (%d); stopped here", maxProblems)
	}
	d.errs = append(d.errs, &FieldError{Path: path, Value: value, Problem: problem, Line: line})
}

func (d *decoder) full() bool { return len(d.errs) >= maxProblems }

func (d *decoder) walk(n *yaml.Node, t reflect.Type, path string) {
	if d.full() {
		return
	}
	if _, ok := d.lines[path]; !ok {
		d.lines[path] = n.Line
	}
	switch {
	case t == durationType || t == byteSizeType || t == secretType:
		d.leaf(n, t, path)
	case t.Kind() == reflect.Struct:
		d.mapping(n, t, path)
	case t.Kind() == reflect.Slice:
		if isNull(n) {
			return // "key:" with no value: an empty list
		}
		if n.Kind != yaml.SequenceNode {
			d.fail(path, "", "must be a list, got "+kindName(n), n.Line)
			return
		}
		for i, item := range n.Content {
			if d.full() {
				return
			}
			d.walk(item, t.Elem(), path+"["+strconv.Itoa(i)+"]")
		}
	case t.Kind() == reflect.Map:
		d.stringMap(n, t, path)
	default:
		d.leaf(n, t, path)
	}
}

func (d *decoder) mapping(n *yaml.Node, t reflect.Type, path string) {
	if isNull(n) {
		return // an empty section keeps its defaults
	}
	if n.Kind != yaml.MappingNode {
		d.fail(path, "", "must be a mapping, got "+kindName(n), n.Line)
		return
	}
	fields := structFields(t)
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content) && !d.full(); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.fail(path, "", "keys must be strings, got "+kindName(k), k.Line)
			continue
		}
		kp := joinPath(path, k.Value)
		// Duplicate keys are an error, not last-wins: a second "auth:"
		// further down a long route must not quietly override the first.
		if first, dup := seen[k.Value]; dup {
			d.fail(kp, "", fmt.Sprintf("duplicate key (first at line %d)", first), k.Line)
			continue
		}
		seen[k.Value] = k.Line
		ft, ok := fields.types[k.Value]
		if !ok {
			d.fail(kp, "", "unknown key"+suggest(k.Value, fields.names), k.Line)
			continue
		}
		d.lines[kp] = k.Line
		d.walk(v, ft, kp)
	}
}

func (d *decoder) stringMap(n *yaml.Node, t reflect.Type, path string) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.fail(path, "", "must be a mapping, got "+kindName(n), n.Line)
		return
	}
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content) && !d.full(); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || isNull(k) {
			d.fail(path, "", "keys must be strings, got "+kindName(k), k.Line)
			continue
		}
		kp := joinPath(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.fail(kp, "", fmt.Sprintf("duplicate key (first at line %d)", first), k.Line)
			continue
		}
		seen[k.Value] = k.Line
		d.lines[kp] = k.Line
		d.walk(v, t.Elem(), kp)
	}
}

// leaf checks one scalar: expands ${ENV}, then decodes it into a fresh
// value of the target type so that a wrong type is reported with its path
// (yaml.v3's own messages name only the line).
func (d *decoder) leaf(n *yaml.Node, t reflect.Type, path string) {
	secret := t == secretType
	shown := n.Value
	if secret {
		shown = ""
	}
	if n.Kind != yaml.ScalarNode {
		d.fail(path, "", "must be "+describe(t)+", got "+kindName(n), n.Line)
		return
	}
	if isNull(n) {
		// "key:" with nothing after it: almost always a mistake (meant
		// "" to disable, or forgot the value). Say so rather than keep a
		// default the operator did not see.
		d.fail(path, "", `empty value; write "" for an empty string, or remove the key to get the default`, n.Line)
		return
	}
	if strings.Contains(n.Value, "${") {
		v, err := expandEnv(n.Value, d.env)
		if err != nil {
			d.fail(path, shown, err.Error(), n.Line)
			return
		}
		n.Value = v
		if secret {
			shown = ""
		} else {
			shown = v
		}
		if n.Style&yaml.TaggedStyle == 0 {
			// Re-resolve the tag of the expanded text so that
			// "port: ${PORT}" decodes as an integer; text targets stay
			// strings even when the value is empty (which would
			// otherwise resolve to null).
			switch t.Kind() {
			case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
				reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
				reflect.Float32, reflect.Float64:
				if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) == 0 {
					n.Tag = ""
				}
			default:
				n.Tag = "!!str"
			}
		}
	}
	if n.Value == "" && t.Kind() != reflect.String && t != secretType {
		d.fail(path, "", "must be "+describe(t)+", got an empty string", n.Line)
		return
	}
	tmp := reflect.New(t)
	if err := n.Decode(tmp.Interface()); err != nil {
		msg := err.Error()
		var te *yaml.TypeError
		if errors.As(err, &te) {
			msg = "must be " + describe(t)
		}
		d.fail(path, shown, msg, n.Line)
	}
}

func describe(t reflect.Type) string {
	switch t {
	case durationType:
		return "a duration such as 30s or 1h30m"
	case byteSizeType:
		return "a size such as 1024, 16KiB or 512MiB"
	case secretType:
		return "a string"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "an integer"
	case reflect.Uint32:
		return "a whole number from 0 to 4294967295"
	case reflect.Uint, reflect.Uint64:
		return "a whole number"
	case reflect.Float64, reflect.Float32:
		return "a number"
	case reflect.Struct, reflect.Map:
		return "a mapping"
	case reflect.Slice:
		return "a list"
	}
	return t.String()
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

type fieldSet struct {
	types map[string]reflect.Type
	names []string
}

// structFields maps yaml tag names to field types. Unexported fields and
// fields tagged "-" are not part of the schema.
func structFields(t reflect.Type) fieldSet {
	fs := fieldSet{types: make(map[string]reflect.Type, t.NumField())}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		fs.types[name] = f.Type
		fs.names = append(fs.names, name)
	}
	return fs
}

// suggest returns ` (did you mean "x"?)` for the closest known key within
// edit distance 2 (or 3 for long keys), else "".
func suggest(key string, names []string) string {
	if len(key) > 64 {
		return ""
	}
	best, bestD := "", 3
	if len(key) >= 12 {
		bestD = 4
	}
	for _, n := range names {
		if dist := editDistance(key, n); dist < bestD {
			best, bestD = n, dist
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// UnmarshalYAML decodes a route on top of RouteDefaults, so that every
// entry of routes gets the defaults (yaml.v3 creates list elements from
// zero values).
func (r *Route) UnmarshalYAML(n *yaml.Node) error {
	type plain Route
	v := plain(RouteDefaults())
	if err := n.Decode(&v); err != nil {
		return err
	}
	*r = Route(v)
	return nil
}

// UnmarshalYAML decodes an issuer on top of TokenIssuerDefaults.
func (ti *TokenIssuer) UnmarshalYAML(n *yaml.Node) error {
	type plain TokenIssuer
	v := plain(TokenIssuerDefaults())
	if err := n.Decode(&v); err != nil {
		return err
	}
	*ti = TokenIssuer(v)
	return nil
}

// normalize fills values derived from others: route names, inherited body
// limits, lower-case hosts.
func (c *Config) normalize() {
	for i := range c.Routes {
		r := &c.Routes[i]
		if r.Name == "" {
			r.Name = "route-" + strconv.Itoa(i)
		}
		if r.MaxBodyBytes == 0 {
			r.MaxBodyBytes = c.Server.MaxBodyBytes
		}
		r.Host = strings.ToLower(r.Host)
	}
}

// secretRef is one secret with its *_file alternative.
type secretRef struct {
	path, filePath string // key paths of the literal and the file
	secret         *Secret
	file           string
}

func (c *Config) secretRefs() []secretRef {
	refs := []secretRef{
		{"admin.token", "admin.token_file", &c.Admin.Token, c.Admin.TokenFile},
		{"oidc.client_secret", "oidc.client_secret_file", &c.OIDC.ClientSecret, c.OIDC.ClientSecretFile},
		{"redis.password", "redis.password_file", &c.Redis.Password, c.Redis.PasswordFile},
		{"tokens.introspection.client_secret", "tokens.introspection.client_secret_file", &c.Tokens.Introspection.ClientSecret, c.Tokens.Introspection.ClientSecretFile},
		{"audit.alerts.secret", "audit.alerts.secret_file", &c.Audit.Alerts.Secret, c.Audit.Alerts.SecretFile},
	}
	for i := range c.Tokens.Issuers {
		p := "tokens.issuers[" + strconv.Itoa(i) + "]."
		refs = append(refs, secretRef{p + "hmac_secret", p + "hmac_secret_file", &c.Tokens.Issuers[i].HMACSecret, c.Tokens.Issuers[i].HMACSecretFile})
	}
	return refs
}

// resolveSecrets reads every *_file secret. A literal and a file for the
// same secret is an error: which one wins would be a guess.
func (c *Config) resolveSecrets() []*FieldError {
	var errs []*FieldError
	fail := func(path, value, problem string) {
		errs = append(errs, &FieldError{Path: path, Value: value, Problem: problem, Line: c.lineOf(path)})
	}
	for _, r := range c.secretRefs() {
		if r.file == "" {
			continue
		}
		if !r.secret.IsZero() {
			fail(r.filePath, "", "set only one of "+lastKey(r.path)+" and "+lastKey(r.filePath))
			continue
		}
		data, err := readRegularFile(r.file, MaxSecretFileSize)
		if err != nil {
			fail(r.filePath, r.file, fileProblem(err))
			continue
		}
		v := strings.TrimRight(string(data), "\r\n")
		if v == "" {
			fail(r.filePath, r.file, "file is empty")
			continue
		}
		*r.secret = Secret{v: v}
	}
	if s := &c.Session; s.SecretsFile != "" {
		if len(s.Secrets) > 0 {
			fail("session.secrets_file", "", "set only one of secrets and secrets_file")
		} else if data, err := readRegularFile(s.SecretsFile, MaxSecretFileSize); err != nil {
			fail("session.secrets_file", s.SecretsFile, fileProblem(err))
		} else {
			for _, line := range strings.Split(string(data), "\n") {
				line = strings.TrimSpace(line)
				if line == "" || strings.HasPrefix(line, "#") {
					continue
				}
				s.Secrets = append(s.Secrets, Secret{v: line})
			}
			if len(s.Secrets) == 0 {
				fail("session.secrets_file", s.SecretsFile, "file holds no keys")
			}
		}
	}
	return errs
}

func lastKey(path string) string {
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[i+1:]
	}
	return path
}

// readRegularFile reads at most limit bytes of a regular file. Anything
// else (a FIFO, /dev/stdin, a directory) is refused because reading it
// could block start-up forever or read without end.
func readRegularFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "read", Path: path, Err: errors.New("not a regular file")}
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("file is larger than %d bytes", limit)}
	}
	return data, nil
}

// fileProblem renders a file error without repeating the path, which the
// FieldError already shows as its value.
func fileProblem(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return "cannot read: " + pe.Err.Error()
	}
	return "cannot read: " + err.Error()
}

// lineOf returns the line of path, or of its closest ancestor that has
// one (a missing key is reported at its parent), or 0.
func (c *Config) lineOf(path string) int {
	for c.lines != nil {
		if l, ok := c.lines[path]; ok {
			return l
		}
		if path == "" {
			return 0
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			path = ""
		} else {
			path = path[:i]
		}
	}
	return 0
}
