package errpage

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestIsBrowserNavigation(t *testing.T) {
	tests := []struct {
		name    string
		method  string
		headers map[string]string
		want    bool
	}{
		{"browser GET", "GET", map[string]string{"Accept": "text/html,application/xhtml+xml"}, true},
		{"browser HEAD", "HEAD", map[string]string{"Accept": "text/html"}, true},
		{"json client", "GET", map[string]string{"Accept": "application/json"}, false},
		{"no accept", "GET", nil, false},
		{"POST form", "POST", map[string]string{"Accept": "text/html"}, false},
		{"xhr", "GET", map[string]string{"Accept": "text/html", "X-Requested-With": "XMLHttpRequest"}, false},
		{"fetch cors", "GET", map[string]string{"Accept": "text/html", "Sec-Fetch-Mode": "cors"}, false},
		{"fetch navigate", "GET", map[string]string{"Accept": "text/html", "Sec-Fetch-Mode": "navigate"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ctx fasthttp.RequestCtx
			ctx.Request.Header.SetMethod(tt.method)
			for k, v := range tt.headers {
				ctx.Request.Header.Set(k, v)
			}
			if got := IsBrowserNavigation(&ctx); got != tt.want {
				t.Fatalf("IsBrowserNavigation = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWriteJSONCarriesRequestIDAndEscapes(t *testing.T) {
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.Set(RequestIDHeader, "abc123")
	ctx.Request.Header.Set("Accept", "application/json")
	Write(&ctx, 502, "upstream_unavailable", "bad \"gateway\" \x00 <x>")
	if ctx.Response.StatusCode() != 502 {
		t.Fatalf("status %d", ctx.Response.StatusCode())
	}
	var body struct {
		Error     string `json:"error"`
		Message   string `json:"message"`
		RequestID string `json:"request_id"`
	}
	if err := json.Unmarshal(ctx.Response.Body(), &body); err != nil {
		t.Fatalf("body is not JSON: %v: %q", err, ctx.Response.Body())
	}
	if body.RequestID != "abc123" || body.Error != "upstream_unavailable" {
		t.Fatalf("body %+v", body)
	}
	if got := string(ctx.Response.Header.Peek(RequestIDHeader)); got != "abc123" {
		t.Fatalf("response request id %q", got)
	}
}

func TestWriteHTMLEscapesMessage(t *testing.T) {
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.Set("Accept", "text/html")
	ctx.Request.Header.Set(RequestIDHeader, "r1")
	Write(&ctx, 403, "denied", "<script>alert(1)</script>")
	body := string(ctx.Response.Body())
	if strings.Contains(body, "<script>") || !strings.Contains(body, "r1") {
		t.Fatalf("unsafe or incomplete page: %s", body)
	}
	if ct := string(ctx.Response.Header.ContentType()); !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("content type %q", ct)
	}
}
