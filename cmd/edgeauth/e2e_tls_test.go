package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeauth/edgeauth/internal/e2etest"
)

// tlsWriteCert writes a self-signed certificate for 127.0.0.1.
func tlsWriteCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// Served over TLS, the session cookie must carry the __Host- prefix and
// Secure (RFC 6265bis §4.1.3.2: locked to this host, never sent over
// plain HTTP), the device cookie Secure too, and a full sign-in must work
// through the real binary.
func TestTLSSignInUsesHostPrefixedSecureCookies(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := tlsWriteCert(t, dir)
	up := e2etest.StartUpstream(t)
	port, admin := e2etest.FreePort(t), e2etest.FreePort(t)
	base := fmt.Sprintf("https://127.0.0.1:%d", port)
	idp := e2etest.StartIDP(t, e2etest.IDPOptions{RedirectURIs: []string{base + "/.edgeauth/callback"}})
	cfg := fmt.Sprintf(`log: {level: debug, format: json}
listen: "127.0.0.1:%d"
tls: {cert_file: %q, key_file: %q}
admin: {listen: "127.0.0.1:%d"}
oidc:
  issuer: %q
  client_id: %s
  client_secret: %s
  scopes: [openid, email, profile, groups]
session:
  secrets: [%q]
routes:
  - {name: app, path: /, upstream: %q}
`, port, certFile, keyFile, admin, idp.Issuer, e2etest.ClientID, e2etest.ClientSecret, e2etest.RandomHex(t, 32), up.URL)
	e2etest.StartEdgeauth(t, cfg)

	c := e2etest.NewClient(t, func(c *http.Client) {
		c.Transport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // self-signed test cert
	})
	resp, err := e2etest.Login(t, c, base+"/reports?q=1", "alice", "alice-password", "", nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in over TLS: %v %v", resp, err)
	}
	if got := up.Requests(); len(got) == 0 || got[len(got)-1].Header.Get("X-Auth-Request-User") != "u-alice" {
		t.Fatalf("upstream did not receive alice: %+v", got)
	}

	// The cookies edgeauth set, as the callback sent them.
	c2 := e2etest.NewClient(t, func(c *http.Client) {
		c.Transport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // self-signed test cert
	})
	next, _, err := e2etest.LoginUntil(t, c2, base+"/", "alice", "alice-password", "", nil, e2etest.IsCallback)
	if err != nil {
		t.Fatal(err)
	}
	cb, _ := e2etest.Do(t, c2, http.MethodGet, next, nil, nil)
	var session, device string
	for _, sc := range cb.Header.Values("Set-Cookie") {
		switch {
		case strings.HasPrefix(sc, "__Host-edgeauth_session="):
			session = sc
		case strings.HasPrefix(sc, "edgeauth_device="):
			device = sc
		}
	}
	if session == "" {
		t.Fatalf("no __Host- session cookie in %q", cb.Header.Values("Set-Cookie"))
	}
	lower := strings.ToLower(session)
	for _, attr := range []string{"; secure", "; httponly", "; path=/", "samesite=lax"} {
		if !strings.Contains(lower, attr) {
			t.Errorf("session cookie %q lacks %q", session, attr)
		}
	}
	if strings.Contains(lower, "domain=") {
		t.Errorf("session cookie %q has a Domain (not allowed with __Host-)", session)
	}
	if device != "" && !strings.Contains(strings.ToLower(device), "; secure") {
		t.Errorf("device cookie %q is not Secure", device)
	}
}
