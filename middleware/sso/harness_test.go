package sso

import (
	"context"
	"fmt"
	"github.com/edgeauth/edgeauth/middleware/policy"
	"github.com/edgeauth/edgeauth/proxy/errpage"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/edgeauth/edgeauth/internal/devidp"
	"github.com/edgeauth/edgeauth/middleware/reqstate"
	"github.com/edgeauth/edgeauth/middleware/session"
)

// idp is a real devidp on a loopback port whose handler can be switched to
// "unreachable" (connections aborted) and back.
type idp struct {
	*devidp.Provider
	down atomic.Bool
}

// clock is an adjustable clock shared by the RP and the store.
type clock struct{ off atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// env is one test world: provider, edgeauth (fasthttp on loopback) with the
// real session middleware, RP middleware and a tiny app behind it.
type env struct {
	t     *testing.T
	idp   *idp
	rp    *RP
	store *session.MemoryStore
	clock *clock
	base  string // http://127.0.0.1:PORT of edgeauth
}

type envOpts struct {
	idpDown bool // provider unreachable at start-up
	tweak   func(*Options)
}

var testKey = []byte("0123456789abcdef0123456789abcdef-test-key")

func newEnv(t *testing.T, eo envOpts) *env {
	t.Helper()
	edgeLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	idpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + edgeLn.Addr().String()
	p, err := devidp.New(devidp.Options{
		Issuer: "http://" + idpLn.Addr().String(),
		Clients: []devidp.Client{{ID: "edgeauth", Secret: "edge-secret",
			RedirectURIs:           []string{base + DefaultRedirectPath},
			PostLogoutRedirectURIs: []string{base + "/bye"},
			BackChannelLogoutURI:   base + BackChannelLogoutPath}},
	})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, idp: &idp{Provider: p}, clock: &clock{}, base: base}
	e.idp.down.Store(eo.idpDown)
	idpSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if e.idp.down.Load() {
			panic(http.ErrAbortHandler) // the client sees a dropped connection
		}
		p.ServeHTTP(w, r)
	}), ErrorLog: nil}
	go func() { _ = idpSrv.Serve(idpLn) }()
	t.Cleanup(func() { _ = idpSrv.Close() })

	e.store, err = session.NewMemoryStore(session.MemoryOptions{Budget: 8 << 20, IdleTimeout: time.Hour, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.store.Close() })
	opts := Options{
		Issuer: p.Issuer(), ClientID: "edgeauth", ClientSecret: "edge-secret",
		Scopes:                []string{"openid", "email", "profile", "groups", "offline_access"},
		AllowedHosts:          []string{edgeLn.Addr().String()},
		StepUpACR:             []string{"mfa"},
		PostLogoutRedirectURL: base + "/bye",
		Keys:                  [][]byte{testKey},
		Store:                 e.store,
		Now:                   e.clock.Now,
		DiscoveryRetryMin:     20 * time.Millisecond,
		DiscoveryRetryMax:     100 * time.Millisecond,
	}
	if eo.tweak != nil {
		eo.tweak(&opts)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rp, err := New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = rp.Close() })
	e.rp = rp
	if !eo.idpDown {
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		if err := rp.WaitReady(wctx); err != nil {
			t.Fatal(err)
		}
	}

	codec, err := session.NewCodec([][]byte{testKey})
	if err != nil {
		t.Fatal(err)
	}
	cookie, err := session.NewCookie(session.CookieOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lookup, err := session.Middleware(session.MiddlewareOptions{Codec: codec, Cookie: cookie, Store: e.store, Refresh: rp.MaybeRefresh})
	if err != nil {
		t.Fatal(err)
	}
	app := func(ctx *fasthttp.RequestCtx) {
		st := reqstate.Peek(ctx)
		if st == nil || !st.Authenticated() {
			loginOrChallenge(rp, ctx, nil)
			return
		}
		if strings.HasPrefix(string(ctx.Path()), "/admin") && st.Principal.ACR != "mfa" {
			loginOrChallenge(rp, ctx, &StepUp{})
			return
		}
		fmt.Fprintf(ctx, "hello %s uri=%s acr=%s groups=%s", st.Principal.Subject, ctx.RequestURI(),
			st.Principal.ACR, strings.Join(st.Principal.Groups, ","))
	}
	chain := lookup(app)
	reserved := rp.Handler()
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if strings.HasPrefix(string(ctx.Path()), "/.edgeauth/") {
			reserved(ctx)
			return
		}
		chain(ctx)
	}}
	go func() { _ = srv.Serve(edgeLn) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return e
}

// browser is a Go HTTP client with a cookie jar that says it accepts HTML,
// so edgeauth treats its GETs as navigations.
type browser struct {
	t *testing.T
	c *http.Client
}

type acceptHTML struct{ rt http.RoundTripper }

func (a acceptHTML) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Accept") == "" {
		r = r.Clone(r.Context())
		r.Header.Set("Accept", "text/html")
	}
	return a.rt.RoundTrip(r)
}

func newBrowser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, c: &http.Client{Jar: jar, Transport: acceptHTML{http.DefaultTransport}, Timeout: 10 * time.Second}}
}

// noFollow returns a copy of the browser that stops at the first redirect
// whose target starts with prefix.
func (b *browser) stopAt(prefix string) *browser {
	c := *b.c
	c.CheckRedirect = func(req *http.Request, _ []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), prefix) {
			return http.ErrUseLastResponse
		}
		return nil
	}
	return &browser{t: b.t, c: &c}
}

type page struct {
	status int
	url    *url.URL
	body   string
	header http.Header
}

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, url: resp.Request.URL, body: string(body), header: resp.Header}
}

func (b *browser) get(u string) page {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return b.do(req)
}

func (b *browser) post(u string, form url.Values, hdr map[string]string) page {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return b.do(req)
}

var loginID = regexp.MustCompile(`name="id" value="([^"]+)"`)

// submitLogin fills the provider's login form shown on p.
func (b *browser) submitLogin(p page, user, pass, mfa string) page {
	b.t.Helper()
	m := loginID.FindStringSubmatch(p.body)
	if m == nil {
		b.t.Fatalf("not a login page (%d %s): %.300s", p.status, p.url, p.body)
	}
	form := url.Values{"id": {m[1]}, "username": {user}, "password": {pass}}
	if mfa != "" {
		form.Set("mfa", mfa)
	}
	return b.post(p.url.Scheme+"://"+p.url.Host+"/login", form, nil)
}

// login opens target, signs in at the provider and returns the final page.
func (e *env) login(b *browser, target, user, pass, mfa string) page {
	e.t.Helper()
	return b.submitLogin(b.get(e.base+target), user, pass, mfa)
}

// sessionCookie returns the browser's session cookie value for edgeauth.
func (e *env) sessionCookie(b *browser) string {
	u, _ := url.Parse(e.base)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == session.DefaultCookieName {
			return c.Value
		}
	}
	return ""
}

// pollUntil polls cond until it holds or the deadline passes.
func pollUntil(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met before deadline")
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not a wait for a condition
	}
}

// loginOrChallenge answers as the proxy's policy step does: a browser
// navigation goes to the provider, anything else gets the API challenge.
func loginOrChallenge(rp *RP, ctx *fasthttp.RequestCtx, stepUp *StepUp) {
	if errpage.IsBrowserNavigation(ctx) {
		rp.StartLogin(ctx, string(ctx.RequestURI()), stepUp)
		return
	}
	if stepUp != nil {
		policy.APIChallenger{}.StepUp(ctx, rp.opts.StepUpACR, rp.opts.StepUpMaxAge)
		return
	}
	policy.APIChallenger{}.Login(ctx)
}
