package session

import (
	"errors"
	"fmt"
	"time"

	"github.com/valyala/fasthttp"
)

// DefaultCookieName is the session cookie name without prefix.
const DefaultCookieName = "edgeauth_session"

// hostPrefix locks the cookie to the exact host, Secure and Path=/ (RFC
// 6265bis §4.1.3.2): a sibling subdomain cannot plant or overwrite it
// (cookie tossing, §8.6).
const hostPrefix = "__Host-"

// maxCookieNameLen keeps the whole Set-Cookie header under 200 bytes.
const maxCookieNameLen = 32

// CookieOptions configures the session cookie.
type CookieOptions struct {
	// Name is the cookie name without prefix; zero means DefaultCookieName.
	// At most 32 characters of RFC 6265 token.
	Name string
	// Secure is true when clients reach edgeauth over TLS (terminated here
	// or in front). It adds the "__Host-" prefix and the Secure attribute.
	// Zero (false) is for plain-HTTP development only.
	Secure bool
}

// Cookie reads and writes one cookie by exact name: HttpOnly, SameSite=Lax,
// Path=/, no Domain, and Secure with the __Host- prefix under TLS. The sso
// package uses it for the session cookie; other cookie kinds may build their
// own with NewCookie.
type Cookie struct {
	name   []byte
	secure bool
}

// NewCookie validates o and returns the Cookie.
func NewCookie(o CookieOptions) (*Cookie, error) {
	name := o.Name
	if name == "" {
		name = DefaultCookieName
	}
	if len(name) > maxCookieNameLen {
		return nil, fmt.Errorf("session: cookie name %q longer than %d", name, maxCookieNameLen)
	}
	for i := 0; i < len(name); i++ {
		if !isTokenChar(name[i]) {
			return nil, fmt.Errorf("session: cookie name %q: invalid character %q", name, name[i])
		}
	}
	if len(name) >= 2 && name[:2] == "__" {
		return nil, errors.New("session: cookie name must not carry a prefix; set Secure for __Host-")
	}
	if o.Secure {
		name = hostPrefix + name
	}
	return &Cookie{name: []byte(name), secure: o.Secure}, nil
}

// Name returns the full cookie name, prefix included.
func (c *Cookie) Name() string { return string(c.name) }

// Value returns the cookie's value. A request that carries the name more
// than once gets ok == false: a browser sends two cookies of one name when
// another host or path planted a second one (cookie tossing), and we cannot
// know which one we set. The value aliases the request; do not keep it.
func (c *Cookie) Value(ctx *fasthttp.RequestCtx) (value []byte, ok bool) {
	n := 0
	for k, v := range ctx.Request.Header.Cookies() {
		if string(k) == string(c.name) {
			n++
			value = v
		}
	}
	if n != 1 || len(value) == 0 {
		return nil, false
	}
	return value, true
}

// Set writes the cookie with value for maxAge (rounded down to seconds;
// zero or negative makes a browser-session cookie).
func (c *Cookie) Set(ctx *fasthttp.RequestCtx, value string, maxAge time.Duration) {
	ck := fasthttp.AcquireCookie()
	defer fasthttp.ReleaseCookie(ck)
	c.fill(ck)
	ck.SetValue(value)
	if s := int(maxAge / time.Second); s > 0 {
		ck.SetMaxAge(s)
	}
	ctx.Response.Header.SetCookie(ck)
}

// Clear tells the browser to drop the cookie.
func (c *Cookie) Clear(ctx *fasthttp.RequestCtx) {
	ck := fasthttp.AcquireCookie()
	defer fasthttp.ReleaseCookie(ck)
	c.fill(ck)
	ck.SetValue("")
	// A negative value makes fasthttp write "max-age=0" (RFC 6265bis
	// §5.6.2: delete now).
	ck.SetMaxAge(-1)
	ctx.Response.Header.SetCookie(ck)
}

func (c *Cookie) fill(ck *fasthttp.Cookie) {
	ck.SetKeyBytes(c.name)
	ck.SetPath("/")
	ck.SetHTTPOnly(true)
	ck.SetSecure(c.secure)
	ck.SetSameSite(fasthttp.CookieSameSiteLaxMode)
}

// isTokenChar reports whether b may appear in a cookie name (RFC 6265 §4.1.1
// token, RFC 9110 §5.6.2).
func isTokenChar(b byte) bool {
	switch {
	case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9':
		return true
	}
	switch b {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}
