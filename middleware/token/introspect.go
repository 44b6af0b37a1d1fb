package token

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// maxIntrospectionBytes bounds an introspection response.
const maxIntrospectionBytes = 64 << 10

type introspector struct {
	url       string
	id        string
	secret    string
	issuer    string
	audiences []string
	ttl       time.Duration
	negTTL    time.Duration
	hc        *http.Client
}

func newIntrospector(o IntrospectionOptions) (*introspector, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("token: introspection: url %q is not an absolute http(s) URL", o.URL)
	}
	if o.Issuer == "" {
		return nil, errors.New("token: introspection: issuer is required")
	}
	if o.ClientID == "" {
		return nil, errors.New("token: introspection: client_id is required (RFC 7662 §2.1)")
	}
	in := &introspector{
		url: o.URL, id: o.ClientID, secret: o.ClientSecret, issuer: o.Issuer,
		audiences: slices.Clone(o.Audiences), ttl: o.CacheTTL, negTTL: o.NegativeTTL, hc: o.HTTPClient,
	}
	if in.ttl <= 0 {
		in.ttl = defaultIntroTTL
	}
	if in.negTTL <= 0 {
		in.negTTL = defaultNegativeTTL
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = defaultIntroTimeout
	}
	if in.hc == nil {
		in.hc = &http.Client{
			Timeout:       timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return in, nil
}

// introspect asks the authorization server about an opaque token (RFC 7662
// §2) and returns its claims and how long they may be cached: never beyond
// exp (§4). Any failure to get an answer is ReasonUnavailable: fail closed.
func (in *introspector) introspect(ctx context.Context, raw []byte, now time.Time, groupsClaim string, leeway time.Duration) (*Claims, time.Time, error) {
	form := url.Values{"token": {string(raw)}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.url, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, time.Time{}, &Error{Reason: ReasonUnavailable, Cause: fmt.Errorf("token: introspection: %w", err)}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	// client_secret_basic: RFC 6749 §2.3.1 form-encodes both parts first.
	req.SetBasicAuth(url.QueryEscape(in.id), url.QueryEscape(in.secret))
	res, err := in.hc.Do(req)
	if err != nil {
		return nil, time.Time{}, &Error{Reason: ReasonUnavailable, Cause: fmt.Errorf("token: introspection: %w", err)}
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, time.Time{}, &Error{Reason: ReasonUnavailable, Cause: fmt.Errorf("token: introspection: status %d", res.StatusCode)}
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, maxIntrospectionBytes+1))
	if err != nil || len(body) > maxIntrospectionBytes {
		return nil, time.Time{}, &Error{Reason: ReasonUnavailable, Cause: errors.New("token: introspection: unreadable or oversized response")}
	}
	if err := checkJSON(body); err != nil {
		return nil, time.Time{}, &Error{Reason: ReasonUnavailable, Cause: fmt.Errorf("token: introspection: %w", err)}
	}
	var rc rawClaims
	if err := json.Unmarshal(body, &rc); err != nil {
		return nil, time.Time{}, &Error{Reason: ReasonUnavailable, Cause: fmt.Errorf("token: introspection: %w", err)}
	}
	var active bool
	if m, ok := rc["active"]; !ok || json.Unmarshal(m, &active) != nil {
		return nil, time.Time{}, &Error{Reason: ReasonUnavailable, Cause: errors.New("token: introspection: no boolean active")}
	}
	if !active {
		return nil, time.Time{}, reject(ReasonInactive, "active=false")
	}
	c, err := rc.toClaims(groupsClaim)
	if err != nil {
		return nil, time.Time{}, &Error{Reason: ReasonUnavailable, Cause: fmt.Errorf("token: introspection: %w", err)}
	}
	c.Introspected = true
	// The server vouches for the token, but we still hold it to our own
	// issuer, audience and time rules (RFC 7662 §4; STANDARDS §1.9).
	if c.Issuer == "" {
		c.Issuer = in.issuer
	} else if c.Issuer != in.issuer {
		return nil, time.Time{}, reject(ReasonBadIssuer, "introspection iss mismatch")
	}
	if len(in.audiences) > 0 && !slices.ContainsFunc(c.Audience, func(a string) bool { return slices.Contains(in.audiences, a) }) {
		return nil, time.Time{}, ErrBadAudience
	}
	if !c.Expiry.IsZero() && !now.Before(c.Expiry.Add(leeway)) {
		return nil, time.Time{}, ErrExpired
	}
	if !c.NotBefore.IsZero() && now.Add(leeway).Before(c.NotBefore) {
		return nil, time.Time{}, ErrNotYetValid
	}
	if c.Subject == "" {
		// RFC 9068 §2.2 convention: a client-credentials token's subject is
		// the client.
		c.Subject = c.ClientID
	}
	if c.Subject == "" {
		return nil, time.Time{}, reject(ReasonMissingClaim, "introspection: no sub or client_id")
	}
	return c, minTime(now.Add(in.ttl), c.Expiry), nil
}
