package sso

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/edgeauth/edgeauth/middleware/session"
)

// Sentinel errors callers and tests branch on. Every returned error wraps
// one of them with detail for the log (never for the client).
var (
	ErrState           = errors.New("sso: login state invalid")
	ErrExpired         = errors.New("sso: login transaction expired")
	ErrProvider        = errors.New("sso: provider returned an error")
	ErrUnavailable     = errors.New("sso: provider unavailable")
	ErrIDToken         = errors.New("sso: id token rejected")
	ErrStepUp          = errors.New("sso: step-up not satisfied")
	ErrSessionEnded    = errors.New("sso: session ended")
	ErrLogoutToken     = errors.New("sso: logout token rejected")
	ErrLogoutTokenUsed = errors.New("sso: logout token replayed")
)

// clockSkew is the tolerance for auth_time and iat comparisons between our
// clock and the provider's.
const clockSkew = 30 * time.Second

// checkAudience enforces OIDC Core §3.1.3.7 (3)–(5) beyond go-oidc, which only
// checks that aud contains the client id: every audience must be the client
// or explicitly trusted, and with several audiences azp must name the client.
func checkAudience(aud []string, azp, clientID string, trusted []string) error {
	if !slices.Contains(aud, clientID) {
		return fmt.Errorf("%w: aud lacks client id", ErrIDToken)
	}
	for _, a := range aud {
		if a != clientID && !slices.Contains(trusted, a) {
			return fmt.Errorf("%w: untrusted audience %q", ErrIDToken, a)
		}
	}
	if len(aud) > 1 && azp != clientID {
		return fmt.Errorf("%w: several audiences and azp %q is not the client", ErrIDToken, azp)
	}
	if azp != "" && azp != clientID {
		return fmt.Errorf("%w: azp %q is not the client", ErrIDToken, azp)
	}
	return nil
}

// idClaims are the ID token claims we read besides those go-oidc exposes.
type idClaims struct {
	AZP           string   `json:"azp"`
	Nonce         string   `json:"nonce"`
	ACR           string   `json:"acr"`
	AMR           []string `json:"amr"`
	AuthTime      int64    `json:"auth_time"`
	SID           string   `json:"sid"`
	Email         string   `json:"email"`
	EmailVerified any      `json:"email_verified"` // some providers send "true"
	Name          string   `json:"name"`
	PreferredUser string   `json:"preferred_username"`
}

// registered claims are not copied into Session.Claims: they have their own
// fields or mean nothing to route rules.
var registered = map[string]bool{
	"iss": true, "sub": true, "aud": true, "exp": true, "iat": true, "nbf": true, "jti": true,
	"azp": true, "nonce": true, "acr": true, "amr": true, "auth_time": true, "sid": true,
	"at_hash": true, "c_hash": true, "email": true, "email_verified": true, "name": true,
	"preferred_username": true, "client_id": true,
}

// Bounds on what a provider can make us keep per session.
const (
	maxClaims     = 64
	maxClaimValue = 1024
	maxListLen    = 256
)

// expectation is what the login transaction asked for.
type expectation struct {
	clientID  string
	trusted   []string
	nonce     string
	stepUp    bool
	acr       []string
	startedAt time.Time
	maxAge    time.Duration
}

// checkIDTokenClaims applies the checks go-oidc leaves to the caller: nonce
// (OIDC Core §3.1.3.7 (11), RFC 9700 §4.5.3.2 — before anything else is
// trusted), audience/azp, and for step-up acr and auth_time (§3.1.3.7
// (12)–(13), RFC 9470).
func checkIDTokenClaims(aud []string, c *idClaims, want expectation, now time.Time) error {
	if want.nonce == "" || subtle.ConstantTimeCompare([]byte(c.Nonce), []byte(want.nonce)) != 1 {
		return fmt.Errorf("%w: nonce mismatch", ErrIDToken)
	}
	if err := checkAudience(aud, c.AZP, want.clientID, want.trusted); err != nil {
		return err
	}
	if !want.stepUp {
		return nil
	}
	if len(want.acr) > 0 && !slices.Contains(want.acr, c.ACR) {
		return fmt.Errorf("%w: acr %q not in %v", ErrStepUp, c.ACR, want.acr)
	}
	if c.AuthTime == 0 {
		return fmt.Errorf("%w: no auth_time", ErrStepUp)
	}
	at := time.Unix(c.AuthTime, 0)
	// A step-up must prove an authentication that happened after we asked
	// for it; an old auth_time means the provider reused a session.
	if at.Before(want.startedAt.Add(-clockSkew)) {
		return fmt.Errorf("%w: auth_time %s before step-up start %s", ErrStepUp, at, want.startedAt)
	}
	if want.maxAge > 0 && now.Sub(at) > want.maxAge+clockSkew {
		return fmt.Errorf("%w: auth_time older than max_age", ErrStepUp)
	}
	return nil
}

// fillIdentity copies identity claims into s. raw is the decoded claim set;
// groupsClaim names the claim holding group names.
func fillIdentity(s *session.Session, c *idClaims, raw map[string]json.RawMessage, groupsClaim string) {
	s.SID = c.SID
	s.Email = c.Email
	switch v := c.EmailVerified.(type) {
	case bool:
		s.EmailVerified = v
	case string:
		s.EmailVerified = v == "true"
	}
	s.Name = c.Name
	s.PreferredUsername = c.PreferredUser
	s.Groups = nil
	s.Claims = nil
	if g, ok := raw[groupsClaim]; ok {
		s.Groups = stringList(g)
	}
	for k, v := range raw {
		if registered[k] || k == groupsClaim || len(s.Claims) >= maxClaims {
			continue
		}
		if l := stringList(v); len(l) > 0 {
			if s.Claims == nil {
				s.Claims = make(map[string][]string)
			}
			s.Claims[k] = l
		}
	}
}

// stringList decodes a string or an array of strings; anything else (and
// oversized values) yields nil.
func stringList(m json.RawMessage) []string {
	var one string
	if json.Unmarshal(m, &one) == nil {
		if one == "" || len(one) > maxClaimValue {
			return nil
		}
		return []string{one}
	}
	var many []string
	if json.Unmarshal(m, &many) != nil || len(many) > maxListLen {
		return nil
	}
	out := many[:0]
	for _, v := range many {
		if v != "" && len(v) <= maxClaimValue {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// backChannelEvent is the events member a logout token must carry (OIDC
// Back-Channel Logout 1.0 §2.4).
const backChannelEvent = "http://schemas.openid.net/event/backchannel-logout"

// logoutClaims is what a valid logout token tells us.
type logoutClaims struct {
	Issuer, Subject, SID, JTI string
	Expiry                    time.Time
}

// maxLogoutTokenAge bounds how old (by iat) a logout token may be; it also
// bounds how long the jti replay cache must remember it.
const maxLogoutTokenAge = 10 * time.Minute

// checkLogoutClaims applies Back-Channel Logout 1.0 §2.6 steps 3–6 to the
// decoded claims of a token whose signature, iss, aud membership and exp
// go-oidc already verified.
func checkLogoutClaims(raw map[string]json.RawMessage, aud []string, clientID string, trusted []string, now time.Time) (logoutClaims, error) {
	var lc logoutClaims
	var c struct {
		Iss    string                     `json:"iss"`
		Sub    string                     `json:"sub"`
		SID    string                     `json:"sid"`
		JTI    string                     `json:"jti"`
		Iat    *int64                     `json:"iat"`
		Exp    int64                      `json:"exp"`
		AZP    string                     `json:"azp"`
		Events map[string]json.RawMessage `json:"events"`
	}
	b, _ := json.Marshal(raw)
	if err := json.Unmarshal(b, &c); err != nil {
		return lc, fmt.Errorf("%w: claims: %v", ErrLogoutToken, err)
	}
	// "nonce" is prohibited so that a logout token can never pass as an ID
	// token and vice versa (§2.4; cross-JWT confusion, RFC 8725 §2.8).
	if _, ok := raw["nonce"]; ok {
		return lc, fmt.Errorf("%w: contains nonce", ErrLogoutToken)
	}
	ev, ok := c.Events[backChannelEvent]
	if !ok || len(ev) == 0 || ev[0] != '{' {
		return lc, fmt.Errorf("%w: events lacks the back-channel logout member", ErrLogoutToken)
	}
	if c.Sub == "" && c.SID == "" {
		return lc, fmt.Errorf("%w: neither sub nor sid", ErrLogoutToken)
	}
	if c.JTI == "" {
		return lc, fmt.Errorf("%w: no jti", ErrLogoutToken)
	}
	if c.Iat == nil {
		return lc, fmt.Errorf("%w: no iat", ErrLogoutToken)
	}
	iat := time.Unix(*c.Iat, 0)
	if iat.After(now.Add(clockSkew)) || iat.Before(now.Add(-maxLogoutTokenAge)) {
		return lc, fmt.Errorf("%w: iat %s out of range", ErrLogoutToken, iat)
	}
	if err := checkAudience(aud, c.AZP, clientID, trusted); err != nil {
		return lc, fmt.Errorf("%w: %v", ErrLogoutToken, err)
	}
	return logoutClaims{Issuer: c.Iss, Subject: c.Sub, SID: c.SID, JTI: c.JTI, Expiry: time.Unix(c.Exp, 0)}, nil
}
