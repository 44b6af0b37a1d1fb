// Package identity controls which identity headers reach an upstream.
//
// Contract: on every request, public routes included, every inbound header
// whose name looks like one of ours is removed before the proxy adds its
// own: names are compared case-insensitively with "_" folded to "-",
// because many upstream frameworks (CGI-style environments, PHP, Django,
// some WSGI servers) map X_Auth_Request_User and X-Auth-Request-User to the
// same variable while fasthttp treats them as different headers. Then, for
// an authenticated principal, the configured headers are set from verified
// state, and optionally a short-lived ES256 assertion JWT
// (aud = route, iss = external URL) that upstreams verify with the JWKS at
// /.edgeauth/jwks.json.
//
// Trust boundary: upstreams may trust these headers only because every
// client-sent copy is stripped here; a request that reaches an upstream by
// another path than this proxy must not be trusted.
//
// X-Auth-Request-User carries the subject (sub), not preferred_username:
// sub is the stable, unique identifier per issuer, while OIDC Core §5.7
// says preferred_username is mutable and must not be relied on as unique.
// preferred_username has its own header.
package identity

import (
	"errors"
	"fmt"
)

// Headers names the identity headers set upstream. An empty field takes the
// default shown; "-" disables that header.
type Headers struct {
	User              string // X-Auth-Request-User: the subject (sub)
	Email             string // X-Auth-Request-Email
	Groups            string // X-Auth-Request-Groups: groups joined with ","
	PreferredUsername string // X-Auth-Request-Preferred-Username
	Assertion         string // X-Edgeauth-Assertion: the signed JWT (only with a Signer)
}

// DefaultStripPrefixes are stripped from inbound requests in addition to
// the configured names.
var DefaultStripPrefixes = []string{"X-Auth-Request-", "X-Edgeauth-"}

func (h Headers) withDefaults() Headers {
	def := func(v, d string) string {
		if v == "" {
			return d
		}
		return v
	}
	h.User = def(h.User, "X-Auth-Request-User")
	h.Email = def(h.Email, "X-Auth-Request-Email")
	h.Groups = def(h.Groups, "X-Auth-Request-Groups")
	h.PreferredUsername = def(h.PreferredUsername, "X-Auth-Request-Preferred-Username")
	h.Assertion = def(h.Assertion, "X-Edgeauth-Assertion")
	return h
}

// Matcher decides whether an inbound header name is one of ours. It is
// immutable and does not allocate.
type Matcher struct {
	names    []string // folded
	prefixes []string // folded
}

// fold maps a header name to its comparison form: ASCII lower case, "_"
// as "-".
func foldByte(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	if c == '_' {
		return '-'
	}
	return c
}

func fold(s string) string {
	b := []byte(s)
	for i, c := range b {
		b[i] = foldByte(c)
	}
	return string(b)
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// NewMatcher builds a matcher for exact names and name prefixes.
func NewMatcher(names, prefixes []string) (*Matcher, error) {
	m := &Matcher{}
	for _, n := range names {
		if !validName(n) {
			return nil, fmt.Errorf("identity: invalid header name %q", n)
		}
		m.names = append(m.names, fold(n))
	}
	for _, p := range prefixes {
		if !validName(p) {
			return nil, fmt.Errorf("identity: invalid header prefix %q", p)
		}
		m.prefixes = append(m.prefixes, fold(p))
	}
	if len(m.names)+len(m.prefixes) == 0 {
		return nil, errors.New("identity: nothing to strip")
	}
	return m, nil
}

// Match reports whether name is one of ours.
func (m *Matcher) Match(name []byte) bool {
	for _, n := range m.names {
		if foldedEqual(name, n) {
			return true
		}
	}
	for _, p := range m.prefixes {
		if len(name) >= len(p) && foldedEqual(name[:len(p)], p) {
			return true
		}
	}
	return false
}

func foldedEqual(b []byte, folded string) bool {
	if len(b) != len(folded) {
		return false
	}
	for i := range b {
		if foldByte(b[i]) != folded[i] {
			return false
		}
	}
	return true
}

// validValue reports whether v can go into a header value unchanged. A
// claim with a control character (CR/LF) is never forwarded: header
// injection into the upstream request.
func validValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func splitDisabled(h Headers) (set Headers, names []string) {
	for _, p := range []*string{&h.User, &h.Email, &h.Groups, &h.PreferredUsername, &h.Assertion} {
		if *p == "-" {
			*p = ""
			continue
		}
		names = append(names, *p)
	}
	return h, names
}
