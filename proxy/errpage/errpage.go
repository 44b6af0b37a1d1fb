// Package errpage renders every error response edgeauth itself produces:
// an HTML page for browser navigations, JSON for everything else, always
// with the request id so a user can quote it and an operator can find the
// log line. Only client-safe text goes in; causes stay in the logs.
package errpage

import (
	"bytes"
	"encoding/json"
	"html/template"

	"github.com/valyala/fasthttp"
)

// RequestIDHeader carries the request id upstream and in responses.
const RequestIDHeader = "X-Request-Id"

var (
	headerXRequestedWith = []byte("X-Requested-With")
	headerSecFetchMode   = []byte("Sec-Fetch-Mode")
	textHTML             = []byte("text/html")
	xmlHTTPRequest       = []byte("XMLHttpRequest")
)

// IsBrowserNavigation reports whether the request looks like a top-level
// browser navigation: GET or HEAD, accepting text/html, not an XHR/fetch.
// Only such requests may be answered with redirects or HTML; API clients get
// JSON and status codes they can act on.
func IsBrowserNavigation(ctx *fasthttp.RequestCtx) bool {
	if !ctx.IsGet() && !ctx.IsHead() {
		return false
	}
	h := &ctx.Request.Header
	if bytes.Equal(h.PeekBytes(headerXRequestedWith), xmlHTTPRequest) {
		return false
	}
	if m := h.PeekBytes(headerSecFetchMode); len(m) > 0 && string(m) != "navigate" {
		return false
	}
	return bytes.Contains(h.Peek(fasthttp.HeaderAccept), textHTML)
}

// RequestID returns the request id set by the proxy.
func RequestID(ctx *fasthttp.RequestCtx) string {
	return string(ctx.Request.Header.Peek(RequestIDHeader))
}

var page = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="referrer" content="no-referrer"><title>{{.Status}} {{.Title}}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}code{background:#f3f3f3;padding:.1rem .3rem;border-radius:3px}p.meta{color:#666;font-size:.9rem}</style>
</head><body><h1>{{.Title}}</h1><p>{{.Message}}</p>
<p class="meta">Status {{.Status}} · reason <code>{{.Code}}</code> · request id <code>{{.RequestID}}</code></p>
</body></html>
`))

// Write renders an error response. code is a short machine-readable reason
// (e.g. "upstream_unavailable"); message is a sentence safe to show anyone.
func Write(ctx *fasthttp.RequestCtx, status int, code, message string) {
	reqID := RequestID(ctx)
	ctx.Response.Reset()
	ctx.SetStatusCode(status)
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	ctx.Response.Header.Set("X-Content-Type-Options", "nosniff")
	if reqID != "" {
		ctx.Response.Header.Set(RequestIDHeader, reqID)
	}
	if IsBrowserNavigation(ctx) {
		ctx.SetContentType("text/html; charset=utf-8")
		var buf bytes.Buffer
		_ = page.Execute(&buf, struct {
			Status                          int
			Title, Message, Code, RequestID string
		}{status, fasthttp.StatusMessage(status), message, code, reqID})
		ctx.SetBody(buf.Bytes())
		return
	}
	ctx.SetContentType("application/json")
	// encoding/json, not hand-built quoting: messages may carry any text and
	// the body must stay valid JSON for API clients.
	b, _ := json.Marshal(struct {
		Error     string `json:"error"`
		Message   string `json:"message"`
		RequestID string `json:"request_id"`
	}{code, message, reqID})
	ctx.SetBody(append(b, '\n'))
}
