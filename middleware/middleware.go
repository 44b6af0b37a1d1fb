// Package middleware defines the shape every step of the auth pipeline
// shares and the one place that fixes the order in which they run.
//
// Each concern lives in its own sub-package (clientip, session, sso, token,
// risk, policy, audit) and meets the others only through the per-request
// state in middleware/reqstate.
package middleware

import "github.com/valyala/fasthttp"

// Middleware wraps a handler. A middleware that writes a response must
// return without calling next.
type Middleware func(next fasthttp.RequestHandler) fasthttp.RequestHandler

// Chain returns h wrapped by mw so that mw[0] runs first. Nil entries are
// skipped so optional steps can be passed unconditionally.
func Chain(h fasthttp.RequestHandler, mw ...Middleware) fasthttp.RequestHandler {
	for i := len(mw) - 1; i >= 0; i-- {
		if mw[i] == nil {
			continue
		}
		h = mw[i](h)
	}
	return h
}
