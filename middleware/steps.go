package middleware

import "github.com/valyala/fasthttp"

// Steps names every stage of the auth pipeline. Build is the one place that
// fixes their order; a test pins it.
//
// The order differs from the first design in one way: audit wraps the later
// steps instead of running last, because a step that answers (login redirect,
// 401, 403) returns without calling next, and those are exactly the decisions
// security teams need recorded.
type Steps struct {
	ClientIP Middleware // real client IP from trusted proxies
	Audit    Middleware // emits one event after the inner steps returned
	Session  Middleware // session cookie → principal (renewing tokens about to expire)
	Token    Middleware // Authorization header → principal
	Risk     Middleware // location, device, history → score and reasons
	Policy   Middleware // allow | login | step-up | deny
	Identity Middleware // strips inbound identity headers, sets ours
}

// Build wraps h (the upstream forwarder) with the steps in pipeline order.
func (s Steps) Build(h fasthttp.RequestHandler) fasthttp.RequestHandler {
	return Chain(h, s.ClientIP, s.Audit, s.Session, s.Token, s.Risk, s.Policy, s.Identity)
}
