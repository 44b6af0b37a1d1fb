package audit

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func encodingJSON(t testing.TB, ev *Event) string {
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	full := Event{
		Time: time.Date(2026, 11, 23, 16, 5, 1, 123456789, time.UTC), Type: "request", RequestID: "abc",
		Route: "wiki", Subject: "alice", Issuer: "https://idp.example", SessionID: "s1", Method: "session",
		ClientIP: netip.MustParseAddr("2001:db8::1"), Country: "GB", City: "Linköping", ASN: 1221, DeviceID: "d1",
		Score: 160, Reasons: []string{"new_device", "impossible_travel"}, Decision: "step_up", Shadow: "allow",
		DenyReason: "risk_step_up", Status: 302, Detail: "x",
	}
	tests := []struct {
		name string
		ev   Event
	}{
		{"empty", Event{}},
		{"full", full},
		{"zone offset and zero nanos", Event{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600)), Type: "admin", Decision: "deny"}},
		{"negative score", Event{Score: -3, Decision: "allow"}},
		{"IPv4", Event{ClientIP: netip.MustParseAddr("81.2.69.142")}},
		{"hostile strings", Event{Subject: "a\"b\\c\n\r\t\b\f\x00\x1f<script>&'", City: "\u2028\u2029é", Detail: "bad \xff\xfe utf8",
			Reasons: []string{"", "<>"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			want := encodingJSON(t, &tc.ev)
			if diff := cmp.Diff(want, string(tc.ev.AppendJSON(nil))); diff != "" {
				t.Errorf("(-encoding/json +AppendJSON):\n%s", diff)
			}
		})
	}
}

func FuzzAppendJSON(f *testing.F) {
	f.Add("alice", "London", "a\"\\\n\x00<>&\u2028\xff", 42, uint32(7))
	f.Fuzz(func(t *testing.T, sub, city, detail string, score int, asn uint32) {
		ev := Event{Time: time.Unix(1795450736, 5).UTC(), Type: "request", Subject: sub, City: city, Detail: detail,
			Score: score, ASN: asn, Reasons: []string{detail, sub}, Decision: "allow"}
		if got, want := string(ev.AppendJSON(nil)), encodingJSON(t, &ev); got != want {
			t.Fatalf("AppendJSON %q\nencoding/json %q", got, want)
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	ev := Event{Time: time.Now(), Type: "request", RequestID: "e67f7795f1e8470acf097a0e4faa13e9", Route: "app",
		Subject: "alice", Issuer: "http://127.0.0.1:42105", SessionID: "Y8gMmx-0oTNEgCVA", Method: "session",
		ClientIP: netip.MustParseAddr("127.0.0.1"), Decision: "allow", Status: 200}
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = json.Marshal(&ev)
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 512)
		for b.Loop() {
			buf = ev.AppendJSON(buf[:0])
		}
	})
}
