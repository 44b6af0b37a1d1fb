package token

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/edgeauth/edgeauth/internal/rawhead"
	"github.com/edgeauth/edgeauth/middleware/reqstate"
	"github.com/edgeauth/edgeauth/proxy/errpage"
)

// RouteOptions is what one route asks of a token.
type RouteOptions struct {
	// Issuers this route trusts. Empty means every configured issuer.
	Issuers []string
	// RequiredScopes must all be granted. Empty means none.
	RequiredScopes []string
	// RequiredClaims: for each claim, the token must hold one of the
	// values. Empty means none.
	RequiredClaims map[string][]string
	// ExternalOrigin is scheme://host[:port] as clients address this route;
	// the DPoP htu is built from it plus the request path, never from the
	// client's Host or X-Forwarded-* headers. Required.
	ExternalOrigin string
	// Now is the request clock. Nil means time.Now.
	Now func() time.Time
}

var (
	headerAuthorization   = []byte(fasthttp.HeaderAuthorization)
	headerDPoP            = []byte("DPoP")
	headerWWWAuthenticate = []byte(fasthttp.HeaderWWWAuthenticate)
	schemeBearer          = []byte("bearer")
	schemeDPoP            = []byte("dpop")
	argAccessToken        = []byte("access_token")
)

// Middleware returns the fasthttp adapter for v on one route. It acts only
// when an Authorization header is present; without one it calls next
// untouched and the policy step decides. A token that fails any check is
// answered with 401/403 here and never reaches next.
func Middleware(v *Verifier, route RouteOptions, logger *slog.Logger) (func(fasthttp.RequestHandler) fasthttp.RequestHandler, error) {
	if v == nil {
		return nil, errors.New("token: middleware: nil verifier")
	}
	if logger == nil {
		return nil, errors.New("token: middleware: nil logger")
	}
	origin, err := url.Parse(route.ExternalOrigin)
	if err != nil || (origin.Scheme != "https" && origin.Scheme != "http") || origin.Host == "" || (origin.Path != "" && origin.Path != "/") || origin.RawQuery != "" {
		return nil, fmt.Errorf("token: middleware: external origin %q must be scheme://host[:port]", route.ExternalOrigin)
	}
	for _, iss := range route.Issuers {
		if _, ok := v.issuers[iss]; !ok && (v.intro == nil || v.intro.issuer != iss) {
			return nil, fmt.Errorf("token: middleware: route trusts unknown issuer %q", iss)
		}
	}
	m := &mw{
		v:        v,
		route:    route,
		logger:   logger,
		origin:   origin.Scheme + "://" + origin.Host,
		now:      route.Now,
		scopeStr: strings.Join(route.RequiredScopes, " "),
	}
	return m.wrap, nil
}

type mw struct {
	v        *Verifier
	route    RouteOptions
	logger   *slog.Logger
	origin   string
	now      func() time.Time // a test clock; nil: the request's time
	scopeStr string
}

func (m *mw) wrap(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		h := &ctx.Request.Header
		auth := h.PeekBytes(headerAuthorization)
		if auth == nil {
			next(ctx)
			return
		}
		// RFC 6750 §2 / RFC 9449 §7.2: exactly one method per request.
		// Counted in the raw head (see package rawhead).
		if rawhead.Count(h.RawHeaders(), headerAuthorization) != 1 || ctx.QueryArgs().HasBytes(argAccessToken) || ctx.PostArgs().HasBytes(argAccessToken) {
			m.invalidRequest(ctx, "multiple_credentials", "Send the access token in exactly one way")
			return
		}
		sp := bytes.IndexByte(auth, ' ')
		if sp <= 0 || sp == len(auth)-1 {
			m.invalidRequest(ctx, "malformed_authorization", "The Authorization header is malformed")
			return
		}
		scheme, raw := auth[:sp], auth[sp+1:]
		var dpop bool
		switch {
		case bytes.EqualFold(scheme, schemeBearer):
		case bytes.EqualFold(scheme, schemeDPoP):
			dpop = true
		default:
			m.invalidRequest(ctx, "unsupported_scheme", "Use the Bearer or DPoP authorization scheme")
			return
		}

		now := reqstate.NowOr(ctx, m.now)
		c, err := m.v.Verify(context.Background(), raw, now)
		if err == nil {
			err = m.checkRoute(c)
		}
		if err == nil {
			err = m.checkBinding(ctx, raw, c, dpop, now)
		}
		if err != nil {
			m.deny(ctx, err, dpop)
			return
		}

		st := reqstate.Get(ctx)
		st.Method = reqstate.MethodBearer
		if dpop {
			st.Method = reqstate.MethodDPoP
		}
		st.Principal = reqstate.Principal{
			Issuer:            c.Issuer,
			Subject:           c.Subject,
			Email:             c.Email,
			EmailVerified:     c.EmailVerified,
			PreferredUsername: c.PreferredUsername,
			Name:              c.Name,
			Groups:            c.Groups,
			Scopes:            c.Scopes,
			ACR:               c.ACR,
			AMR:               c.AMR,
			AuthTime:          c.AuthTime,
			Claims:            c.Claims,
		}
		next(ctx)
	}
}

func (m *mw) checkRoute(c *Claims) error {
	if len(m.route.Issuers) > 0 && !contains(m.route.Issuers, c.Issuer) {
		return ErrIssuerNotAllowed
	}
	if !c.HasScopes(m.route.RequiredScopes) || !c.HasClaims(m.route.RequiredClaims) {
		return ErrInsufficientScope
	}
	return nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// checkBinding applies RFC 9449 §7: a DPoP-bound token needs the DPoP
// scheme and exactly one valid proof; the DPoP scheme needs a bound token.
func (m *mw) checkBinding(ctx *fasthttp.RequestCtx, raw []byte, c *Claims, dpop bool, now time.Time) error {
	if !dpop {
		if c.JKT != "" {
			// §7.2: a bound token sent as Bearer is a stolen-token replay
			// attempt or a broken client; either way, refuse.
			return ErrDPoPRequired
		}
		return nil
	}
	// Counted in the raw head, as Authorization is (see wrap).
	n := rawhead.Count(ctx.Request.Header.RawHeaders(), headerDPoP)
	proof := ctx.Request.Header.PeekBytes(headerDPoP)
	if n != 1 {
		return reject(ReasonDPoPInvalid, "want exactly one DPoP header, got %d", n)
	}
	htu := m.origin + string(ctx.URI().PathOriginal())
	return m.v.CheckDPoP(proof, raw, c, string(ctx.Method()), htu, now)
}

func (m *mw) invalidRequest(ctx *fasthttp.RequestCtx, code, desc string) {
	m.logger.LogAttrs(context.Background(), slog.LevelInfo, "token rejected",
		slog.String("reason", code), slog.String("request_id", errpage.RequestID(ctx)))
	errpage.Write(ctx, fasthttp.StatusBadRequest, "invalid_request", desc)
	ctx.Response.Header.SetBytesK(headerWWWAuthenticate, challenge("Bearer", "invalid_request", desc, "", ""))
}

// deny writes the RFC 6750 §3 / RFC 9449 §7.1 response for err.
func (m *mw) deny(ctx *fasthttp.RequestCtx, err error, dpop bool) {
	r := ReasonOf(err)
	m.logger.LogAttrs(context.Background(), slog.LevelInfo, "token rejected",
		slog.String("reason", r.String()),
		slog.String("request_id", errpage.RequestID(ctx)),
		slog.String("cause", err.Error()))
	scheme, algs := "Bearer", ""
	if dpop || r == ReasonDPoPRequired {
		scheme, algs = "DPoP", m.v.DPoPAlgorithms()
	}
	desc := r.Description()
	switch r {
	case ReasonInsufficientScope:
		errpage.Write(ctx, fasthttp.StatusForbidden, "insufficient_scope", desc)
		ctx.Response.Header.SetBytesK(headerWWWAuthenticate, challenge(scheme, "insufficient_scope", desc, m.scopeStr, algs))
	case ReasonUnavailable:
		// A technical failure fails closed, but says so: the client may
		// retry, and must not be told its token is bad.
		errpage.Write(ctx, fasthttp.StatusServiceUnavailable, "auth_unavailable", desc)
	case ReasonDPoPInvalid, ReasonDPoPReplay:
		errpage.Write(ctx, fasthttp.StatusUnauthorized, "invalid_dpop_proof", desc)
		ctx.Response.Header.SetBytesK(headerWWWAuthenticate, challenge("DPoP", "invalid_dpop_proof", desc, "", algs))
	default:
		errpage.Write(ctx, fasthttp.StatusUnauthorized, "invalid_token", desc)
		ctx.Response.Header.SetBytesK(headerWWWAuthenticate, challenge(scheme, "invalid_token", desc, "", algs))
	}
}

// challenge formats a WWW-Authenticate value. All inputs are our own fixed
// strings or configuration, never request data, so quoting cannot be
// broken out of; quotes and backslashes are escaped anyway.
func challenge(scheme, code, desc, scope, algs string) string {
	var b strings.Builder
	b.WriteString(scheme)
	b.WriteString(` realm="edgeauth"`)
	if algs != "" {
		b.WriteString(`, algs="`)
		b.WriteString(quote(algs))
		b.WriteByte('"')
	}
	if code != "" {
		b.WriteString(`, error="`)
		b.WriteString(code)
		b.WriteString(`", error_description="`)
		b.WriteString(quote(desc))
		b.WriteByte('"')
	}
	if scope != "" {
		b.WriteString(`, scope="`)
		b.WriteString(quote(scope))
		b.WriteByte('"')
	}
	return b.String()
}

func quote(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
}
