package e2etest

import (
	"regexp"
	"testing"
	"time"
)

// IDP is a running development OIDC provider (`edgeauth idp`). Its users
// are those of internal/devidp: alice/alice-password (groups staff,
// admins), bob/bob-password (group contractors), MFA code 123456; the
// client is edgeauth-demo / edgeauth-demo-secret.
type IDP struct {
	// Issuer is the provider's issuer URL, http://127.0.0.1:PORT.
	Issuer string
	// Proc is the provider process; Proc.Kill takes the provider away.
	Proc *Proc
}

// The demo client registered in the provider.
const (
	ClientID     = "edgeauth-demo"
	ClientSecret = "edgeauth-demo-secret"
	MFACode      = "123456"
)

// IDPOptions configure StartIDP.
type IDPOptions struct {
	// RedirectURIs are the client's allowed redirect URIs; at least one
	// (edgeauth's http://127.0.0.1:PORT/.edgeauth/callback).
	RedirectURIs []string
	// PostLogoutRedirectURIs are allowed after RP-initiated logout. Zero:
	// none.
	PostLogoutRedirectURIs []string
	// BackChannelLogoutURI is the client's back-channel logout endpoint.
	// Zero: none.
	BackChannelLogoutURI string
	// TokenLifetime is the access and ID token lifetime. Zero: the
	// provider's default (5m).
	TokenLifetime time.Duration
	// Listen is the address to listen on. Zero: "127.0.0.1:0" (a free
	// port). Set it to start a provider again on a known port.
	Listen string
}

var issuerLine = regexp.MustCompile(`(?m)^issuer (http://127\.0\.0\.1:[0-9]+)\s*$`)

// StartIDP runs `edgeauth idp` with o, waits until it prints its issuer
// (StartTimeout), and stops it in t.Cleanup.
func StartIDP(t testing.TB, o IDPOptions) *IDP {
	t.Helper()
	if len(o.RedirectURIs) == 0 {
		t.Fatal("e2etest: StartIDP needs at least one redirect URI")
	}
	listen := o.Listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	args := []string{"idp", "-listen", listen}
	for _, u := range o.RedirectURIs {
		args = append(args, "-redirect-uri", u)
	}
	for _, u := range o.PostLogoutRedirectURIs {
		args = append(args, "-post-logout-redirect-uri", u)
	}
	if o.BackChannelLogoutURI != "" {
		args = append(args, "-backchannel-logout-uri", o.BackChannelLogoutURI)
	}
	if o.TokenLifetime > 0 {
		args = append(args, "-token-lifetime", o.TokenLifetime.String())
	}
	p := StartProc(t, "idp", Binary(t), args, nil)
	m := p.WaitMatch(t, issuerLine, StartTimeout)
	return &IDP{Issuer: m[1], Proc: p}
}
