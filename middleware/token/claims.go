package token

import (
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"time"
)

// Claims is a verified token's identity. Values returned by Verify are
// shared with the cache and must be treated as read-only.
type Claims struct {
	Issuer   string
	Subject  string
	Audience []string
	// Expiry is always set for JWTs; for introspected tokens it is zero
	// when the server sent no exp.
	Expiry    time.Time
	NotBefore time.Time
	IssuedAt  time.Time // zero if absent
	ID        string    // jti
	ClientID  string

	Scopes            []string
	Email             string
	EmailVerified     bool
	PreferredUsername string
	Name              string
	Groups            []string
	ACR               string
	AMR               []string
	AuthTime          time.Time

	// JKT is the RFC 7638 thumbprint from cnf.jkt: the token is
	// sender-constrained and needs a DPoP proof. Empty otherwise.
	JKT string
	// Introspected is true when the claims came from RFC 7662.
	Introspected bool
	// Claims holds every top-level string or string-array claim (standard
	// ones included) so routes can match on any of them.
	Claims map[string][]string
}

// HasScopes reports whether every scope in want was granted.
func (c *Claims) HasScopes(want []string) bool {
	for _, w := range want {
		if !slices.Contains(c.Scopes, w) {
			return false
		}
	}
	return true
}

// HasClaims reports whether, for every name in want, the token's claim
// holds at least one of the listed values.
func (c *Claims) HasClaims(want map[string][]string) bool {
	for name, vals := range want {
		got := c.Claims[name]
		ok := false
		for _, v := range vals {
			if slices.Contains(got, v) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// rawClaims is the decoded payload before typing.
type rawClaims map[string]json.RawMessage

var errClaimType = errors.New("claim has the wrong JSON type")

func (r rawClaims) str(name string) (string, bool, error) {
	m, ok := r[name]
	if !ok {
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(m, &s); err != nil {
		return "", true, errClaimType
	}
	return s, true, nil
}

// strOrList accepts a string or an array of strings (aud, amr, groups).
func (r rawClaims) strOrList(name string) ([]string, bool, error) {
	m, ok := r[name]
	if !ok {
		return nil, false, nil
	}
	return parseStrOrList(m)
}

func parseStrOrList(m json.RawMessage) ([]string, bool, error) {
	var s string
	if err := json.Unmarshal(m, &s); err == nil {
		return []string{s}, true, nil
	}
	var l []string
	if err := json.Unmarshal(m, &l); err != nil {
		return nil, true, errClaimType
	}
	return l, true, nil
}

// numericDate parses a NumericDate (RFC 7519 §2): a JSON number of
// seconds, possibly fractional; must be finite and positive.
func (r rawClaims) numericDate(name string) (time.Time, bool, error) {
	m, ok := r[name]
	if !ok {
		return time.Time{}, false, nil
	}
	var f float64
	if err := json.Unmarshal(m, &f); err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 || f > 1e11 {
		return time.Time{}, true, errClaimType
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true, nil
}

// scopes reads scope (space-separated string, RFC 8693 §4.2) or scp
// (array or string, as Azure AD and Okta send it).
func (r rawClaims) scopes() ([]string, error) {
	var out []string
	for _, name := range [...]string{"scope", "scp"} {
		m, ok := r[name]
		if !ok {
			continue
		}
		var s string
		if err := json.Unmarshal(m, &s); err == nil {
			out = append(out, strings.Fields(s)...)
			continue
		}
		var l []string
		if err := json.Unmarshal(m, &l); err != nil {
			return nil, errClaimType
		}
		out = append(out, l...)
	}
	return out, nil
}

// toClaims types the standard claims. It checks types only; validity
// (time, issuer, audience) is the caller's.
func (r rawClaims) toClaims(groupsClaim string) (*Claims, error) {
	c := &Claims{}
	var err error
	if c.Issuer, _, err = r.str("iss"); err != nil {
		return nil, err
	}
	if c.Subject, _, err = r.str("sub"); err != nil {
		return nil, err
	}
	if c.Audience, _, err = r.strOrList("aud"); err != nil {
		return nil, err
	}
	if c.Expiry, _, err = r.numericDate("exp"); err != nil {
		return nil, err
	}
	if c.NotBefore, _, err = r.numericDate("nbf"); err != nil {
		return nil, err
	}
	if c.IssuedAt, _, err = r.numericDate("iat"); err != nil {
		return nil, err
	}
	if c.AuthTime, _, err = r.numericDate("auth_time"); err != nil {
		return nil, err
	}
	if c.ID, _, err = r.str("jti"); err != nil {
		return nil, err
	}
	if c.ClientID, _, err = r.str("client_id"); err != nil {
		return nil, err
	}
	if c.Scopes, err = r.scopes(); err != nil {
		return nil, err
	}
	if c.Email, _, err = r.str("email"); err != nil {
		return nil, err
	}
	if m, ok := r["email_verified"]; ok {
		if err := json.Unmarshal(m, &c.EmailVerified); err != nil {
			return nil, errClaimType
		}
	}
	if c.PreferredUsername, _, err = r.str("preferred_username"); err != nil {
		return nil, err
	}
	if c.Name, _, err = r.str("name"); err != nil {
		return nil, err
	}
	if c.Groups, _, err = r.strOrList(groupsClaim); err != nil {
		return nil, err
	}
	if c.ACR, _, err = r.str("acr"); err != nil {
		return nil, err
	}
	if c.AMR, _, err = r.strOrList("amr"); err != nil {
		return nil, err
	}
	if m, ok := r["cnf"]; ok {
		var cnf struct {
			JKT *string `json:"jkt"`
		}
		if err := json.Unmarshal(m, &cnf); err != nil {
			return nil, errClaimType
		}
		if cnf.JKT != nil {
			if *cnf.JKT == "" {
				return nil, errClaimType
			}
			c.JKT = *cnf.JKT
		}
	}
	c.Claims = make(map[string][]string, len(r))
	for name, m := range r {
		if l, _, err := parseStrOrList(m); err == nil {
			c.Claims[name] = l
		}
	}
	return c, nil
}
