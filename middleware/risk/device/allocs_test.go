//go:build !race

// Allocation guards run without the race detector, which makes sync.Pool
// drop items on purpose and so allocates.

package device_test

import (
	"testing"

	"github.com/edgeauth/edgeauth/middleware/risk/device"
)

func TestCookieDecodeAllocs(t *testing.T) {
	c, _ := device.NewCookieCodec([][]byte{key(1)})
	v := []byte(c.Encode(device.ID{1, 2, 3}))
	_, _ = c.Decode(v)
	if n := testing.AllocsPerRun(200, func() { _, _ = c.Decode(v) }); n != 0 {
		t.Fatalf("Decode allocates %v", n)
	}
}

func TestComputeAllocs(t *testing.T) {
	tr := device.Traits{UserAgent: []byte(uaChromeWin), AcceptLanguage: []byte("en"), SecCHUA: []byte(`"Chromium";v="124"`)}
	if n := testing.AllocsPerRun(200, func() { _ = device.Compute(tr); _ = device.HintsMismatch(tr) }); n != 0 {
		t.Fatalf("Compute allocates %v", n)
	}
}
