package clientip

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func prefixes(t *testing.T, ss ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func lines(ss ...string) [][]byte {
	var out [][]byte
	for _, s := range ss {
		out = append(out, []byte(s))
	}
	return out
}

func TestResolveXFF(t *testing.T) {
	t.Parallel()
	trusted := []string{"10.0.0.0/8", "127.0.0.1/32", "2001:db8:ffff::/48"}
	tests := []struct {
		name   string
		peer   string
		values [][]byte
		want   string
	}{
		{
			// Attack: a client connecting directly claims to be someone
			// else (e.g. an address in the victim's home city).
			name: "spoofed XFF from untrusted peer is ignored",
			peer: "198.51.100.7", values: lines("81.2.69.142"), want: "198.51.100.7",
		},
		{name: "trusted peer, single client", peer: "10.0.0.1", values: lines("81.2.69.142"), want: "81.2.69.142"},
		{name: "no header from trusted peer", peer: "10.0.0.1", values: nil, want: "10.0.0.1"},
		{
			// Attack: the client prepends a forged address; only the
			// rightmost untrusted entry (added by our proxy) counts.
			name: "leftmost forged entry is not believed",
			peer: "10.0.0.1", values: lines("1.1.1.1, 81.2.69.142"), want: "81.2.69.142",
		},
		{name: "skips trusted hops right to left", peer: "10.0.0.1", values: lines("81.2.69.142, 10.1.1.1, 10.2.2.2"), want: "81.2.69.142"},
		{name: "multiple lines are one list", peer: "10.0.0.1", values: lines("1.1.1.1", "81.2.69.142, 10.0.0.9"), want: "81.2.69.142"},
		{name: "multiple lines, rightmost line wins", peer: "10.0.0.1", values: lines("81.2.69.142", "175.16.199.0"), want: "175.16.199.0"},
		{name: "ipv6 client", peer: "10.0.0.1", values: lines("2001:db8::1"), want: "2001:db8::1"},
		{name: "ipv6 bracketed with port", peer: "10.0.0.1", values: lines("[2001:db8::1]:443"), want: "2001:db8::1"},
		{name: "ipv6 bracketed no port", peer: "10.0.0.1", values: lines("[2001:db8::2]"), want: "2001:db8::2"},
		{name: "ipv4 with port", peer: "10.0.0.1", values: lines("81.2.69.142:5555"), want: "81.2.69.142"},
		{name: "ipv4-mapped entry unmapped", peer: "10.0.0.1", values: lines("::ffff:81.2.69.142"), want: "81.2.69.142"},
		{name: "ipv4-mapped trusted peer", peer: "::ffff:10.0.0.1", values: lines("81.2.69.142"), want: "81.2.69.142"},
		{name: "trusted ipv6 proxy", peer: "2001:db8:ffff::1", values: lines("89.160.20.112, 2001:db8:ffff::2"), want: "89.160.20.112"},
		{name: "whitespace and empty elements", peer: "10.0.0.1", values: lines(" 81.2.69.142 ,, \t"), want: "81.2.69.142"},
		{name: "garbage stops at last trusted hop", peer: "10.0.0.1", values: lines("81.2.69.142, garbage, 10.0.0.5"), want: "10.0.0.5"},
		{name: "garbage rightmost gives peer", peer: "10.0.0.1", values: lines("81.2.69.142, not-an-ip"), want: "10.0.0.1"},
		{name: "unknown stops", peer: "10.0.0.1", values: lines("81.2.69.142, unknown"), want: "10.0.0.1"},
		{name: "zone rejected", peer: "10.0.0.1", values: lines("fe80::1%eth0"), want: "10.0.0.1"},
		{name: "bad port rejected", peer: "10.0.0.1", values: lines("81.2.69.142:99999"), want: "10.0.0.1"},
		{name: "all trusted gives leftmost trusted", peer: "10.0.0.1", values: lines("10.9.9.9, 10.8.8.8"), want: "10.9.9.9"},
		{name: "trusted loopback peer", peer: "127.0.0.1", values: lines("216.160.83.56"), want: "216.160.83.56"},
		{name: "ipv4 in brackets rejected", peer: "10.0.0.1", values: lines("[81.2.69.142]"), want: "10.0.0.1"},
		{name: "unterminated bracket", peer: "10.0.0.1", values: lines("[2001:db8::1"), want: "10.0.0.1"},
	}
	r, err := New(Options{Trusted: prefixes(t, trusted...)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := r.Resolve(netip.MustParseAddr(tt.peer), tt.values)
			if diff := cmp.Diff(tt.want, got.String()); diff != "" {
				t.Errorf("Resolve (-want +got):\n%s", diff)
			}
		})
	}
}

func TestResolveForwarded(t *testing.T) {
	t.Parallel()
	r, err := New(Options{Trusted: prefixes(t, "10.0.0.0/8"), Header: "forwarded"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		peer   string
		values [][]byte
		want   string
	}{
		{name: "simple", peer: "10.0.0.1", values: lines("for=81.2.69.142"), want: "81.2.69.142"},
		{name: "case-insensitive name and params", peer: "10.0.0.1", values: lines("For=81.2.69.142;proto=https;by=10.0.0.1"), want: "81.2.69.142"},
		{name: "quoted ipv6 with port", peer: "10.0.0.1", values: lines(`for="[2001:db8:cafe::17]:4711"`), want: "2001:db8:cafe::17"},
		{name: "quoted ipv4 with port", peer: "10.0.0.1", values: lines(`for="81.2.69.142:80"`), want: "81.2.69.142"},
		{name: "right to left skipping trusted", peer: "10.0.0.1", values: lines("for=1.1.1.1, for=81.2.69.142;proto=http, for=10.3.3.3"), want: "81.2.69.142"},
		{name: "several lines", peer: "10.0.0.1", values: lines("for=1.1.1.1", "for=175.16.199.0"), want: "175.16.199.0"},
		{name: "unknown stops", peer: "10.0.0.1", values: lines("for=81.2.69.142, for=unknown"), want: "10.0.0.1"},
		{name: "obfuscated stops", peer: "10.0.0.1", values: lines("for=81.2.69.142, for=_hidden, for=10.4.4.4"), want: "10.4.4.4"},
		{name: "obfuscated port accepted", peer: "10.0.0.1", values: lines(`for="81.2.69.142:_p1"`), want: "81.2.69.142"},
		{name: "unbracketed ipv6 rejected", peer: "10.0.0.1", values: lines(`for="2001:db8::1"`), want: "10.0.0.1"},
		{name: "missing for stops", peer: "10.0.0.1", values: lines("for=81.2.69.142, proto=https"), want: "10.0.0.1"},
		{name: "duplicate for rejected", peer: "10.0.0.1", values: lines("for=81.2.69.142;for=1.1.1.1"), want: "10.0.0.1"},
		{name: "comma inside quotes is not a separator", peer: "10.0.0.1", values: lines(`for=81.2.69.142;ext="a,for=1.1.1.1"`), want: "81.2.69.142"},
		{name: "escape rejected", peer: "10.0.0.1", values: lines(`for="81.2.69.142\"`), want: "10.0.0.1"},
		{
			// Attack: a trailing backslash in an unterminated quote must
			// not make the parser skip the rightmost element and fall
			// back to an attacker-chosen one further left.
			name: "trailing backslash does not hide rightmost", peer: "10.0.0.1",
			values: lines(`for=1.1.1.1, for="\`), want: "10.0.0.1",
		},
		{name: "untrusted peer ignored", peer: "203.0.113.9", values: lines("for=81.2.69.142"), want: "203.0.113.9"},
		{name: "garbage", peer: "10.0.0.1", values: lines(";;=="), want: "10.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := r.Resolve(netip.MustParseAddr(tt.peer), tt.values)
			if diff := cmp.Diff(tt.want, got.String()); diff != "" {
				t.Errorf("Resolve (-want +got):\n%s", diff)
			}
		})
	}
}

func TestResolveLimits(t *testing.T) {
	t.Parallel()
	trusted := prefixes(t, "10.0.0.0/8")
	many := strings.Repeat("10.1.1.1, ", 40) + "10.2.2.2"
	tests := []struct {
		name   string
		opts   Options
		values [][]byte
		want   string
	}{
		{
			name:   "entry cap: client beyond the rightmost N is not reached",
			opts:   Options{Trusted: trusted, MaxEntries: 3},
			values: lines("81.2.69.142, 10.1.1.1, 10.1.1.2, 10.1.1.3"),
			want:   "10.1.1.1",
		},
		{
			name:   "entry cap: within bound",
			opts:   Options{Trusted: trusted, MaxEntries: 4},
			values: lines("81.2.69.142, 10.1.1.1, 10.1.1.2, 10.1.1.3"),
			want:   "81.2.69.142",
		},
		{
			name:   "default cap with long trusted chain",
			opts:   Options{Trusted: trusted},
			values: lines("81.2.69.142, " + many),
			want:   "10.1.1.1",
		},
		{
			// Attack: header bloat to make the parser do unbounded work.
			name:   "byte cap: oversize header ignored",
			opts:   Options{Trusted: trusted, MaxBytes: 16},
			values: lines("81.2.69.142, 10.1.1.1"),
			want:   "10.0.0.1",
		},
		{
			name:   "header none ignores headers from trusted peers",
			opts:   Options{Trusted: trusted, Header: "none"},
			values: lines("81.2.69.142"),
			want:   "10.0.0.1",
		},
		{
			name:   "no trusted proxies",
			opts:   Options{},
			values: lines("81.2.69.142"),
			want:   "10.0.0.1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := New(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			got := r.Resolve(netip.MustParseAddr("10.0.0.1"), tt.values)
			if diff := cmp.Diff(tt.want, got.String()); diff != "" {
				t.Errorf("Resolve (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts Options
	}{
		{"unknown header", Options{Header: "x-real-ip"}},
		{"too many entries", Options{MaxEntries: 65}},
		{"negative entries", Options{MaxEntries: -1}},
		{"negative bytes", Options{MaxBytes: -1}},
		{"huge bytes", Options{MaxBytes: 1 << 20}},
		{"invalid prefix", Options{Trusted: []netip.Prefix{{}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := New(tt.opts); err == nil {
				t.Fatal("New: want error")
			}
		})
	}
}

func TestResolveAllocs(t *testing.T) {
	for _, h := range []string{"x-forwarded-for", "forwarded"} {
		r, err := New(Options{Trusted: prefixes(t, "10.0.0.0/8"), Header: h})
		if err != nil {
			t.Fatal(err)
		}
		v := lines("1.1.1.1, 81.2.69.142, [2001:db8::1]:80, 10.0.0.7")
		if h == "forwarded" {
			v = lines(`for=1.1.1.1, for="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.7`)
		}
		peer := netip.MustParseAddr("10.0.0.1")
		if n := testing.AllocsPerRun(200, func() { _ = r.Resolve(peer, v) }); n != 0 {
			t.Errorf("%s: Resolve allocs = %v, want 0", h, n)
		}
	}
}

func BenchmarkResolveXFF(b *testing.B) {
	r, _ := New(Options{Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	v := lines("1.1.1.1, 81.2.69.142, 10.0.0.7")
	peer := netip.MustParseAddr("10.0.0.1")
	b.ReportAllocs()
	for b.Loop() {
		_ = r.Resolve(peer, v)
	}
}

func BenchmarkResolveForwarded(b *testing.B) {
	r, _ := New(Options{Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Header: "forwarded"})
	v := lines(`for=1.1.1.1, for="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.7`)
	peer := netip.MustParseAddr("10.0.0.1")
	b.ReportAllocs()
	for b.Loop() {
		_ = r.Resolve(peer, v)
	}
}

func FuzzParseXFFEntry(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "[2001:db8::1]:80", "::ffff:1.2.3.4", "1.2.3.4:65535", "garbage", "[", "fe80::1%eth0"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, ok := ParseXFFEntry(b)
		if ok && (!a.IsValid() || a.Is4In6() || a.Zone() != "") {
			t.Fatalf("ParseXFFEntry(%q) = %v: invalid, mapped or zoned result", b, a)
		}
	})
}

func FuzzResolve(f *testing.F) {
	for _, s := range []string{"for=1.2.3.4", `for="[2001:db8::1]:4711";proto=https`, `for="\`, "1.1.1.1, 10.0.0.2", ",,,", `"a,b"`} {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	xff, _ := New(Options{Trusted: trusted})
	fwd, _ := New(Options{Trusted: trusted, Header: "forwarded"})
	peer := netip.MustParseAddr("10.0.0.1")
	f.Fuzz(func(t *testing.T, b []byte, forwarded bool) {
		r := xff
		if forwarded {
			r = fwd
			_, _ = ParseForwardedElement(b)
		}
		got := r.Resolve(peer, [][]byte{b, b})
		if !got.IsValid() || got.Is4In6() {
			t.Fatalf("Resolve(%q) = %v", b, got)
		}
		// The answer is the peer, a trusted hop, or an address that
		// literally appears in the header: never invented.
		if got != peer && !strings.Contains(string(b), got.String()) && !strings.Contains(strings.ToLower(string(b)), got.StringExpanded()) {
			if !mappedIn(string(b), got) {
				t.Fatalf("Resolve(%q) = %v, not in input", b, got)
			}
		}
	})
}

// mappedIn reports whether got appears in s in some other textual form
// (IPv4-mapped, leading zeros in IPv6 groups, upper case).
func mappedIn(s string, got netip.Addr) bool {
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return strings.ContainsRune(` ,;="[]`, r) }) {
		if i := strings.LastIndexByte(f, ':'); i > 0 && strings.Count(f, ":") == 1 {
			f = f[:i]
		}
		if a, err := netip.ParseAddr(f); err == nil && a.Unmap() == got {
			return true
		}
	}
	return false
}
