package e2etest

import (
	"bytes"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// UserAgent is the User-Agent the kit's clients send unless the caller
// sets one: a desktop Chrome, so device signals stay the same across the
// requests of one test.
const UserAgent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"

// AcceptHTML is the Accept header of a browser navigation.
const AcceptHTML = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

// ClientOption changes a client NewClient builds.
type ClientOption func(*http.Client)

// FollowRedirects makes the client follow redirects (net/http's default
// policy, at most 10). Without it the client returns every 3xx as is.
func FollowRedirects(c *http.Client) { c.CheckRedirect = nil }

// NewClient returns a client with a cookie jar of its own that does not
// follow redirects (unless FollowRedirects), ignores proxy environment
// variables, and gives up on a request after 15s. t.Cleanup closes its
// idle connections.
//
// The configs the kit runs are plain HTTP, so edgeauth's cookies are not
// Secure and the jar keeps them. Cookies are not port-specific (RFC 6265
// §8.5): the jar sends the provider's cookies to edgeauth and the other
// way round, as a browser would for two ports of 127.0.0.1.
func NewClient(t testing.TB, opts ...ClientOption) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatalf("e2etest: cookie jar: %v", err)
	}
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 8, IdleConnTimeout: 30 * time.Second}
	c := &http.Client{
		Jar:       jar,
		Transport: tr,
		Timeout:   15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	for _, o := range opts {
		o(c)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return c
}

// Do sends one request with c and returns the response with its body read
// (resp.Body can be read again). hdr is added to the request; a missing
// User-Agent is set to UserAgent. Transport errors fail the test.
func Do(t testing.TB, c *http.Client, method, rawURL string, hdr http.Header, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	u, err := parseRequestURL(rawURL)
	if err != nil {
		t.Fatalf("e2etest: %s %s: %v", method, rawURL, err)
	}
	resp, b, err := do(c, method, u, hdr, body)
	if err != nil {
		t.Fatalf("e2etest: %s %s: %v", method, rawURL, err)
	}
	return resp, b
}

// Navigate is Do for a browser navigation: GET with Accept: text/html.
func Navigate(t testing.TB, c *http.Client, rawURL string, hdr http.Header) (*http.Response, []byte) {
	t.Helper()
	h := browserHeader(hdr)
	return Do(t, c, http.MethodGet, rawURL, h, nil)
}

func browserHeader(hdr http.Header) http.Header {
	h := hdr.Clone()
	if h == nil {
		h = http.Header{}
	}
	if h.Get("Accept") == "" {
		h.Set("Accept", AcceptHTML)
	}
	return h
}

// parseRequestURL parses rawURL so that its path and query go on the
// request line byte for byte as written: url.URL would escape a backslash
// ("/\evil.com" becomes "/%5Cevil.com"), which would make open-redirect
// payloads harmless before they reach edgeauth.
func parseRequestURL(rawURL string) (*url.URL, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	origin := u.Scheme + "://" + u.Host
	if rest, ok := strings.CutPrefix(rawURL, origin); ok && strings.HasPrefix(rest, "/") && !strings.HasPrefix(rest, "//") &&
		!strings.Contains(rest, "#") && u.RequestURI() != rest {
		// A request URI starting with "//" would be written as
		// scheme:opaque (absolute form); those paths survive url.URL as
		// they are, so they never take this branch.
		u.Opaque = rest
		u.RawQuery = ""
	}
	return u, nil
}

func do(c *http.Client, method string, u *url.URL, hdr http.Header, body io.Reader) (*http.Response, []byte, error) {
	req, err := http.NewRequest(method, "http://placeholder/", body)
	if err != nil {
		return nil, nil, err
	}
	req.URL, req.Host = u, u.Host
	for k, vs := range hdr {
		if strings.EqualFold(k, "Host") && len(vs) > 0 {
			req.Host = vs[0]
			continue
		}
		// Keep the name as given (no canonicalisation) so tests can send
		// mixed-case and underscore forms.
		req.Header[k] = append(req.Header[k], vs...)
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", UserAgent)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	resp.Body.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("read body: %w", err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp, b, nil
}

var (
	formTag  = regexp.MustCompile(`(?is)<form\b[^>]*>`)
	inputTag = regexp.MustCompile(`(?is)<input\b[^>]*>`)
	attrRe   = regexp.MustCompile(`(?is)\b([a-z-]+)\s*=\s*"([^"]*)"`)
	errorP   = regexp.MustCompile(`(?is)<p class="err"[^>]*>(.*?)</p>`)
)

// ErrLoginRejected is returned by Login when the provider shows its login
// form again after the credentials were posted.
var ErrLoginRejected = errors.New("e2etest: provider rejected the login")

// ErrForeignRedirect is returned by Login, with the redirect response,
// when a redirect points to an origin that is neither edgeauth's nor the
// provider's (the first other 127.0.0.1 origin edgeauth redirected to).
var ErrForeignRedirect = errors.New("e2etest: redirect to a foreign origin")

// Login drives a browser sign-in: a navigation (GET, Accept: text/html) to
// startURL, the redirects to the provider, the provider's login form
// (username, password and, when mfa is not "", the MFA code), and the
// redirects back through edgeauth's callback. It returns the first
// response that is neither a redirect nor the provider's login form, with
// its body readable; when startURL answers without a redirect (a public
// page, an existing session) that answer is returned. hdr is added to
// every request sent to edgeauth's origin (startURL's scheme and host),
// never to the provider. c's redirect policy does not matter: Login
// follows redirects itself, at most 20, using c's jar and transport.
//
// startURL goes on the request line as written (a backslash is not
// escaped), so open-redirect payloads reach edgeauth intact. An error
// means the flow could not be driven (transport failure, loop,
// ErrLoginRejected, ErrForeignRedirect — the last two come with the
// response); an edgeauth error page is a final response, not an error.
func Login(t testing.TB, c *http.Client, startURL, username, password, mfa string, hdr http.Header) (*http.Response, error) {
	t.Helper()
	resp, _, err := login(c, startURL, username, password, mfa, hdr, nil)
	return resp, err
}

// LoginUntil drives the flow of Login but stops before the first request
// for which stop returns true, and returns that request's URL (with its
// query: for the callback, the code and state) and the response that
// pointed there. A flow that ends without such a request is an error.
// Use it to hold a login just before the callback, e.g. to kill the
// provider or replay the code.
func LoginUntil(t testing.TB, c *http.Client, startURL, username, password, mfa string, hdr http.Header, stop func(next *url.URL) bool) (string, *http.Response, error) {
	t.Helper()
	resp, next, err := login(c, startURL, username, password, mfa, hdr, stop)
	if err != nil {
		return "", resp, err
	}
	if next == nil {
		return "", resp, fmt.Errorf("e2etest: login ended (status %d) without reaching the stop", resp.StatusCode)
	}
	return next.String(), resp, nil
}

// IsCallback is a stop for LoginUntil: edgeauth's OIDC callback.
func IsCallback(next *url.URL) bool { return next.Path == "/.edgeauth/callback" }

func login(c *http.Client, startURL, username, password, mfa string, hdr http.Header, stop func(*url.URL) bool) (*http.Response, *url.URL, error) {
	start, err := parseRequestURL(startURL)
	if err != nil {
		return nil, nil, fmt.Errorf("e2etest: login: %w", err)
	}
	nc := *c
	nc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	edgeHdr := browserHeader(hdr)
	idpHdr := http.Header{"Accept": {AcceptHTML}}
	if ua := edgeHdr.Get("User-Agent"); ua != "" {
		idpHdr.Set("User-Agent", ua) // one browser, one User-Agent
	}
	isEdge := func(u *url.URL) bool { return u.Scheme == start.Scheme && u.Host == start.Host }
	headerFor := func(u *url.URL) http.Header {
		if isEdge(u) {
			return edgeHdr
		}
		return idpHdr
	}
	// The provider is the first other origin edgeauth sends us to; a
	// redirect to any third origin is not followed (an open redirect
	// must be reported, not visited, and tests stay on loopback).
	var provider string

	method, cur, body, posted := http.MethodGet, start, "", false
	for hop := 0; hop < 20; hop++ {
		h := headerFor(cur)
		var rd io.Reader
		if method == http.MethodPost {
			h = h.Clone()
			h.Set("Content-Type", "application/x-www-form-urlencoded")
			rd = strings.NewReader(body)
		}
		resp, b, err := do(&nc, method, cur, h, rd)
		if err != nil {
			return nil, nil, fmt.Errorf("e2etest: login: %s %s: %w", method, redact(cur), err)
		}
		if loc := resp.Header.Get("Location"); resp.StatusCode >= 300 && resp.StatusCode < 400 && loc != "" {
			next, err := cur.Parse(loc)
			if err != nil {
				return resp, nil, fmt.Errorf("e2etest: login: bad Location %q: %w", loc, err)
			}
			if !isEdge(next) {
				if provider == "" && next.Hostname() == "127.0.0.1" {
					provider = next.Scheme + "://" + next.Host
				}
				if next.Scheme+"://"+next.Host != provider {
					return resp, nil, fmt.Errorf("%w: %s", ErrForeignRedirect, redact(next))
				}
			}
			if stop != nil && stop(next) {
				return resp, next, nil
			}
			method, cur, body = http.MethodGet, next, ""
			continue
		}
		isIDP := !isEdge(cur)
		form, fields, ok := loginForm(b)
		if !isIDP || !ok {
			return resp, nil, nil
		}
		if posted {
			msg := "login form shown again"
			if m := errorP.FindSubmatch(b); m != nil {
				msg = html.UnescapeString(string(m[1]))
			}
			return resp, nil, fmt.Errorf("%w: %s", ErrLoginRejected, msg)
		}
		fields.Set("username", username)
		fields.Set("password", password)
		if mfa != "" {
			fields.Set("mfa", mfa)
		}
		action, err := cur.Parse(form)
		if err != nil {
			return nil, nil, fmt.Errorf("e2etest: login: bad form action %q: %w", form, err)
		}
		if stop != nil && stop(action) {
			return resp, action, nil
		}
		method, cur, body, posted = http.MethodPost, action, fields.Encode(), true
	}
	return nil, nil, errors.New("e2etest: login: more than 20 redirects")
}

// loginForm finds the provider's login form: its action and hidden
// fields. ok is false when the page has no password field.
func loginForm(page []byte) (action string, fields url.Values, ok bool) {
	if !bytes.Contains(page, []byte(`name="password"`)) {
		return "", nil, false
	}
	f := formTag.Find(page)
	if f == nil {
		return "", nil, false
	}
	for _, a := range attrRe.FindAllSubmatch(f, -1) {
		if strings.EqualFold(string(a[1]), "action") {
			action = html.UnescapeString(string(a[2]))
		}
	}
	fields = url.Values{}
	for _, in := range inputTag.FindAll(page, -1) {
		attrs := map[string]string{}
		for _, a := range attrRe.FindAllSubmatch(in, -1) {
			attrs[strings.ToLower(string(a[1]))] = html.UnescapeString(string(a[2]))
		}
		if strings.EqualFold(attrs["type"], "hidden") && attrs["name"] != "" {
			fields.Set(attrs["name"], attrs["value"])
		}
	}
	return action, fields, action != ""
}

// redact drops the query of a URL for error messages: on the way back
// from the provider it holds the authorization code.
func redact(u *url.URL) string {
	c := *u
	c.RawQuery = ""
	return c.String()
}

// Cookie returns the value of the cookie name that c's jar would send to
// rawURL, or "" when there is none.
func Cookie(t testing.TB, c *http.Client, rawURL, name string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatalf("e2etest: cookie: %v", err)
	}
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == name {
			return ck.Value
		}
	}
	return ""
}
