package risk

import (
	"bytes"
	"testing"
	"time"

	"github.com/edgeauth/edgeauth/middleware/reqstate"
	"github.com/edgeauth/edgeauth/middleware/risk/device"
	"github.com/google/go-cmp/cmp"
)

func TestHistoryRoundTrip(t *testing.T) {
	t.Parallel()
	h := sarah()
	h.RecordSuccess(milton, device.ID{2}, 22, t0.Add(10*time.Hour), Limits{})
	h.Touch(reqstate.Location{Country: "US"}, device.ID{2}, 22, t0.Add(11*time.Hour), Limits{})
	b, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got History
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(h, &got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	if len(b) > 120 {
		t.Errorf("encoding of 2 devices, 2 countries, 2 ASNs is %d bytes", len(b))
	}
	var empty History
	b, _ = (&History{}).MarshalBinary()
	if err := empty.UnmarshalBinary(b); err != nil || !empty.Empty() {
		t.Fatalf("empty: %v %+v", err, empty)
	}
}

func TestHistoryUnmarshalRejects(t *testing.T) {
	t.Parallel()
	good, _ := sarah().MarshalBinary()
	tests := map[string][]byte{
		"empty":          nil,
		"bad magic":      append([]byte{'X'}, good[1:]...),
		"future version": append([]byte{'R', 2}, good[2:]...),
		"trailing byte":  append(append([]byte(nil), good...), 0),
		"truncated":      good[:len(good)-3],
		"huge count":     {'R', 1, 0xff, 0xff, 0x03},
		"bad country":    bytes.Replace(good, []byte("GB"), []byte("g1"), 1),
	}
	for name, b := range tests {
		var h History
		if err := h.UnmarshalBinary(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestHistoryLimitsAndTouch(t *testing.T) {
	t.Parallel()
	lim := Limits{MaxDevices: 3, MaxCountries: 2, MaxASNs: 2}
	h := &History{}
	locs := []reqstate.Location{london, linkoping, milton, changchun}
	for i, l := range locs {
		h.RecordSuccess(l, device.ID{byte(i + 1)}, uint64(i+1), t0.Add(time.Duration(i)*time.Hour), lim)
	}
	if len(h.Devices) != 3 || len(h.Countries) != 2 || len(h.ASNs) != 2 {
		t.Fatalf("limits not enforced: %+v", h)
	}
	for _, d := range h.Devices {
		if d.ID == (device.ID{1}) {
			t.Fatal("least recently seen device kept")
		}
	}
	// Touch never adds a country, device or ASN: only login does.
	before := h.Clone()
	h.Touch(bhutan, device.ID{99}, 99, t0.Add(5*time.Hour), lim)
	if len(h.Devices) != len(before.Devices) || len(h.Countries) != len(before.Countries) {
		t.Fatal("Touch added entries")
	}
	if h.Last.Country != [2]byte{'B', 'T'} {
		t.Fatal("Touch did not move the last location")
	}
	// Rate bound.
	if h.NeedsTouch(bhutan, t0.Add(5*time.Hour+time.Minute), 5*time.Minute) {
		t.Error("same place within interval needs a write")
	}
	if !h.NeedsTouch(bhutan, t0.Add(5*time.Hour+6*time.Minute), 5*time.Minute) {
		t.Error("same place after interval needs no write")
	}
	if !h.NeedsTouch(london, t0.Add(5*time.Hour+time.Minute), 5*time.Minute) {
		t.Error("moved but no write")
	}
	// Unknown location keeps the previous last location.
	h.RecordSuccess(reqstate.Location{}, device.ID{1}, 1, t0.Add(6*time.Hour), lim)
	if h.Last.Country != [2]byte{'B', 'T'} {
		t.Fatal("unknown location replaced last location")
	}
}

func FuzzHistoryUnmarshal(f *testing.F) {
	good, _ := sarah().MarshalBinary()
	f.Add(good)
	f.Add([]byte{'R', 1, 0, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var h History
		if err := h.UnmarshalBinary(b); err != nil {
			return
		}
		// Whatever we accept re-encodes to the same bytes (canonical).
		out, err := h.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var h2 History
		if err := h2.UnmarshalBinary(out); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !cmp.Equal(h, h2) {
			t.Fatalf("round trip differs")
		}
	})
}
