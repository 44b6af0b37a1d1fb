package proxy

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var testEntries = []TableEntry{
	0: {Host: "app.example.com", PathPrefix: "/"},
	1: {Host: "app.example.com", PathPrefix: "/api"},
	2: {Host: "app.example.com", PathPrefix: "/api/v2/"},
	3: {Host: "*.example.com", PathPrefix: "/"},
	4: {Host: "", PathPrefix: "/public/"},
	5: {Host: "Other.Example.org", PathPrefix: "/admin"},
}

func TestTableMatch(t *testing.T) {
	t.Parallel()
	tab, err := CompileTable(testEntries, -1)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, host, path string
		want             int
	}{
		{name: "exact host root", host: "app.example.com", path: "/", want: 0},
		{name: "exact host longest prefix", host: "app.example.com", path: "/api/v2/users", want: 2},
		{name: "prefix on segment boundary", host: "app.example.com", path: "/api", want: 1},
		{name: "prefix not mid-segment", host: "app.example.com", path: "/apix", want: 0},
		{name: "trailing slash prefix needs the slash", host: "app.example.com", path: "/api/v2", want: 1},
		{name: "host case-insensitive", host: "APP.Example.COM", path: "/api/x", want: 1},
		{name: "host port stripped", host: "app.example.com:8443", path: "/", want: 0},
		{name: "trailing dot", host: "app.example.com.", path: "/", want: 0},
		{name: "wildcard one label", host: "wiki.example.com", path: "/x", want: 3},
		{name: "wildcard not two labels", host: "a.b.example.com", path: "/public/x", want: 4},
		{name: "wildcard not apex", host: "example.com", path: "/public/a", want: 4},
		{name: "catch-all host", host: "unknown.test", path: "/public/a", want: 4},
		{name: "catch-all no prefix", host: "unknown.test", path: "/private", want: -1},
		{name: "exact host does not fall through", host: "other.example.org", path: "/public/a", want: -1},
		{name: "configured case in host", host: "other.example.org", path: "/admin/x", want: 5},
		{name: "ipv6 literal with port", host: "[::1]:8080", path: "/public/", want: 4},
		{name: "empty host", host: "", path: "/public/", want: -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tab.Match([]byte(tc.host), []byte(tc.path)); got != tc.want {
				t.Errorf("Match(%q, %q) = %d, want %d", tc.host, tc.path, got, tc.want)
			}
		})
	}
}

func TestTableDefaultRoute(t *testing.T) {
	t.Parallel()
	tab, err := CompileTable([]TableEntry{{Host: "a.test"}, {Host: "b.test"}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]int{"a.test": 0, "nope.test": 1, "": 1} {
		if got := tab.Match([]byte(host), []byte("/")); got != want {
			t.Errorf("Match(%q) = %d, want %d", host, got, want)
		}
	}
}

func TestCompileTableErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		entries []TableEntry
		def     int
	}{
		{"relative prefix", []TableEntry{{Host: "a.test", PathPrefix: "api"}}, -1},
		{"duplicate", []TableEntry{{Host: "a.test"}, {Host: "A.test", PathPrefix: "/"}}, -1},
		{"port in host", []TableEntry{{Host: "a.test:80"}}, -1},
		{"inner wildcard", []TableEntry{{Host: "a.*.test"}}, -1},
		{"default out of range", []TableEntry{{Host: "a.test"}}, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := CompileTable(tc.entries, tc.def)
			if !errors.Is(err, ErrBadRoute) {
				t.Fatalf("err = %v, want ErrBadRoute", err)
			}
		})
	}
}

func TestMatchAllocs(t *testing.T) {
	tab, err := CompileTable(testEntries, -1)
	if err != nil {
		t.Fatal(err)
	}
	host, path := []byte("Wiki.Example.com:443"), []byte("/api/v2/x")
	if n := testing.AllocsPerRun(1000, func() { tab.Match(host, path) }); n != 0 {
		t.Fatalf("Match allocs = %v, want 0", n)
	}
}

func BenchmarkMatch(b *testing.B) {
	tab, err := CompileTable(testEntries, -1)
	if err != nil {
		b.Fatal(err)
	}
	host, path := []byte("app.example.com"), []byte("/api/v2/users/42")
	b.ReportAllocs()
	for b.Loop() {
		tab.Match(host, path)
	}
}

func FuzzMatch(f *testing.F) {
	tab, err := CompileTable(testEntries, -1)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range [][2]string{{"app.example.com", "/api"}, {"[::1]:80", "/"}, {"*.example.com", "//"}, {"a.example.com.", "/public/../x"}, {":", ""}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, host, path string) {
		idx := tab.Match([]byte(host), []byte(path))
		if idx < -1 || idx >= len(testEntries) {
			t.Fatalf("index %d out of range", idx)
		}
		if idx >= 0 && !prefixMatch([]byte(path), normPrefix(testEntries[idx].PathPrefix)) {
			t.Fatalf("route %d prefix %q does not cover path %q", idx, testEntries[idx].PathPrefix, path)
		}
	})
}

func normPrefix(p string) string {
	if p == "" {
		return "/"
	}
	return p
}

func TestCheckFraming(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, raw string
		want      error
	}{
		{"plain", "Host: a\r\nContent-Length: 3\r\n\r\n", nil},
		{"cl and te", "Host: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", ErrAmbiguousFraming},
		{"te and cl mixed case", "transfer-ENCODING: chunked\r\ncontent-length: 3\r\n\r\n", ErrAmbiguousFraming},
		{"obs-fold space", "Host: a\r\nX-A: b\r\n c\r\n\r\n", ErrObsoleteFolding},
		{"obs-fold tab", "Host: a\r\nX-A: b\r\n\tc\r\n\r\n", ErrObsoleteFolding},
		{"lf only", "Host: a\nTransfer-Encoding: chunked\n\n", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := CheckFraming([]byte(tc.raw)); !errors.Is(got, tc.want) {
				t.Errorf("CheckFraming = %v, want %v", got, tc.want)
			}
		})
	}
}

func FuzzCheckFraming(f *testing.F) {
	f.Add([]byte("Host: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"))
	f.Add([]byte("X: a\r\n b\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		_ = CheckFraming(raw)
	})
}

func TestTargetHost(t *testing.T) {
	t.Parallel()
	tests := []struct{ uri, host, want, path string }{
		{"/x?y", "h.test", "h.test", "/x"},
		{"http://a.test/p?q", "h.test", "a.test", "/p"},
		{"https://u:p@a.test:8443", "h.test", "a.test:8443", "/"},
		{"*", "h.test", "h.test", "*"},
	}
	for _, tc := range tests {
		got := string(TargetHost([]byte(tc.uri), []byte(tc.host)))
		gotPath := string(RawPath([]byte(tc.uri)))
		if diff := cmp.Diff([]string{tc.want, tc.path}, []string{got, gotPath}); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tc.uri, diff)
		}
	}
}
