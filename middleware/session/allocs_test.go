//go:build !race

// The race detector makes sync.Pool drop items on purpose, so allocation
// guards only run in normal builds (go test without -race).

package session

import (
	"testing"

	"github.com/edgeauth/edgeauth/middleware/reqstate"
)

func TestCodecDecodeAllocs(t *testing.T) {
	c := mustCodec(t, testKey(1), testKey(2))
	v := []byte(c.Encode(NewID()))
	if n := testing.AllocsPerRun(200, func() {
		if _, ok := c.Decode(v); !ok {
			t.Fatal("decode failed")
		}
	}); n > 1 {
		t.Errorf("Decode allocates %v times, want <= 1 (the id string)", n)
	}
}

// TestLookupAllocs guards the hot path: cookie parse, HMAC, cache hit and
// state fill allocate only the id string.
func TestLookupAllocs(t *testing.T) {
	f := newFixture(t)
	var called bool
	h := f.handler(t, f.store, nil, &called)
	ctx := requestWithCookies(f.cookie.Name() + "=" + f.codec.Encode(f.live.ID))
	n := testing.AllocsPerRun(500, func() {
		h(ctx)
		if !reqstate.Get(ctx).Authenticated() {
			t.Fatal("not authenticated")
		}
		ctx.ResetUserValues()
	})
	if n > 1 {
		t.Errorf("lookup allocates %v times per request, want <= 1", n)
	}
}
