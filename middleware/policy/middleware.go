package policy

import (
	"errors"
	"log/slog"
	"time"

	"github.com/edgeauth/edgeauth/middleware/reqstate"
	"github.com/edgeauth/edgeauth/proxy/errpage"
	"github.com/valyala/fasthttp"
)

// Challenger starts the browser flows; the lead wires it to the SSO relying
// party. Both methods write the response (a redirect to the provider).
type Challenger interface {
	// Login starts a sign-in for the current URL.
	Login(ctx *fasthttp.RequestCtx)
	// StepUp asks the provider for one of acr (in order of preference) and
	// an authentication at most maxAge old (0 = fresh, prompt=login).
	StepUp(ctx *fasthttp.RequestCtx, acr []string, maxAge time.Duration)
}

var (
	headerWWWAuthenticate = []byte(fasthttp.HeaderWWWAuthenticate)
	// RFC 6750 §3.1: no error code when the request had no credential.
	bearerRealm = []byte(`Bearer realm="edgeauth"`)
)

type shadowKey struct{}

// ShadowDecision returns the decision a shadow-mode route would have
// enforced for this request (DecisionNone when not in shadow mode or not
// decided). The audit step reads it through an injected func so that it
// does not import this package.
func ShadowDecision(ctx *fasthttp.RequestCtx) reqstate.Decision {
	d, _ := ctx.UserValue(shadowKey{}).(reqstate.Decision)
	return d
}

// Middleware enforces rule. It reads the principal, risk score and reasons
// from reqstate and writes Decision and DenyReason back (DenyReason holds
// the reason code of any non-allow decision). logger may be nil.
func Middleware(rule *Rule, ch Challenger, logger *slog.Logger) (func(fasthttp.RequestHandler) fasthttp.RequestHandler, error) {
	if rule == nil {
		return nil, errors.New("policy: nil rule")
	}
	if ch == nil {
		return nil, errors.New("policy: nil challenger")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return func(next fasthttp.RequestHandler) fasthttp.RequestHandler {
		return func(ctx *fasthttp.RequestCtx) {
			st := reqstate.Get(ctx)
			in := Input{
				Path:          ctx.Path(),
				Authenticated: st.Authenticated(),
				Score:         st.RiskScore,
				Reasons:       st.Reasons(),
				Now:           reqstate.Now(ctx),
			}
			if in.Authenticated {
				in.Principal = &st.Principal
			}
			d := rule.Decide(in)
			st.Decision = d.Kind
			if d.Kind != reqstate.DecisionAllow {
				st.DenyReason = d.Reason
			}
			if d.ShadowKind != reqstate.DecisionNone {
				ctx.SetUserValue(shadowKey{}, d.ShadowKind)
				if d.ShadowKind != reqstate.DecisionAllow {
					logger.LogAttrs(ctx, slog.LevelInfo, "policy: shadow decision",
						slog.String("route", rule.name),
						slog.String("shadow", d.ShadowKind.String()),
						slog.String("reason", d.ShadowReason))
				}
			}
			switch d.Kind {
			case reqstate.DecisionAllow:
				next(ctx)
			case reqstate.DecisionLogin:
				if errpage.IsBrowserNavigation(ctx) {
					ch.Login(ctx)
					return
				}
				errpage.Write(ctx, fasthttp.StatusUnauthorized, d.Reason, "Authentication is required.")
				ctx.Response.Header.SetBytesKV(headerWWWAuthenticate, bearerRealm)
			case reqstate.DecisionStepUp:
				if errpage.IsBrowserNavigation(ctx) {
					ch.StepUp(ctx, d.ACR, d.MaxAge)
					return
				}
				// Only reached with a verified credential, so the
				// requirements are not disclosed to anonymous callers
				// (RFC 9470 §9).
				errpage.Write(ctx, fasthttp.StatusUnauthorized, d.Reason, "A stronger or more recent authentication is required.")
				ctx.Response.Header.SetBytesKV(headerWWWAuthenticate, rule.Challenge(d))
			default:
				errpage.Write(ctx, fasthttp.StatusForbidden, d.Reason, "You do not have access to this page.")
			}
		}
	}, nil
}

// APIChallenger answers login and step-up the way API clients are
// answered — 401 with a Bearer challenge, RFC 9470's for step-up — for a
// deployment with no sign-in provider to send browsers to (bearer tokens
// only). It is the one place besides Middleware that writes these
// challenges, with the same builder.
type APIChallenger struct{}

// Login writes 401 with a Bearer challenge and no error code.
func (APIChallenger) Login(ctx *fasthttp.RequestCtx) {
	errpage.Write(ctx, fasthttp.StatusUnauthorized, ReasonLoginRequired, "Authentication is required.")
	ctx.Response.Header.SetBytesKV(headerWWWAuthenticate, bearerRealm)
}

// StepUp writes 401 with the RFC 9470 §3 challenge for acr and maxAge.
func (APIChallenger) StepUp(ctx *fasthttp.RequestCtx, acr []string, maxAge time.Duration) {
	errpage.Write(ctx, fasthttp.StatusUnauthorized, "insufficient_user_authentication",
		"A stronger or more recent authentication is required.")
	ctx.Response.Header.SetBytesKV(headerWWWAuthenticate, challenge(acr, maxAge, true))
}
