package session

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func mustCodec(t testing.TB, keys ...[]byte) *Codec {
	t.Helper()
	c, err := NewCodec(keys)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewCodecRejectsBadKeys(t *testing.T) {
	t.Parallel()
	for name, keys := range map[string][][]byte{
		"none":      nil,
		"short":     {make([]byte, 31)},
		"short old": {testKey(1), make([]byte, 16)},
	} {
		if _, err := NewCodec(keys); err == nil {
			t.Errorf("%s: NewCodec = nil error", name)
		}
	}
	if _, err := NewSigner("", [][]byte{testKey(1)}); err == nil {
		t.Error("NewSigner with empty purpose = nil error")
	}
}

func TestCodecRoundTripAndRotation(t *testing.T) {
	t.Parallel()
	oldKey, newKey := testKey(1), testKey(2)
	before := mustCodec(t, oldKey)
	during := mustCodec(t, newKey, oldKey) // new key signs, old still verifies
	after := mustCodec(t, newKey)
	id := NewID()

	oldCookie := before.Encode(id)
	if len(oldCookie) != CookieValueLen {
		t.Fatalf("cookie value is %d bytes, want %d", len(oldCookie), CookieValueLen)
	}
	tests := []struct {
		name   string
		codec  *Codec
		value  string
		wantOK bool
	}{
		{"same key", before, oldCookie, true},
		{"old key verifies during rotation", during, oldCookie, true},
		{"new key signs during rotation", during, during.Encode(id), true},
		{"new cookie verifies after rotation", after, during.Encode(id), true},
		{"old cookie fails after the old key is dropped", after, oldCookie, false},
		{"new cookie fails on an instance that lacks the new key", before, during.Encode(id), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok := tc.codec.Decode([]byte(tc.value))
			if ok != tc.wantOK || (ok && got != id) {
				t.Errorf("Decode = (%q, %v), want (%q, %v)", got, ok, id, tc.wantOK)
			}
		})
	}
	if during.Encode(id) == oldCookie {
		t.Error("rotation did not change the signing key")
	}
}

func TestCodecEncodeRejectsForeignIDs(t *testing.T) {
	t.Parallel()
	c := mustCodec(t, testKey(1))
	for _, id := range []string{"", "short", strings.Repeat("A", 44), strings.Repeat("*", 43)} {
		if v := c.Encode(id); v != "" {
			t.Errorf("Encode(%q) = %q, want empty", id, v)
		}
	}
}

// TestCodecRejectsTampering covers forged and mangled cookies: each must be
// "no session".
func TestCodecRejectsTampering(t *testing.T) {
	t.Parallel()
	c := mustCodec(t, testKey(1))
	// The std-alphabet case needs a cookie with a '-' or '_' to change
	// (a random one lacks both about a quarter of the time).
	valid := c.Encode(NewID())
	for !strings.ContainsAny(valid, "-_") {
		valid = c.Encode(NewID())
	}
	raw, err := base64.RawURLEncoding.DecodeString(valid)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) string {
		b := append([]byte(nil), raw...)
		b[i] ^= 1
		return base64.RawURLEncoding.EncodeToString(b)
	}
	// Attack: a cookie signed for another purpose (device cookie) with the
	// same key, replayed as a session cookie.
	device, err := NewSigner("edgeauth-device-v1", [][]byte{testKey(1)})
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]string{
		"empty":                   "",
		"truncated":               valid[:len(valid)-1],
		"extended":                valid + "A",
		"flipped id bit":          flip(0),
		"flipped mac bit":         flip(len(raw) - 1),
		"padded base64":           valid + "==",
		"std base64 alphabet":     strings.NewReplacer("-", "+", "_", "/").Replace(valid),
		"non-canonical last char": valid[:len(valid)-1] + string(nonCanonical(valid[len(valid)-1])),
		"other purpose":           device.Sign(raw[:IDBytes]),
		"mac of other key":        mustCodec(t, testKey(9)).Encode(NewID()),
		"whitespace":              " " + valid[1:],
		"huge":                    strings.Repeat("A", 1<<16),
	}
	for name, v := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if v == valid {
				t.Fatal("test value equals the valid cookie")
			}
			if id, ok := c.Decode([]byte(v)); ok {
				t.Errorf("Decode(%q) = (%q, true), want rejection", v, id)
			}
		})
	}
}

// nonCanonical returns a base64url character that differs from c only in
// the low bits that the last character of a 64-byte value does not use:
// strict decoding must reject it (cookie malleability).
func nonCanonical(c byte) byte {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, c)
	return alphabet[i^1]
}

func TestSignerVerifyAnyLength(t *testing.T) {
	t.Parallel()
	s, err := NewSigner("edgeauth-test-v1", [][]byte{testKey(3)})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"", "x", strings.Repeat("p", MaxSignedPayload)} {
		v := s.Sign([]byte(p))
		got, ok := s.Verify(nil, []byte(v), -1)
		if !ok || string(got) != p {
			t.Errorf("Verify(Sign(%d bytes)) = (%d bytes, %v)", len(p), len(got), ok)
		}
		if _, ok := s.Verify(nil, []byte(v), len(p)+1); ok {
			t.Errorf("Verify with the wrong expected length accepted %d bytes", len(p))
		}
	}
}

// TestSetCookieUnder200Bytes pins the size whatever the session holds: the
// cookie only ever carries the signed id.
func TestSetCookieUnder200Bytes(t *testing.T) {
	t.Parallel()
	c := mustCodec(t, testKey(1))
	for _, o := range []CookieOptions{{}, {Secure: true}, {Secure: true, Name: strings.Repeat("n", 32)}} {
		secure := o.Secure
		ck, err := NewCookie(o)
		if err != nil {
			t.Fatal(err)
		}
		var ctx fasthttp.RequestCtx
		ck.Set(&ctx, c.Encode(NewID()), 365*24*time.Hour)
		h := ctx.Response.Header.PeekCookie(ck.Name())
		line := "Set-Cookie: " + string(h)
		if len(line) >= 200 {
			t.Errorf("secure=%v: %d bytes, want < 200: %s", secure, len(line), line)
		}
		t.Logf("%d bytes: %s", len(line), line)
	}
}

func TestCookieAttributes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		opts     CookieOptions
		wantName string
		want     []string
		notWant  []string
	}{
		{CookieOptions{Secure: true}, "__Host-edgeauth_session", []string{"; path=/", "; HttpOnly", "; secure", "; SameSite=Lax", "; max-age=3600"}, []string{"domain="}},
		{CookieOptions{Name: "sid"}, "sid", []string{"; path=/", "; HttpOnly", "; SameSite=Lax"}, []string{"secure", "domain="}},
	}
	for _, tc := range tests {
		ck, err := NewCookie(tc.opts)
		if err != nil {
			t.Fatal(err)
		}
		if ck.Name() != tc.wantName {
			t.Errorf("Name = %q, want %q", ck.Name(), tc.wantName)
		}
		var ctx fasthttp.RequestCtx
		ck.Set(&ctx, "v", time.Hour)
		got := string(ctx.Response.Header.PeekCookie(ck.Name()))
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: missing %q", got, w)
			}
		}
		for _, w := range tc.notWant {
			if strings.Contains(strings.ToLower(got), w) {
				t.Errorf("%s: unexpected %q", got, w)
			}
		}
		ctx.Response.Reset()
		ck.Clear(&ctx)
		got = string(ctx.Response.Header.PeekCookie(ck.Name()))
		if !strings.Contains(got, "max-age=0") {
			t.Errorf("Clear wrote %q, want max-age=0", got)
		}
	}
	for _, bad := range []string{"a b", "x;y", "__Host-x", strings.Repeat("n", 33), "é"} {
		if _, err := NewCookie(CookieOptions{Name: bad}); err == nil {
			t.Errorf("NewCookie(%q) = nil error", bad)
		}
	}
}

func TestCookieValue(t *testing.T) {
	t.Parallel()
	ck, err := NewCookie(CookieOptions{Secure: true})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		headers []string
		want    string
		wantOK  bool
	}{
		{"one", []string{"__Host-edgeauth_session=abc; other=1"}, "abc", true},
		{"absent", []string{"other=1"}, "", false},
		{"empty value", []string{"__Host-edgeauth_session="}, "", false},
		// Attack: cookie tossing. A sibling subdomain or a plain-HTTP
		// response plants a second cookie of the same name; we cannot tell
		// which is ours, so neither counts.
		{"duplicate in one header", []string{"__Host-edgeauth_session=abc; __Host-edgeauth_session=evil"}, "", false},
		{"duplicate across headers", []string{"__Host-edgeauth_session=abc", "__Host-edgeauth_session=evil"}, "", false},
		// Names match exactly: no prefix-less or case-folded variant.
		{"unprefixed name", []string{"edgeauth_session=abc"}, "", false},
		{"case-folded prefix", []string{"__HOST-edgeauth_session=abc"}, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var ctx fasthttp.RequestCtx
			raw := "GET / HTTP/1.1\r\nHost: x\r\n"
			for _, h := range tc.headers {
				raw += "Cookie: " + h + "\r\n"
			}
			if err := ctx.Request.Read(bufioReader(raw + "\r\n")); err != nil {
				t.Fatal(err)
			}
			got, ok := ck.Value(&ctx)
			if ok != tc.wantOK || string(got) != tc.want {
				t.Errorf("Value = (%q, %v), want (%q, %v)", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func FuzzDecodeCookie(f *testing.F) {
	c := mustCodec(f, testKey(1), testKey(2))
	k1, k2 := mustCodec(f, testKey(1)), mustCodec(f, testKey(2))
	f.Add([]byte(c.Encode(NewID())))
	f.Add([]byte(k2.Encode(NewID())))
	f.Add([]byte(""))
	f.Add([]byte(strings.Repeat("A", CookieValueLen)))
	f.Add([]byte(strings.Repeat("=", CookieValueLen)))
	f.Fuzz(func(t *testing.T, v []byte) {
		id, ok := c.Decode(v)
		if !ok {
			if id != "" {
				t.Fatalf("rejected value returned id %q", id)
			}
			return
		}
		// Anything accepted is the canonical encoding of a valid id under
		// one of the keys.
		if len(id) != IDLen || (k1.Encode(id) != string(v) && k2.Encode(id) != string(v)) {
			t.Fatalf("accepted %q as %q, which does not re-encode to it", v, id)
		}
	})
}
