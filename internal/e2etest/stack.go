package e2etest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"text/template"
)

// ConfigVars are the values a config template passed to StartStack can
// use, as {{.Field}}.
type ConfigVars struct {
	// Port and AdminPort are edgeauth's free ports on 127.0.0.1.
	Port, AdminPort int
	// Listen and AdminListen are "127.0.0.1:Port" and
	// "127.0.0.1:AdminPort".
	Listen, AdminListen string
	// URL is edgeauth's base URL, http://127.0.0.1:Port.
	URL string
	// Issuer is the provider's issuer URL.
	Issuer string
	// Upstream is the recording upstream's URL.
	Upstream string
	// SessionKey and AdminToken are fresh 64-hex-digit secrets.
	SessionKey, AdminToken string
	// Dir is a temporary directory for files the config names (snapshot,
	// audit log).
	Dir string
}

// DefaultConfig is a template for StartStack: OIDC login against the
// development provider, a memory session store, a public route /public/,
// an admins-only route /admin/ and everything else protected. Copy and
// change it for a test's needs.
const DefaultConfig = `log: {level: debug, format: json}
listen: "{{.Listen}}"
admin:
  listen: "{{.AdminListen}}"
  token: "{{.AdminToken}}"
oidc:
  issuer: "{{.Issuer}}"
  client_id: edgeauth-demo
  client_secret: edgeauth-demo-secret
  scopes: [openid, email, profile, groups, offline_access]
  post_logout_redirect_url: "{{.URL}}/public/"
session:
  secrets: ["{{.SessionKey}}"]
  memory_budget: 16MiB
routes:
  - name: public
    path: /public/
    upstream: "{{.Upstream}}"
    auth: none
  - name: admin
    path: /admin/
    upstream: "{{.Upstream}}"
    allow: {groups: [admins]}
  - name: app
    path: /
    upstream: "{{.Upstream}}"
`

// Stack is a provider, a recording upstream and edgeauth in front of it,
// each started by the kit and stopped in t.Cleanup.
type Stack struct {
	Vars     ConfigVars
	Upstream *Upstream
	IDP      *IDP
	Edgeauth *Edgeauth
	// Config is the rendered config edgeauth started with.
	Config string
}

// StackOptions configure StartStackWith.
type StackOptions struct {
	// IDP is passed to StartIDP after RedirectURIs,
	// PostLogoutRedirectURIs and BackChannelLogoutURI are filled in for
	// edgeauth's URL when empty.
	IDP IDPOptions
	// Upstream, when set, is used instead of a new StartUpstream.
	Upstream *Upstream
	// Edgeauth is passed to StartEdgeauthWith.
	Edgeauth EdgeauthOptions
}

// StartStack starts an upstream, a provider and edgeauth with the config
// that configTemplate (text/template over ConfigVars; DefaultConfig is a
// start) renders to.
func StartStack(t testing.TB, configTemplate string) *Stack {
	t.Helper()
	return StartStackWith(t, configTemplate, StackOptions{})
}

// StartStackWith is StartStack with options.
func StartStackWith(t testing.TB, configTemplate string, o StackOptions) *Stack {
	t.Helper()
	tmpl, err := template.New("config").Option("missingkey=error").Parse(configTemplate)
	if err != nil {
		t.Fatalf("e2etest: config template: %v", err)
	}
	s := &Stack{Upstream: o.Upstream}
	if s.Upstream == nil {
		s.Upstream = StartUpstream(t)
	}
	v := ConfigVars{Port: FreePort(t), AdminPort: FreePort(t), Upstream: s.Upstream.URL, Dir: t.TempDir(),
		SessionKey: RandomHex(t, 32), AdminToken: RandomHex(t, 32)}
	for v.AdminPort == v.Port {
		v.AdminPort = FreePort(t)
	}
	v.Listen, v.AdminListen = fmt.Sprintf("127.0.0.1:%d", v.Port), fmt.Sprintf("127.0.0.1:%d", v.AdminPort)
	v.URL = "http://" + v.Listen
	idpo := o.IDP
	if len(idpo.RedirectURIs) == 0 {
		idpo.RedirectURIs = []string{v.URL + "/.edgeauth/callback"}
	}
	if len(idpo.PostLogoutRedirectURIs) == 0 {
		idpo.PostLogoutRedirectURIs = []string{v.URL + "/public/", v.URL + "/"}
	}
	if idpo.BackChannelLogoutURI == "" {
		idpo.BackChannelLogoutURI = v.URL + "/.edgeauth/backchannel-logout"
	}
	s.IDP = StartIDP(t, idpo)
	v.Issuer = s.IDP.Issuer
	s.Vars = v
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, v); err != nil {
		t.Fatalf("e2etest: config template: %v", err)
	}
	s.Config = buf.String()
	s.Edgeauth = StartEdgeauthWith(t, s.Config, o.Edgeauth)
	return s
}

// Render renders another config template with the stack's variables, for
// WriteConfig and reload tests.
func (s *Stack) Render(t testing.TB, configTemplate string) string {
	t.Helper()
	tmpl, err := template.New("config").Option("missingkey=error").Parse(configTemplate)
	if err != nil {
		t.Fatalf("e2etest: config template: %v", err)
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, s.Vars); err != nil {
		t.Fatalf("e2etest: config template: %v", err)
	}
	return b.String()
}

// RandomHex returns n random bytes, hex-encoded.
func RandomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("e2etest: random: %v", err)
	}
	return hex.EncodeToString(b)
}
