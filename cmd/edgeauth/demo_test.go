package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeauth/edgeauth/internal/e2etest"
)

// lockedBuffer is an io.Writer safe for the demo's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestDemoSmoke runs `edgeauth demo` in-process on free ports and walks
// the tour the demo prints: the deep link after signing in as alice,
// /admin/ asking for the MFA code, bob refused on /admin/, the public
// page without login; cancelling the context stops everything.
func TestDemoSmoke(t *testing.T) {
	t.Parallel()
	port, idpPort, adminPort := e2etest.FreePort(t), e2etest.FreePort(t), e2etest.FreePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr lockedBuffer
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- runDemo(ctx, port, idpPort, 0, adminPort, &stdout, &stderr, ready) }()

	var base string
	select {
	case base = <-ready:
	case err := <-done:
		t.Fatalf("demo stopped before it was ready: %v\nstderr:\n%s", err, stderr.String())
	case <-time.After(e2etest.StartTimeout):
		t.Fatalf("demo not ready within %s\nstderr:\n%s", e2etest.StartTimeout, stderr.String())
	}
	for _, want := range []string{base + "/reports/q3?view=full", "alice / alice-password", "bob   / bob-password", "123456"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("the demo's instructions do not mention %q:\n%s", want, stdout.String())
		}
	}

	// Signing in works as soon as the demo says it is ready: the first
	// navigation is sent to the provider, not answered 503 because
	// provider discovery has not finished yet.
	first := e2etest.NewClient(t)
	resp, body := e2etest.Navigate(t, first, base+"/reports/q3?view=full", nil)
	if resp.StatusCode != http.StatusFound {
		t.Errorf("first navigation after the demo was ready: status %d (%.200q), want 302 to the provider: "+
			"runDemo signals ready (and prints the URL) before OIDC discovery finished", resp.StatusCode, body)
		e2etest.Eventually(t, e2etest.StartTimeout, "sign-in available", func() bool {
			resp, _ := e2etest.Navigate(t, first, base+"/reports/q3?view=full", nil)
			return resp.StatusCode == http.StatusFound
		})
	}

	// The public page needs no login and carries no identity.
	anon := e2etest.NewClient(t)
	resp, body = e2etest.Navigate(t, anon, base+"/public/", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "edgeauth sent no identity") {
		t.Errorf("public page: status %d, body %.300q", resp.StatusCode, body)
	}

	// alice: the deep link, with her identity shown by the app.
	alice := e2etest.NewClient(t)
	resp, err := e2etest.Login(t, alice, base+"/reports/q3?view=full", "alice", "alice-password", "", nil)
	if err != nil {
		t.Fatalf("alice login: %v", err)
	}
	page := readAll(t, resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `<code id="path">/reports/q3</code>`) || !strings.Contains(page, `id="user"`) {
		t.Fatalf("alice on the deep link: status %d, page:\n%.600s", resp.StatusCode, page)
	}

	// /admin/ asks alice for MFA: she is sent back to the provider with
	// acr_values=mfa; signing in there with the code opens the page.
	resp, _ = e2etest.Navigate(t, alice, base+"/admin/", nil)
	if resp.StatusCode != http.StatusFound || !strings.Contains(resp.Header.Get("Location"), "acr_values=mfa") {
		t.Fatalf("alice on /admin/ without MFA: %d Location %q, want 302 to the provider asking for mfa", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, err = e2etest.Login(t, alice, base+"/admin/", "alice", "alice-password", e2etest.MFACode, nil)
	if err != nil {
		t.Fatalf("alice step-up: %v", err)
	}
	if page := readAll(t, resp); resp.StatusCode != http.StatusOK || !strings.Contains(page, `<code id="path">/admin/</code>`) {
		t.Errorf("alice on /admin/ with MFA: status %d, page:\n%.600s", resp.StatusCode, page)
	}

	// bob is not an admin: 403, whatever he types.
	bob := e2etest.NewClient(t)
	resp, err = e2etest.Login(t, bob, base+"/admin/", "bob", "bob-password", e2etest.MFACode, nil)
	if err != nil {
		t.Fatalf("bob login: %v", err)
	}
	if page := readAll(t, resp); resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "request id") {
		t.Errorf("bob on /admin/: status %d, page:\n%.600s", resp.StatusCode, page)
	}

	// Stop: the demo returns once the context ends.
	for _, c := range []*http.Client{first, anon, alice, bob} {
		c.CloseIdleConnections()
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("demo returned %v after cancel, want nil", err)
		}
	case <-time.After(e2etest.StopTimeout + 20*time.Second):
		t.Fatal("demo did not return after its context was cancelled")
	}
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		t.Fatalf("read body: %v", err)
	}
	return b.String()
}
