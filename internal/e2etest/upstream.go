package e2etest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
)

// Upstream is an in-process HTTP server on 127.0.0.1 standing in for the
// app behind edgeauth. It records every request it receives.
type Upstream struct {
	// URL is http://127.0.0.1:PORT, for a route's upstream:.
	URL string

	srv     *httptest.Server
	handler http.Handler
	mu      sync.Mutex
	reqs    []Recorded
}

// Recorded is one request as the upstream saw it.
type Recorded struct {
	Method   string
	Path     string
	RawQuery string
	// Header is every header received, as net/http parsed it: names are
	// canonicalised (a name with '_' keeps its underscores), duplicates are
	// kept as several values.
	Header http.Header
}

// Echo is the JSON body the default upstream answers with.
type Echo struct {
	Method   string `json:"method"`
	Path     string `json:"path"`
	RawQuery string `json:"raw_query"`
	// Identity holds every received header whose name, lower-cased with
	// '_' read as '-', starts with "x-auth-request-" or "x-edgeauth-":
	// the identity edgeauth sent, and any spoofed copy that got through.
	// Several values are joined with ", ".
	Identity map[string]string `json:"identity"`
}

// StartUpstream starts an upstream that answers every request 200 with an
// Echo as JSON. t.Cleanup closes it.
func StartUpstream(t testing.TB) *Upstream {
	t.Helper()
	return StartUpstreamHandler(t, http.HandlerFunc(echo))
}

// StartUpstreamHandler starts an upstream that records each request and
// then hands it to h.
func StartUpstreamHandler(t testing.TB, h http.Handler) *Upstream {
	t.Helper()
	u := &Upstream{handler: h}
	// httptest listens on 127.0.0.1:0 (IPv4 loopback first).
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	u.URL = u.srv.URL
	t.Cleanup(u.srv.Close)
	return u
}

func (u *Upstream) serve(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.reqs = append(u.reqs, Recorded{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: r.Header.Clone()})
	u.mu.Unlock()
	u.handler.ServeHTTP(w, r)
}

// IdentityHeaders returns the identity-like headers of h as Echo.Identity
// describes them.
func IdentityHeaders(h http.Header) map[string]string {
	out := map[string]string{}
	for name, values := range h {
		n := strings.ReplaceAll(strings.ToLower(name), "_", "-")
		if strings.HasPrefix(n, "x-auth-request-") || strings.HasPrefix(n, "x-edgeauth-") {
			out[name] = strings.Join(values, ", ")
		}
	}
	return out
}

func echo(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(Echo{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Identity: IdentityHeaders(r.Header)})
}

// Requests returns a copy of the requests received so far, oldest first.
func (u *Upstream) Requests() []Recorded {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]Recorded(nil), u.reqs...)
}

// Count is the number of requests received so far.
func (u *Upstream) Count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

// Reset forgets the recorded requests.
func (u *Upstream) Reset() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.reqs = nil
}

// HeadersContaining returns, sorted, the "Name: value" pairs of every
// recorded request whose value contains s — the check that a spoofed
// value never reached the app, whatever name it travelled under.
func (u *Upstream) HeadersContaining(s string) []string {
	var out []string
	for _, r := range u.Requests() {
		for name, values := range r.Header {
			for _, v := range values {
				if strings.Contains(v, s) {
					out = append(out, name+": "+v)
				}
			}
		}
	}
	sort.Strings(out)
	return out
}
