package session

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// typicalSession is what a workforce login produces: a few groups, one extra
// claim, an RS256 ID token of ~900 bytes and a refresh token.
func typicalSession() *Session {
	t0 := time.Date(2026, 3, 1, 9, 30, 0, 123456789, time.UTC)
	return &Session{
		ID:                strings.Repeat("A", 43),
		Issuer:            "https://login.example.com/realms/corp",
		Subject:           "248289761001",
		SID:               "08a5019c-17e1-4977-8f42-65a12843ea02",
		Email:             "jane.doe@example.com",
		EmailVerified:     true,
		PreferredUsername: "jane",
		Name:              "Jane Doe",
		Groups:            []string{"staff", "engineering", "oncall", "vpn-users"},
		Claims:            map[string][]string{"department": {"R&D"}, "locale": {"de-CH"}},
		ACR:               "mfa",
		AMR:               []string{"pwd", "otp"},
		AuthTime:          t0,
		IDToken:           strings.Repeat("e", 900),
		RefreshToken:      strings.Repeat("r", 120),
		TokenExpiry:       t0.Add(5 * time.Minute),
		CreatedAt:         t0,
		LastSeen:          t0.Add(time.Minute),
		ExpiresAt:         t0.Add(12 * time.Hour),
		IP:                "203.0.113.7",
		Country:           "CH",
		DeviceID:          "dev-3f9a",
		Fingerprint:       0xdeadbeefcafef00d,
		StepUpFailures:    2,
		Version:           7,
	}
}

func TestRecordRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   *Session
	}{
		{name: "zero", in: &Session{}},
		{name: "typical", in: typicalSession()},
		{name: "pre-1970 and far-future times", in: &Session{
			ID:        "x",
			AuthTime:  time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC),
			ExpiresAt: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		}},
		{name: "empty claim values and empty strings in lists", in: &Session{
			Groups: []string{"", "a"},
			Claims: map[string][]string{"": nil, "k": {""}},
		}},
		{name: "max uint64 fingerprint", in: &Session{Fingerprint: ^uint64(0), Version: ^uint64(0)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, err := tc.in.MarshalBinary()
			if err != nil {
				t.Fatalf("MarshalBinary: %v", err)
			}
			if b[0] != RecordVersion {
				t.Fatalf("first byte = %d, want %d", b[0], RecordVersion)
			}
			var got Session
			if err := got.UnmarshalBinary(b); err != nil {
				t.Fatalf("UnmarshalBinary: %v", err)
			}
			// nil claim values decode as nil, like empty lists.
			if diff := cmp.Diff(tc.in, &got); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
			again, err := got.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, again) {
				t.Errorf("encoding not deterministic")
			}
		})
	}
}

// TestRecordDecodedIsIndependent checks that decoded strings do not alias
// the input buffer, which a caller (a Redis client) may reuse.
func TestRecordDecodedIsIndependent(t *testing.T) {
	t.Parallel()
	b, err := typicalSession().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var s Session
	if err := s.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 'z'
	}
	if diff := cmp.Diff(typicalSession(), &s); diff != "" {
		t.Errorf("decoded session changed with its input (-want +got):\n%s", diff)
	}
}

func TestRecordTypicalSize(t *testing.T) {
	t.Parallel()
	b, err := typicalSession().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// 900-byte ID token + 120-byte refresh token + ~300 bytes of identity.
	// The bound guards against an accidental switch to a verbose format.
	if len(b) > 1400 {
		t.Errorf("typical record is %d bytes, want <= 1400", len(b))
	}
	t.Logf("typical session record: %d bytes (of which tokens 1020)", len(b))
}

func TestRecordMarshalRejectsWhatItCannotRead(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   *Session
	}{
		{name: "oversized field", in: &Session{IDToken: strings.Repeat("x", MaxFieldSize+1)}},
		{name: "too many groups", in: &Session{Groups: make([]string, MaxListLen+1)}},
		{name: "invalid UTF-8", in: &Session{Name: "\xff"}},
		{name: "negative step-up failures", in: &Session{StepUpFailures: -1}},
		{name: "time after year 9999", in: &Session{ExpiresAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if b, err := tc.in.MarshalBinary(); err == nil {
				t.Errorf("MarshalBinary = %d bytes, nil error; want error", len(b))
			}
		})
	}
}

func TestRecordRejectsMalformed(t *testing.T) {
	t.Parallel()
	valid, err := typicalSession().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// zeroRecord is the encoding of Session{}: version, 4 empty strings,
	// bool, 2 empty strings, empty Groups, empty Claims, ...
	zeroRecord, err := (&Session{}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	with := func(prefix []byte, rest ...byte) []byte {
		return append(append([]byte(nil), prefix...), rest...)
	}
	hugeLen := binary.AppendUvarint([]byte{RecordVersion}, 1<<40)
	tests := []struct {
		name string
		in   []byte
	}{
		{name: "empty", in: nil},
		{name: "unknown version 0", in: with([]byte{0}, zeroRecord[1:]...)},
		{name: "unknown version 2", in: with([]byte{2}, zeroRecord[1:]...)},
		{name: "trailing byte", in: with(valid, 0)},
		{name: "truncated by one", in: valid[:len(valid)-1]},
		{name: "version only", in: []byte{RecordVersion}},
		{name: "length beyond input", in: with([]byte{RecordVersion}, 10, 'a')},
		{name: "length beyond field limit", in: hugeLen},
		{name: "varint overflow", in: with([]byte{RecordVersion}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f)},
		{name: "non-minimal varint", in: with([]byte{RecordVersion, 0x80, 0x00}, zeroRecord[2:]...)},
		{name: "bool byte 2", in: with(zeroRecord[:6], append([]byte{2}, zeroRecord[7:]...)...)},
		{name: "invalid UTF-8", in: with([]byte{RecordVersion, 1, 0xff}, zeroRecord[2:]...)},
		{name: "oversized record", in: with([]byte{RecordVersion}, make([]byte, MaxRecordSize)...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := Session{ID: "kept"}
			err := s.UnmarshalBinary(tc.in)
			if !errors.Is(err, ErrRecord) {
				t.Fatalf("UnmarshalBinary err = %v, want ErrRecord", err)
			}
			if s.ID != "kept" {
				t.Errorf("session modified on error: %+v", s)
			}
		})
	}
}

func TestRecordRejectsEveryTruncation(t *testing.T) {
	t.Parallel()
	valid, err := typicalSession().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	for n := range len(valid) {
		var s Session
		if err := s.UnmarshalBinary(valid[:n]); err == nil {
			t.Fatalf("prefix of %d/%d bytes decoded without error", n, len(valid))
		}
	}
}

func TestRecordRejectsUnsortedClaims(t *testing.T) {
	t.Parallel()
	b, err := (&Session{Claims: map[string][]string{"a": nil, "b": nil}}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// Swap the two keys in place: both are one byte long.
	i := bytes.IndexByte(b, 'a')
	j := bytes.IndexByte(b, 'b')
	b[i], b[j] = 'b', 'a'
	var s Session
	if err := s.UnmarshalBinary(b); !errors.Is(err, ErrRecord) {
		t.Errorf("unsorted claims: err = %v, want ErrRecord", err)
	}
	b[i], b[j] = 'a', 'a'
	if err := s.UnmarshalBinary(b); !errors.Is(err, ErrRecord) {
		t.Errorf("duplicate claims: err = %v, want ErrRecord", err)
	}
}

func BenchmarkRecordMarshal(b *testing.B) {
	s := typicalSession()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.MarshalBinary(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRecordUnmarshal(b *testing.B) {
	data, err := typicalSession().MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		var s Session
		if err := s.UnmarshalBinary(data); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzUnmarshalBinary checks that hostile records never panic and that
// whatever decodes re-encodes to the same bytes (the format is canonical).
func FuzzUnmarshalBinary(f *testing.F) {
	for _, s := range []*Session{{}, typicalSession(), {Claims: map[string][]string{"a": {"1"}, "b": nil}}} {
		b, err := s.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{RecordVersion, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		var s Session
		if err := s.UnmarshalBinary(data); err != nil {
			return
		}
		again, err := s.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded record does not re-encode: %v", err)
		}
		if !bytes.Equal(data, again) {
			t.Fatalf("re-encoding differs:\n in  %x\n out %x", data, again)
		}
	})
}
