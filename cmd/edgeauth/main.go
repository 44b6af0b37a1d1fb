// Command edgeauth is an authenticating reverse proxy for web apps that have
// no login of their own: it enforces OpenID Connect single sign-on for
// browsers, validates bearer tokens for APIs, scores each request's risk
// from GeoIP and device signals, and forwards allowed requests with the
// user's identity.
//
// Subcommands: run, validate, demo, version, sessions, risk replay. See
// `edgeauth help`.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3"; the
// module build info fills it otherwise.
var version = ""

const usage = `edgeauth — an authenticating reverse proxy for apps without a login of their own

Usage:
  edgeauth run      -config FILE     serve traffic as the config file says
  edgeauth validate -config FILE     check a config file; lists every problem, exit 1 if any
  edgeauth demo                      start a demo on 127.0.0.1: an OIDC provider, a legacy
                                     app and edgeauth in front of it; prints the URL to open
  edgeauth sessions list|revoke|forget-devices ...
                                     talk to a running edgeauth's admin API (offboarding)
  edgeauth risk replay -config FILE [-in events.jsonl] [-out decisions.jsonl]
                                     score logged events with the configured risk rules
  edgeauth version                   print the version

Signals (run): SIGHUP reloads the config (the old config keeps serving if the new one is
invalid); SIGTERM and SIGINT drain in-flight requests and stop.

A commented example config is deploy/edgeauth.example.yaml; the reference is
deploy/CONFIG.md. Run 'edgeauth COMMAND -h' for a command's flags.
`

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

func runMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return runCommand(args[1:], stderr)
	case "validate":
		return validateCommand(args[1:], stdout, stderr)
	case "demo":
		return demoCommand(args[1:], stdout, stderr)
	case "sessions":
		return sessionsCommand(args[1:], stdout, stderr)
	case "risk":
		return riskCommand(args[1:], stdout, stderr)
	case "idp":
		// Not in the usage text: starts only the development OIDC provider,
		// so tests can run it as a process of its own.
		return idpCommand(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "edgeauth", buildVersion())
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "edgeauth: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}
