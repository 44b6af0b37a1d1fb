package audit

import (
	"errors"

	"github.com/edgeauth/edgeauth/middleware/reqstate"
	"github.com/edgeauth/edgeauth/proxy/errpage"
	"github.com/valyala/fasthttp"
)

// MiddlewareOptions configures the audit step of one route.
type MiddlewareOptions struct {
	// Route names the route when reqstate.State.Route is empty.
	Route string
	// Shadow returns the decision a shadow-mode route would have enforced
	// (wire policy.ShadowDecision). nil: no shadow decision recorded.
	Shadow func(*fasthttp.RequestCtx) reqstate.Decision
}

var requestIDHeader = []byte(errpage.RequestIDHeader)

// Middleware wraps the rest of the chain: it calls next and then records
// one event from reqstate, so requests denied or challenged further down
// are recorded too. Put it before the steps whose decisions it records.
func Middleware(r *Recorder, o MiddlewareOptions) (func(fasthttp.RequestHandler) fasthttp.RequestHandler, error) {
	if r == nil {
		return nil, errors.New("audit: nil recorder")
	}
	// Most events are a plain allow on this route: that counter is looked
	// up once here rather than by label values on every request.
	allowed := r.decisions.WithLabelValues(o.Route, reqstate.DecisionAllow.String(), "")
	return func(next fasthttp.RequestHandler) fasthttp.RequestHandler {
		return func(ctx *fasthttp.RequestCtx) {
			next(ctx)
			st := reqstate.Get(ctx)
			e := entries.Get().(*entry)
			ev := &e.ev
			ev.Time = reqstate.Now(ctx)
			if r.testClock {
				ev.Time = r.now()
			}
			ev.Type = "request"
			ev.Route = st.Route
			if ev.Route == "" {
				ev.Route = o.Route
			}
			ev.Subject = st.Principal.Subject
			ev.Issuer = st.Principal.Issuer
			ev.SessionID = st.SessionID // hashed by the writer
			ev.Method = st.Method.String()
			ev.ClientIP = st.ClientIP
			ev.Country = st.Location.Country
			ev.City = st.Location.City
			ev.ASN = st.Location.ASN
			ev.DeviceID = st.DeviceID // hashed by the writer
			ev.Score = st.RiskScore
			ev.Reasons = append(ev.Reasons[:0], st.Reasons()...)
			ev.Decision = st.Decision.String()
			ev.Shadow = ""
			if o.Shadow != nil {
				if d := o.Shadow(ctx); d != reqstate.DecisionNone {
					ev.Shadow = d.String()
				}
			}
			ev.DenyReason = st.DenyReason
			ev.Status = ctx.Response.StatusCode()
			ev.RequestID = st.RequestID
			// Same source as errpage.RequestID, copied into a reused
			// buffer instead of a new string per request.
			e.reqID = append(e.reqID[:0], ctx.Request.Header.PeekBytes(requestIDHeader)...)
			if ev.Route == o.Route && st.Decision == reqstate.DecisionAllow && ev.DenyReason == "" && len(ev.Reasons) == 0 {
				allowed.Inc()
			} else {
				r.count(ev)
			}
			r.enqueue(e)
		}
	}, nil
}
