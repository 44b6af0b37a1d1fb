package middleware

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/valyala/fasthttp"
)

func recorder(name string, seen *[]string) Middleware {
	return func(next fasthttp.RequestHandler) fasthttp.RequestHandler {
		return func(ctx *fasthttp.RequestCtx) {
			*seen = append(*seen, name)
			next(ctx)
		}
	}
}

func TestStepsBuildRunsInPipelineOrder(t *testing.T) {
	var seen []string
	s := Steps{
		Identity: recorder("identity", &seen),
		Policy:   recorder("policy", &seen),
		Risk:     recorder("risk", &seen),
		Token:    recorder("token", &seen),
		Session:  recorder("session", &seen),
		Audit:    recorder("audit", &seen),
		ClientIP: recorder("clientip", &seen),
	}
	h := s.Build(func(*fasthttp.RequestCtx) { seen = append(seen, "upstream") })
	h(&fasthttp.RequestCtx{})
	want := []string{"clientip", "audit", "session", "token", "risk", "policy", "identity", "upstream"}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Fatalf("pipeline order (-want +got):\n%s", diff)
	}
}

func TestChainSkipsNilSteps(t *testing.T) {
	var seen []string
	h := Chain(func(*fasthttp.RequestCtx) { seen = append(seen, "h") }, nil, recorder("a", &seen), nil)
	h(&fasthttp.RequestCtx{})
	if diff := cmp.Diff([]string{"a", "h"}, seen); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

func TestStateFreeStepAfterResponseDoesNotCallNext(t *testing.T) {
	// A step that answers must not call next: the upstream must not run.
	called := false
	deny := Middleware(func(next fasthttp.RequestHandler) fasthttp.RequestHandler {
		return func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(fasthttp.StatusForbidden) }
	})
	h := Chain(func(*fasthttp.RequestCtx) { called = true }, deny)
	ctx := &fasthttp.RequestCtx{}
	h(ctx)
	if called || ctx.Response.StatusCode() != fasthttp.StatusForbidden {
		t.Fatalf("upstream called=%v status=%d", called, ctx.Response.StatusCode())
	}
}
