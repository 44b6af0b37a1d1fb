package audit

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

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

type decisionReason struct{ decision, reason string }

// Middleware wraps the rest of the chain: it calls next and then records
// one event from reqstate, so requests denied or challenged further down
// are recorded too. Put it before the steps whose decisions it records.
func Middleware(r *Recorder, o MiddlewareOptions) (func(fasthttp.RequestHandler) fasthttp.RequestHandler, error) {
	if r == nil {
		return nil, errors.New("audit: nil recorder")
	}
	// This route's counters by (decision, reason), looked up by label
	// values once each rather than on every request (prometheus hashes
	// and UTF-8-checks the values every time). Decisions and reasons are
	// fixed code lists, so the map stays small.
	var counters sync.Map // decisionReason -> prometheus.Counter
	count := func(ev *Event) {
		reason := ev.DenyReason
		if reason == "" && len(ev.Reasons) > 0 {
			reason = ev.Reasons[0]
		}
		if ev.Route != o.Route || ev.Decision == "" {
			r.count(ev)
			return
		}
		k := decisionReason{ev.Decision, reason}
		c, ok := counters.Load(k)
		if !ok {
			c, _ = counters.LoadOrStore(k, r.decisions.WithLabelValues(o.Route, ev.Decision, reason))
		}
		c.(prometheus.Counter).Inc()
	}
	return func(next fasthttp.RequestHandler) fasthttp.RequestHandler {
		return func(ctx *fasthttp.RequestCtx) {
			next(ctx)
			st := reqstate.Get(ctx)
			e := entries.Get().(*entry)
			ev := &e.ev
			ev.Time = reqstate.NowOr(ctx, r.testNow)
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
			e.reqID = append(e.reqID[:0], ctx.Request.Header.PeekCanonical(requestIDHeader)...)
			count(ev)
			r.enqueue(e)
		}
	}, nil
}
