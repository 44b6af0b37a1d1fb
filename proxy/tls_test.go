package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func writeCert(t *testing.T, dir, cn string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{cn}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	// Write to temp names and rename so the poller never sees half a pair.
	for name, blk := range map[string]*pem.Block{"tls.crt": {Type: "CERTIFICATE", Bytes: der}, "tls.key": {Type: "EC PRIVATE KEY", Bytes: kb}} {
		tmp := filepath.Join(dir, name+".tmp")
		if err := os.WriteFile(tmp, pem.EncodeToMemory(blk), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

func servedCN(t *testing.T, addr string) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: "a.test"}) //nolint:gosec // test reads the served cert
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// TestTLSReloadAndClientHello: the certificate is replaced when its files
// change, a broken pair keeps the old one, and handlers see the ClientHello.
func TestTLSReloadAndClientHello(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeCert(t, dir, "first.test")
	var hellos atomic.Int64
	var srv *Server
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("up") })
	h := startProxy(t, Options{
		TLS:           &TLSOptions{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"), ReloadInterval: 20 * time.Millisecond},
		OnClientHello: func(hi *tls.ClientHelloInfo) string { hellos.Add(1); return "tag-" + hi.ServerName },
	}, RoutesConfig{
		Routes: []RouteOptions{{Name: "r", Upstreams: []string{up}}},
		Reserved: func(ctx *fasthttp.RequestCtx) {
			if hi := srv.ClientHello(ctx); hi != nil && hi.ServerName == "a.test" && len(hi.CipherSuites) > 0 {
				ctx.SetBodyString("hello seen, " + srv.ConnTag(ctx))
				return
			}
			ctx.SetBodyString("no hello")
		},
	})
	srv = h.srv
	if cn := servedCN(t, h.addr); cn != "first.test" {
		t.Fatalf("served %q", cn)
	}
	if hellos.Load() == 0 {
		t.Fatal("OnClientHello not called")
	}
	c := &fasthttp.Client{TLSConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "a.test"}} //nolint:gosec
	if _, body := get(t, c, "https://"+h.addr+"/.edgeauth/x"); body != "hello seen, tag-a.test" {
		t.Fatalf("reserved handler: %q", body)
	}
	// Forwarding a request that arrived over TLS to a plain-HTTP upstream
	// (it used to fail with 502: the client's https scheme went along).
	if resp, body := get(t, c, "https://"+h.addr+"/app"); resp.StatusCode() != 200 || body != "up" {
		t.Fatalf("TLS to plain-HTTP upstream: %d %q", resp.StatusCode(), body)
	}

	// A broken pair is ignored.
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // several poll intervals; nothing to poll for when the cert must NOT change
	if cn := servedCN(t, h.addr); cn != "first.test" {
		t.Fatalf("bad cert replaced the good one: %q", cn)
	}
	writeCert(t, dir, "second.test")
	for end := time.Now().Add(5 * time.Second); servedCN(t, h.addr) != "second.test"; {
		if time.Now().After(end) {
			t.Fatal("certificate not reloaded within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
