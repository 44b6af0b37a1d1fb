package main

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/valyala/fasthttp"

	"github.com/edgeauth/edgeauth/config"
	"github.com/edgeauth/edgeauth/internal/devidp"
)

//go:embed demo.yaml
var demoConfig []byte

// demoCommand starts, on loopback and in one process, a development OIDC
// provider with demo users, a "legacy app" without a login, and edgeauth in
// front of the app with the embedded demo config.
func demoCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := fs.Int("port", 8080, "edgeauth port (the URL to open)")
	idpPort := fs.Int("idp-port", 9000, "OIDC provider port")
	appPort := fs.Int("app-port", 0, "demo app port (0 picks a free one)")
	adminPort := fs.Int("admin-port", 9090, "admin listener port (metrics, health, admin API)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := runDemo(ctx, *port, *idpPort, *appPort, *adminPort, stdout, stderr, nil); err != nil {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return 1
	}
	return 0
}

// runDemo is demoCommand without flags and signals; ready, when not nil,
// receives the edgeauth URL once everything accepts connections.
func runDemo(ctx context.Context, port, idpPort, appPort, adminPort int, stdout, stderr io.Writer, ready chan<- string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	listen := func(p int) (net.Listener, error) {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			return nil, fmt.Errorf("listen on 127.0.0.1:%d: %w (choose another port with the flags)", p, err)
		}
		return ln, nil
	}
	mainLn, err := listen(port)
	if err != nil {
		return err
	}
	defer mainLn.Close()
	adminLn, err := listen(adminPort)
	if err != nil {
		return err
	}
	defer adminLn.Close()
	idpLn, err := listen(idpPort)
	if err != nil {
		return err
	}
	appLn, err := listen(appPort)
	if err != nil {
		return err
	}

	base := "http://" + mainLn.Addr().String()
	issuer := "http://" + idpLn.Addr().String()
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	idp, err := devidp.New(devidp.Options{
		Issuer: issuer,
		Clients: []devidp.Client{{
			ID: devidp.DemoClientID, Secret: devidp.DemoClientSecret,
			RedirectURIs:           []string{base + "/.edgeauth/callback"},
			PostLogoutRedirectURIs: []string{base + "/public/"},
			BackChannelLogoutURI:   base + "/.edgeauth/backchannel-logout",
		}},
		Logger: logger,
	})
	if err != nil {
		return err
	}
	idpDone := make(chan error, 1)
	go func() { idpDone <- devidp.Serve(ctx, idpLn, idp) }()

	app := &fasthttp.Server{Handler: demoApp, Name: "legacy-app"}
	go func() { _ = app.Serve(appLn) }()
	defer app.Shutdown()

	dir, err := os.MkdirTemp("", "edgeauth-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	vars := map[string]string{
		"DEMO_PORT":        strconv.Itoa(mainLn.Addr().(*net.TCPAddr).Port),
		"DEMO_ADMIN_PORT":  strconv.Itoa(adminLn.Addr().(*net.TCPAddr).Port),
		"DEMO_APP_PORT":    strconv.Itoa(appLn.Addr().(*net.TCPAddr).Port),
		"DEMO_ISSUER":      issuer,
		"DEMO_SESSION_KEY": randomHex(32),
		"DEMO_ADMIN_TOKEN": randomHex(32),
		"DEMO_AUDIT_FILE":  filepath.Join(dir, "audit.jsonl"),
	}
	cfg, err := config.Parse(demoConfig, "demo.yaml", func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	if err != nil {
		return fmt.Errorf("demo config: %w", err)
	}

	serving := func() {
		fmt.Fprintf(stdout, demoBanner, base, issuer, devidp.DemoMFACode, base, base, adminLn.Addr(), vars["DEMO_AUDIT_FILE"])
		if ready != nil {
			ready <- base
		}
	}
	err = serve(ctx, "", cfg, logger, &listeners{main: mainLn, admin: adminLn, serving: serving})
	cancel() // stop the provider too when edgeauth stopped on its own
	if ierr := <-idpDone; err == nil && ierr != nil && !errors.Is(ierr, context.Canceled) {
		err = ierr
	}
	return err
}

const demoBanner = `
edgeauth demo is running. Open this in a browser:

    %s/reports/q3?view=full

Sign in at the demo provider (%s) as
    alice / alice-password   groups staff, admins: may open /admin/ (asks for the MFA code)
    bob   / bob-password     group contractors: gets 403 on /admin/
MFA code for both: %s

Public page without login: %s/public/
Sign out:                  %s/.edgeauth/logout
Metrics and health:        http://%s/metrics
Audit events are written to %s
Stop with Ctrl-C.
`

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}
