package config

import (
	"errors"
	"strings"
)

// expandEnv replaces ${NAME} and ${NAME:-default} in s using lookup.
//
// Rules, kept small on purpose so that a value means what it looks like:
//   - NAME is [A-Za-z_][A-Za-z0-9_]*.
//   - ${NAME:-default} uses default when NAME is unset or empty (as in sh);
//     the default is taken literally (no nested expansion).
//   - "$${" writes a literal "${"; any other "$" is left alone, so values
//     such as bcrypt hashes ("$2a$10$...") need no escaping.
//   - ${NAME} with NAME unset is an error naming the variable, never an
//     empty string: a missing secret must not silently become "".
//
// The error never contains a variable's value.
func expandEnv(s string, lookup func(string) (string, bool)) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		c := s[i]
		if c != '$' {
			b.WriteByte(c)
			i++
			continue
		}
		if strings.HasPrefix(s[i:], "$${") {
			b.WriteString("${")
			i += 3
			continue
		}
		if !strings.HasPrefix(s[i:], "${") {
			b.WriteByte(c)
			i++
			continue
		}
		end := strings.IndexByte(s[i+2:], '}')
		if end < 0 {
			return "", errors.New("unterminated ${ in value")
		}
		expr := s[i+2 : i+2+end]
		name, def, hasDef := strings.Cut(expr, ":-")
		if !validEnvName(name) {
			return "", errors.New("invalid environment variable reference ${" + truncate(expr, 64) + "}")
		}
		v, ok := lookup(name)
		switch {
		case hasDef && (!ok || v == ""):
			v = def
		case !ok:
			return "", errors.New("environment variable " + name + " is not set")
		}
		b.WriteString(v)
		i += 2 + end + 1
	}
	return b.String(), nil
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
