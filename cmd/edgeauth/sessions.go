package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

const sessionsUsage = `usage:
  edgeauth sessions list -sub SUB [-iss ISS] [-json]
  edgeauth sessions revoke -sub SUB [-iss ISS]          revoke every session of a user (offboarding)
  edgeauth sessions revoke -id ID|HASH [-sub SUB] [-iss ISS]
                                                        revoke one session (a hash as listed needs -sub)
  edgeauth sessions forget-devices -sub SUB [-iss ISS]  the user's next request steps up
common flags:
  -admin URL        admin listener (default http://127.0.0.1:9090)
  -token-file FILE  admin token (default: $EDGEAUTH_ADMIN_TOKEN)
  -timeout D        request timeout (default 10s)
`

// sessionsCommand is the CLI client of the admin sessions API. Exit codes:
// 0 ok, 1 failure (server, network, not found), 2 usage.
func sessionsCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "help" {
		fmt.Fprint(stderr, sessionsUsage)
		return 2
	}
	verb := args[0]
	fs := flag.NewFlagSet("edgeauth sessions "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, sessionsUsage) }
	adminURL := fs.String("admin", "http://127.0.0.1:9090", "admin listener URL")
	tokenFile := fs.String("token-file", "", "file holding the admin token (default $EDGEAUTH_ADMIN_TOKEN)")
	timeout := fs.Duration("timeout", 10*time.Second, "request timeout")
	sub := fs.String("sub", "", "subject (user id at the provider)")
	iss := fs.String("iss", "", "issuer (default: the configured provider)")
	id := fs.String("id", "", "session id or its hash (revoke only)")
	asJSON := fs.Bool("json", false, "print the raw JSON response (list only)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	usage := func(msg string) int {
		fmt.Fprintf(stderr, "edgeauth sessions %s: %s\n", verb, msg)
		return 2
	}
	if fs.NArg() > 0 {
		return usage("unexpected arguments: " + strings.Join(fs.Args(), " "))
	}
	base, err := url.Parse(*adminURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return usage("-admin must be an http(s) URL, got " + *adminURL)
	}

	var method, path string
	q := url.Values{}
	if *iss != "" {
		q.Set("iss", *iss)
	}
	userPath := func(suffix string) string { return "/admin/users/" + url.PathEscape(*sub) + suffix }
	switch verb {
	case "list":
		if *sub == "" || *id != "" {
			return usage("list needs -sub and takes no -id")
		}
		method, path = http.MethodGet, userPath("/sessions")
	case "revoke":
		switch {
		case *id != "":
			method, path = http.MethodDelete, "/admin/sessions/"+url.PathEscape(*id)
			if *sub != "" {
				q.Set("sub", *sub)
			}
		case *sub != "":
			method, path = http.MethodDelete, userPath("/sessions")
		default:
			return usage("revoke needs -sub (all sessions) or -id (one session)")
		}
	case "forget-devices":
		if *sub == "" || *id != "" {
			return usage("forget-devices needs -sub and takes no -id")
		}
		method, path = http.MethodPost, userPath("/devices/forget")
	default:
		fmt.Fprintf(stderr, "edgeauth sessions: unknown command %q\n%s", verb, sessionsUsage)
		return 2
	}

	token, err := adminToken(*tokenFile)
	if err != nil {
		fmt.Fprintf(stderr, "edgeauth sessions: %v\n", err)
		return 2
	}
	u := *base
	// path is escaped already (a subject may hold "/" as %2F); Path and
	// RawPath must agree for url.URL to keep the escaping.
	u.RawPath = strings.TrimSuffix(base.EscapedPath(), "/") + path
	u.Path, _ = url.PathUnescape(u.RawPath)
	u.RawQuery = q.Encode()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	body, err := adminRequest(ctx, method, u.String(), token)
	if err != nil {
		fmt.Fprintf(stderr, "edgeauth sessions %s: %v\n", verb, err)
		return 1
	}
	if verb == "list" && !*asJSON {
		return printSessions(stdout, stderr, body)
	}
	fmt.Fprintf(stdout, "%s", body)
	return 0
}

// adminToken reads the token from file, or from EDGEAUTH_ADMIN_TOKEN.
func adminToken(file string) (string, error) {
	var tok string
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("read admin token: %w", err)
		}
		tok = string(b)
	} else {
		tok = os.Getenv("EDGEAUTH_ADMIN_TOKEN")
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", errors.New("no admin token: pass -token-file or set EDGEAUTH_ADMIN_TOKEN")
	}
	return tok, nil
}

// adminRequest sends one request and returns the body of a 2xx answer; any
// other status becomes an error carrying the server's message.
func adminRequest(ctx context.Context, method, u, token string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin API unreachable: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode/100 == 2 {
		return body, nil
	}
	var e struct{ Error, Message, RequestID string }
	if json.Unmarshal(body, &e) == nil && e.Message != "" {
		return nil, fmt.Errorf("%s (%s, HTTP %d)", e.Message, e.Error, resp.StatusCode)
	}
	return nil, fmt.Errorf("HTTP %d from the admin API", resp.StatusCode)
}

func printSessions(stdout, stderr io.Writer, body []byte) int {
	var r struct {
		Subject  string
		Sessions []struct {
			ID, IP, Country, Device string
			Created                 string `json:"created"`
			LastSeen                string `json:"last_seen"`
		}
	}
	if err := json.Unmarshal(body, &r); err != nil {
		fmt.Fprintf(stderr, "edgeauth sessions list: unexpected response: %v\n", err)
		return 1
	}
	if len(r.Sessions) == 0 {
		fmt.Fprintf(stdout, "no active sessions for %s\n", r.Subject)
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCREATED\tLAST SEEN\tIP\tCOUNTRY\tDEVICE")
	for _, s := range r.Sessions {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Created, s.LastSeen, s.IP, s.Country, s.Device)
	}
	tw.Flush()
	return 0
}
