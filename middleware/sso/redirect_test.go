package sso

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/edgeauth/edgeauth/middleware/session"
)

// Open-redirect payloads (RFC 9700 §4.11.1; oauth2-proxy GHSA-qqxw-m5fj-f7gv,
// GHSA-j7px-6hwj-hpjg, GHSA-5m6c-jp6f-2vcv, GHSA-4mf2-f3wh-gvf2): every one
// must collapse to "/".
func TestSafeRedirectTarget(t *testing.T) {
	t.Parallel()
	allowed := map[string]struct{}{"app.example.com": {}, "wiki.example.com:8443": {}}
	tests := []struct {
		name, in, want string
	}{
		{"plain path", "/a/b?c=d", "/a/b?c=d"},
		{"root", "/", "/"},
		{"encoded path kept", "/a%20b/c?q=%2F", "/a%20b/c?q=%2F"},
		{"fragment dropped", "/a#frag", "/a"},
		{"empty", "", "/"},
		{"protocol relative", "//evil.com", "/"},
		{"backslash", "/\\evil.com", "/"},
		{"backslash first", "\\\\evil.com", "/"},
		{"tab between slashes", "/\t/evil.com", "/"},
		{"newline between slashes", "/\n/evil.com", "/"},
		{"scheme without slashes", "https:evil.com", "/"},
		{"scheme with three slashes", "https:///evil.com", "/"},
		{"encoded slashes", "%2F%2Fevil.com", "/"},
		{"path then encoded slash", "/%2Fevil.com", "/"},
		{"encoded backslash", "/%5Cevil.com", "/"},
		{"encoded tab", "/%09/evil.com", "/"},
		{"double encoded is a path", "/%252F%252Fevil.com", "/%252F%252Fevil.com"},
		{"javascript", "javascript:alert(1)", "/"},
		{"mixed-case javascript", "JaVaScRiPt:alert(1)", "/"},
		{"data", "data:text/html,x", "/"},
		{"absolute other host", "https://evil.com/x", "/"},
		{"mixed-case scheme other host", "HTTPS://evil.com", "/"},
		{"allowed host suffix trick", "https://app.example.com.evil.com/", "/"},
		{"userinfo trick", "https://app.example.com@evil.com/", "/"},
		{"allowed host", "https://app.example.com/x?y=1", "https://app.example.com/x?y=1"},
		{"allowed host mixed case", "HTTPS://App.Example.com/x", "https://App.Example.com/x"},
		{"allowed host wrong port", "https://wiki.example.com/x", "/"},
		{"allowed host and port", "https://wiki.example.com:8443/x", "https://wiki.example.com:8443/x"},
		{"ftp allowed host", "ftp://app.example.com/", "/"},
		{"leading space", " //evil.com", "/"},
		{"control char", "/a\x00b", "/"},
		{"del char", "/a\x7fb", "/"},
		{"non-ascii", "/\u2215\u2215evil.com", "/"},
		{"dot segments", "/a/..//evil.com", "/"},
		{"relative path", "evil.com", "/"},
		{"too long", "/" + strings.Repeat("a", maxRedirectLen), "/"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := safeTarget(tc.in, allowed); got != tc.want {
				t.Errorf("safeTarget(%q) = %q, want %q", tc.in, got, tc.want)
			}
			// Without an allow-list nothing absolute passes.
			if got := SafeRedirectTarget(tc.in); got != tc.want && !strings.HasPrefix(tc.want, "https://") {
				t.Errorf("SafeRedirectTarget(%q) = %q, want %q", tc.in, got, tc.want)
			} else if strings.HasPrefix(tc.want, "https://") && got != "/" {
				t.Errorf("SafeRedirectTarget(%q) = %q, want /", tc.in, got)
			}
		})
	}
}

func FuzzSafeRedirectTarget(f *testing.F) {
	for _, s := range []string{"/", "/a?b=c", "//evil.com", "/\\evil.com", "https:evil.com", "/\t/evil.com",
		"%2F%2Fevil.com", "/%5C", "JAVASCRIPT:x", "https://app.example.com/x", "/a/../b", "\\/x"} {
		f.Add(s)
	}
	allowed := map[string]struct{}{"app.example.com": {}}
	f.Fuzz(func(t *testing.T, in string) {
		out := SafeRedirectTarget(in)
		if !strings.HasPrefix(out, "/") || strings.HasPrefix(out, "//") || strings.HasPrefix(out, "/\\") {
			t.Fatalf("SafeRedirectTarget(%q) = %q", in, out)
		}
		if SafeRedirectTarget(out) != out {
			t.Fatalf("not idempotent: %q -> %q -> %q", in, out, SafeRedirectTarget(out))
		}
		abs := safeTarget(in, allowed)
		if strings.HasPrefix(abs, "/") {
			if strings.HasPrefix(abs, "//") || strings.HasPrefix(abs, "/\\") {
				t.Fatalf("safeTarget(%q) = %q", in, abs)
			}
		} else if !strings.HasPrefix(strings.ToLower(abs), "http://app.example.com/") &&
			!strings.HasPrefix(strings.ToLower(abs), "https://app.example.com/") &&
			strings.ToLower(abs) != "https://app.example.com" && strings.ToLower(abs) != "http://app.example.com" {
			t.Fatalf("safeTarget(%q) = %q leaves the allowed hosts", in, abs)
		}
	})
}

func TestCheckAudience(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		aud     []string
		azp     string
		trusted []string
		ok      bool
	}{
		{"only us", []string{"c"}, "", nil, true},
		{"only us with azp", []string{"c"}, "c", nil, true},
		{"not us", []string{"x"}, "", nil, false},
		{"us and untrusted", []string{"c", "x"}, "c", nil, false},
		{"us and trusted with azp", []string{"c", "x"}, "c", []string{"x"}, true},
		{"us and trusted without azp", []string{"c", "x"}, "", []string{"x"}, false},
		{"azp someone else", []string{"c"}, "x", nil, false},
	}
	for _, tc := range tests {
		if err := checkAudience(tc.aud, tc.azp, "c", tc.trusted); (err == nil) != tc.ok {
			t.Errorf("%s: err = %v", tc.name, err)
		}
	}
}

// The per-request cost of the RP is MaybeRefresh on a fresh session: it
// must not allocate.
func TestMaybeRefreshFreshSessionNoAlloc(t *testing.T) {
	rp := &RP{opts: Options{RefreshBefore: time.Minute}, now: time.Now}
	s := &session.Session{ID: "x", RefreshToken: "r", TokenExpiry: time.Now().Add(time.Hour)}
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		if got, err := rp.MaybeRefresh(ctx, s); got != s || err != nil {
			t.Fatal("refreshed a fresh session")
		}
	})
	if allocs != 0 {
		t.Errorf("allocs = %v, want 0", allocs)
	}
}

func BenchmarkMaybeRefreshFresh(b *testing.B) {
	rp := &RP{opts: Options{RefreshBefore: time.Minute}, now: time.Now}
	s := &session.Session{ID: "x", RefreshToken: "r", TokenExpiry: time.Now().Add(time.Hour)}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, _ = rp.MaybeRefresh(ctx, s)
	}
}

func BenchmarkSafeRedirectTarget(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = SafeRedirectTarget("/some/deep/link?with=query&and=more")
	}
}

func FuzzParseTxnCookie(f *testing.F) {
	k := newKeyring([][]byte{testKey}, "txn")
	f.Add(k.txnCookieValue("state", time.Unix(1700000000, 0)))
	f.Add("a.b.c")
	f.Add("..")
	f.Fuzz(func(t *testing.T, v string) {
		state, created, ok := k.parseTxnCookie(v)
		if ok && k.txnCookieValue(state, created) != v {
			t.Fatalf("accepted %q that does not re-encode", v)
		}
	})
}
