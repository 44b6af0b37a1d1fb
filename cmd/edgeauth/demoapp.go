package main

import (
	"bytes"
	"html/template"
	"sort"
	"strings"

	"github.com/valyala/fasthttp"
)

// demoApp is the "legacy app" of the demo: it has no login of its own and
// shows which identity edgeauth told it about, so a person trying edgeauth
// sees the headers arrive (and sees that nothing arrives on public pages).
func demoApp(ctx *fasthttp.RequestCtx) {
	type header struct{ Name, Value string }
	var identity []header
	for k, v := range ctx.Request.Header.All() {
		name := string(k)
		lower := strings.ToLower(name)
		if strings.HasPrefix(lower, "x-auth-request-") || strings.HasPrefix(lower, "x-edgeauth-") ||
			lower == "x-request-id" || strings.HasPrefix(lower, "x-forwarded-") || lower == "forwarded" {
			value := string(v)
			if len(value) > 120 {
				value = value[:60] + "…" + value[len(value)-20:]
			}
			identity = append(identity, header{name, value})
		}
	}
	sort.Slice(identity, func(i, j int) bool { return identity[i].Name < identity[j].Name })
	var buf bytes.Buffer
	err := demoPage.Execute(&buf, struct {
		Path    string
		Headers []header
		User    string
	}{string(ctx.Path()), identity, string(ctx.Request.Header.Peek("X-Auth-Request-User"))})
	if err != nil {
		ctx.Error("template error", fasthttp.StatusInternalServerError)
		return
	}
	ctx.SetContentType("text/html; charset=utf-8")
	ctx.SetBody(buf.Bytes())
}

var demoPage = template.Must(template.New("demo").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Legacy app · {{.Path}}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.3rem;text-align:left;font-family:monospace;font-size:.85rem;word-break:break-all}
nav a{margin-right:1rem}</style></head><body>
<h1>Legacy app</h1>
<p>This app has no login. You asked for <code id="path">{{.Path}}</code>.
{{if .User}}edgeauth says you are <strong id="user">{{.User}}</strong>.{{else}}edgeauth sent no identity: this page is public.{{end}}</p>
<nav><a href="/">Home</a><a href="/reports/q3?view=full">A deep link</a><a href="/public/">Public page</a><a href="/admin/">Admins only</a><a href="/.edgeauth/logout">Sign out</a></nav>
<h2>Headers from edgeauth</h2>
<table id="headers"><tr><th>Header</th><th>Value</th></tr>
{{range .Headers}}<tr><td>{{.Name}}</td><td>{{.Value}}</td></tr>{{end}}
</table></body></html>
`))
