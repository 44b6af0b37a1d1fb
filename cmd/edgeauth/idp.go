package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/edgeauth/edgeauth/internal/devidp"
)

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// idpCommand runs only the development OIDC provider. It is how the
// end-to-end tests get a real provider in a process of its own, and how an
// operator can try edgeauth against something before wiring the real IdP.
// It prints "issuer URL" on stdout once it accepts connections.
func idpCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("idp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:9000", "address to listen on (loopback; port 0 picks one)")
	clientID := fs.String("client-id", devidp.DemoClientID, "OAuth client id")
	clientSecret := fs.String("client-secret", devidp.DemoClientSecret, "OAuth client secret")
	backchannel := fs.String("backchannel-logout-uri", "", "client's back-channel logout endpoint")
	tokenLifetime := fs.Duration("token-lifetime", 5*time.Minute, "access and ID token lifetime")
	var redirects, postLogout stringList
	fs.Var(&redirects, "redirect-uri", "allowed redirect URI (repeatable)")
	fs.Var(&postLogout, "post-logout-redirect-uri", "allowed post-logout redirect URI (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if len(redirects) == 0 {
		fmt.Fprintln(stderr, "idp: at least one -redirect-uri is required")
		return 2
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "idp: listen: %v\n", err)
		return 1
	}
	issuer := "http://" + ln.Addr().String()
	p, err := devidp.New(devidp.Options{
		Issuer: issuer,
		Clients: []devidp.Client{{
			ID: *clientID, Secret: *clientSecret,
			RedirectURIs: redirects, PostLogoutRedirectURIs: postLogout,
			BackChannelLogoutURI: *backchannel,
		}},
		TokenLifetime: *tokenLifetime,
		Logger:        slog.New(slog.NewJSONHandler(stderr, nil)),
	})
	if err != nil {
		ln.Close()
		fmt.Fprintf(stderr, "idp: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	fmt.Fprintln(stdout, "issuer", issuer)
	if err := devidp.Serve(ctx, ln, p); err != nil {
		fmt.Fprintf(stderr, "idp: %v\n", err)
		return 1
	}
	return 0
}
