package session

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

type snapFixture struct {
	now   time.Time
	store *MemoryStore
	live  []*Session
}

func newSnapStore(t testing.TB, now *time.Time) *MemoryStore {
	t.Helper()
	m, err := NewMemoryStore(MemoryOptions{Budget: 8 << 20, IdleTimeout: time.Hour, Lifetime: 12 * time.Hour,
		Now: func() time.Time { return *now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// writeSnapshot fills a store with live, expired and revoked sessions and
// snapshots it under key; it returns the path and the sessions that must
// come back.
func writeSnapshot(t testing.TB, now *time.Time, key []byte) (string, []*Session) {
	t.Helper()
	m := newSnapStore(t, now)
	ctx := context.Background()
	var live []*Session
	for i, sub := range []string{"alice", "bob", "carol", "dave"} {
		s := typicalSession()
		s.ID, s.Subject = NewID(), sub
		s.CreatedAt, s.LastSeen, s.ExpiresAt = *now, *now, now.Add(time.Duration(i+1)*time.Hour)
		if err := m.Put(ctx, s); err != nil {
			t.Fatal(err)
		}
		if sub != "dave" {
			live = append(live, s)
		}
	}
	if _, err := m.DeleteSubject(ctx, typicalSession().Issuer, "dave"); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "sessions.snap")
	if err := m.Snapshot(path, key); err != nil {
		t.Fatal(err)
	}
	return path, live
}

func TestSnapshotRoundTrip(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	path, live := writeSnapshot(t, &now, testKey(1))
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("snapshot file: %v, mode %v; want 0600", err, fi.Mode())
	}
	if tmp, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*tmp*")); len(tmp) != 0 {
		t.Errorf("temporary files left behind: %v", tmp)
	}

	// A graceful restart 90 minutes later, after a key rotation: the old
	// key is second in the list. alice's session (1 h) has expired since.
	now = now.Add(90 * time.Minute)
	m := newSnapStore(t, &now)
	n, err := m.Restore(path, [][]byte{testKey(2), testKey(1)})
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	// The idle timeout is an hour and nobody was seen for 90 minutes: the
	// idle rule holds across restarts too, so nobody is live...
	if n != 0 {
		t.Errorf("restored %d idle sessions, want 0", n)
	}

	// ...while a restart within the idle timeout keeps everyone.
	now = now.Add(-60 * time.Minute)
	m = newSnapStore(t, &now)
	n, err = m.Restore(path, [][]byte{testKey(1)})
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if n != len(live) {
		t.Errorf("restored %d sessions, want %d", n, len(live))
	}
	ctx := context.Background()
	for _, s := range live {
		got, err := m.Get(ctx, s.ID)
		if err != nil {
			t.Fatalf("Get(%s) after restore: %v", s.Subject, err)
		}
		// Get touched LastSeen (activity); everything else is as written.
		if diff := cmp.Diff(s, got, cmpopts.EquateEmpty(), cmpopts.IgnoreFields(Session{}, "LastSeen")); diff != "" {
			t.Errorf("restored session (-want +got):\n%s", diff)
		}
	}
	// The revocation of dave survives the restart.
	if _, ok := m.SubjectRevokedAt(ctx, typicalSession().Issuer, "dave"); !ok {
		t.Error("subject revocation lost across restart")
	}
	// Expiry rules still apply to restored sessions: alice ends at +1h.
	now = now.Add(31 * time.Minute)
	if _, err := m.Get(ctx, live[0].ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("alice after her ExpiresAt: %v, want ErrNotFound", err)
	}
}

func TestRestoreRejects(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	now := base
	path, _ := writeSnapshot(t, &now, testKey(1))
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	variant := func(name string, b []byte) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flip := func(i int) []byte {
		b := append([]byte(nil), good...)
		b[i] ^= 0x40
		return b
	}
	tests := []struct {
		name  string
		path  string
		keys  [][]byte
		after time.Duration
		want  error
	}{
		{"missing", filepath.Join(t.TempDir(), "nope.snap"), [][]byte{testKey(1)}, 0, ErrSnapshotMissing},
		{"empty file", variant("empty", nil), [][]byte{testKey(1)}, 0, ErrSnapshotCorrupt},
		{"truncated", variant("trunc", good[:len(good)-1]), [][]byte{testKey(1)}, 0, ErrSnapshotCorrupt},
		{"truncated header", variant("hdr", good[:20]), [][]byte{testKey(1)}, 0, ErrSnapshotCorrupt},
		{"tampered ciphertext", variant("ct", flip(len(good)-40)), [][]byte{testKey(1)}, 0, ErrSnapshotCorrupt},
		{"tampered salt", variant("salt", flip(10)), [][]byte{testKey(1)}, 0, ErrSnapshotCorrupt},
		{"tampered version", variant("ver", flip(6)), [][]byte{testKey(1)}, 0, ErrSnapshotCorrupt},
		{"appended bytes", variant("app", append(append([]byte(nil), good...), 0)), [][]byte{testKey(1)}, 0, ErrSnapshotCorrupt},
		{"wrong key", path, [][]byte{testKey(2)}, 0, ErrSnapshotCorrupt},
		{"stale", path, [][]byte{testKey(1)}, 12*time.Hour + time.Minute, ErrSnapshotStale},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			now := base.Add(tc.after)
			m := newSnapStore(t, &now)
			n, err := m.Restore(tc.path, tc.keys)
			if !errors.Is(err, tc.want) || n != 0 {
				t.Errorf("Restore = (%d, %v), want (0, %v)", n, err, tc.want)
			}
			if l, _ := m.List(context.Background(), typicalSession().Issuer, "bob"); len(l) != 0 {
				t.Errorf("a rejected snapshot loaded %d sessions", len(l))
			}
		})
	}
}

func TestSnapshotRejectsShortKey(t *testing.T) {
	t.Parallel()
	now := time.Now()
	m := newSnapStore(t, &now)
	if err := m.Snapshot(filepath.Join(t.TempDir(), "s"), make([]byte, 8)); err == nil {
		t.Error("Snapshot with an 8-byte key = nil error")
	}
}

// FuzzRestore feeds hostile files to the snapshot reader and hostile
// plaintexts to the payload parser (which only ever sees authenticated
// data, but must not crash start-up even so).
func FuzzRestore(f *testing.F) {
	now := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	path, _ := writeSnapshot(f, &now, testKey(1))
	good, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:snapshotHdrLen+16])
	f.Add([]byte(snapshotMagic))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 2, 1, 0})
	keys := [][]byte{testKey(1)}
	f.Fuzz(func(t *testing.T, data []byte) {
		if s, err := decodeSnapshot(data, keys); err == nil && s == nil {
			t.Fatal("nil snapshot without error")
		}
		if _, err := parseSnapshotPayload(data); err != nil && !errors.Is(err, ErrSnapshotCorrupt) {
			t.Fatalf("payload error %v does not wrap ErrSnapshotCorrupt", err)
		}
	})
}
