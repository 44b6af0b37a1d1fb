package identity

import (
	"bytes"
	"errors"
	"log/slog"
	"sync"

	"github.com/edgeauth/edgeauth/internal/rawhead"
	"github.com/edgeauth/edgeauth/middleware/reqstate"
	"github.com/edgeauth/edgeauth/proxy/errpage"
	"github.com/valyala/fasthttp"
)

// Options configures the identity step of one route.
type Options struct {
	// Headers names the headers set upstream; zero fields take defaults.
	Headers Headers
	// StripPrefixes are removed from inbound requests in addition to the
	// configured names and DefaultStripPrefixes. Empty: defaults only.
	StripPrefixes []string
	// Signer, when set, adds the signed assertion header. nil: no assertion.
	Signer *Signer
	// RouteName is the assertion audience. Required with a Signer.
	RouteName string
	// Logger receives warnings about claims that cannot be forwarded. nil
	// discards.
	Logger *slog.Logger
}

// Strip removes every request header line m matches and returns how many
// lines matched. The names come from the raw head as received (package
// rawhead): only a client can have sent identity headers before this step.
func (m *Matcher) Strip(h *fasthttp.RequestHeader) int {
	removed := 0
	for name := range rawhead.Names(h.RawHeaders()) {
		if m.Match(name) {
			// Deletes every line of the name; later lines of it find
			// nothing left.
			h.DelBytes(name)
			removed++
		}
	}
	return removed
}

var groupBufs = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// Middleware strips inbound identity headers and sets ours for an
// authenticated principal. It belongs after policy: it only runs for
// allowed requests.
func Middleware(o Options) (func(fasthttp.RequestHandler) fasthttp.RequestHandler, error) {
	if o.Signer != nil && o.RouteName == "" {
		return nil, errors.New("identity: route name required for the assertion audience")
	}
	hs, names := splitDisabled(o.Headers.withDefaults())
	if o.Signer == nil {
		hs.Assertion = ""
	}
	m, err := NewMatcher(names, append(append([]string(nil), DefaultStripPrefixes...), o.StripPrefixes...))
	if err != nil {
		return nil, err
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// Canonical once here, so each request sets them without normalising
	// the names again (SetCanonical).
	canon := func(name string) []byte {
		if name == "" {
			return nil
		}
		return fasthttp.AppendNormalizedHeaderKey(nil, name)
	}
	user, email, groups, pref, assertion := canon(hs.User), canon(hs.Email), canon(hs.Groups), canon(hs.PreferredUsername), canon(hs.Assertion)
	set := func(ctx *fasthttp.RequestCtx, name []byte, v string) {
		if len(name) == 0 || v == "" {
			return
		}
		if !validValue(v) {
			logger.LogAttrs(ctx, slog.LevelWarn, "identity: claim with control characters not forwarded", slog.String("header", string(name)))
			return
		}
		ctx.Request.Header.SetCanonical(name, s2b(v))
	}
	return func(next fasthttp.RequestHandler) fasthttp.RequestHandler {
		return func(ctx *fasthttp.RequestCtx) {
			h := &ctx.Request.Header
			m.Strip(h)
			// Peek: on a public route nothing attached a state, and none is
			// needed to say "nobody".
			st := reqstate.Peek(ctx)
			if st == nil || !st.Authenticated() {
				next(ctx)
				return
			}
			p := &st.Principal
			set(ctx, user, p.Subject)
			set(ctx, email, p.Email)
			set(ctx, pref, p.PreferredUsername)
			if len(groups) > 0 && len(p.Groups) > 0 {
				bp := groupBufs.Get().(*[]byte)
				b := (*bp)[:0]
				for _, g := range p.Groups {
					if !validValue(g) || bytes.IndexByte(s2b(g), ',') >= 0 {
						// A comma would split one group into two
						// for the upstream: skip it rather than
						// grant a group the user does not have.
						continue
					}
					if len(b) > 0 {
						b = append(b, ',')
					}
					b = append(b, g...)
				}
				if len(b) > 0 {
					h.SetCanonical(groups, b)
				}
				*bp = b
				groupBufs.Put(bp)
			}
			if len(assertion) > 0 {
				tok, err := o.Signer.AssertionAt(o.RouteName, p, reqstate.Now(ctx))
				if err != nil {
					// Fail closed: an upstream that requires the
					// assertion must not see the request without it.
					logger.LogAttrs(ctx, slog.LevelError, "identity: assertion", slog.String("error", err.Error()))
					errpage.Write(ctx, fasthttp.StatusInternalServerError, "assertion_failed", "The request could not be completed.")
					return
				}
				h.SetCanonical(assertion, tok)
			}
			next(ctx)
		}
	}, nil
}

// HandleJWKS serves the assertion public key set at JWKSPath.
func (s *Signer) HandleJWKS(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() && !ctx.IsHead() {
		errpage.Write(ctx, fasthttp.StatusMethodNotAllowed, "method_not_allowed", "Use GET.")
		ctx.Response.Header.Set(fasthttp.HeaderAllow, "GET, HEAD")
		return
	}
	ctx.SetContentType("application/jwk-set+json")
	// Short enough that a rotated key is picked up soon, long enough that
	// upstreams do not fetch per request.
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "public, max-age=300")
	ctx.SetBody(s.jwks)
}
