package rawhead

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCount(t *testing.T) {
	t.Parallel()
	name := []byte("Authorization")
	tests := []struct {
		raw  string
		want int
	}{
		{"", 0},
		{"Host: a\r\nAccept: */*\r\n\r\n", 0},
		{"Authorization: Bearer x\r\n\r\n", 1},
		{"authorization: a\r\nHost: h\r\nAUTHORIZATION : b\r\n\r\n", 2},
		{"Authorization-X: a\r\nX-Authorization: b\r\n", 0},
		{"Authorization:", 1},
		{"no colon line\r\nAuthorization\r\n", 0},
	}
	for _, tt := range tests {
		if got := Count([]byte(tt.raw), name); got != tt.want {
			t.Errorf("Count(%q) = %d, want %d", tt.raw, got, tt.want)
		}
	}
}

func TestNames(t *testing.T) {
	t.Parallel()
	var got []string
	for n := range Names([]byte("Host: a\r\nX-A \t: 1\r\n: empty\r\nno colon\r\nCookie: a=1;b=2\r\nlast:x")) {
		got = append(got, string(n))
	}
	if diff := cmp.Diff([]string{"Host", "X-A", "Cookie", "last"}, got); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
	// Stopping early stops the scan.
	n := 0
	for range Names([]byte("A: 1\r\nB: 2\r\nC: 3\r\n")) {
		n++
		if n == 2 {
			break
		}
	}
	if n != 2 {
		t.Errorf("break after 2 names, got %d", n)
	}
}

// FuzzNames: any bytes parse without panic, every name is non-empty, has
// no line break or colon, and is counted by Count.
func FuzzNames(f *testing.F) {
	f.Add([]byte("Host: a\r\nAuthorization: Bearer x\r\n\r\n"))
	f.Add([]byte(":\n\n a : b\r\nX\t:\t"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		for name := range Names(raw) {
			if len(name) == 0 || bytes.ContainsAny(name, ":\n") {
				t.Fatalf("bad name %q from %q", name, raw)
			}
			if Count(raw, name) < 1 {
				t.Fatalf("name %q not counted in %q", name, raw)
			}
		}
	})
}
