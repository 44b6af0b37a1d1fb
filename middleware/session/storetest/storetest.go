// Package storetest is the conformance suite every session.Store runs, so
// that the memory store and the Redis store cannot drift apart in what
// "expired", "revoked" or "read your writes" mean.
//
// Usage, in the store's package tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T, now func() time.Time) session.Store {
//			s, err := NewMemoryStore(MemoryOptions{
//				Budget: 64 << 20, IdleTimeout: storetest.IdleTimeout,
//				Lifetime: storetest.Lifetime, Now: now,
//			})
//			if err != nil { t.Fatal(err) }
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// newStore is called once per subtest with the subtest's fake clock; the
// store must take every expiry decision from that clock (not from wall time
// or Redis TTLs alone) and must be configured with IdleTimeout and Lifetime.
// newStore owns cleanup (t.Cleanup). Subtests run sequentially (a shared
// Redis may be flushed by newStore), but every subtest uses fresh random ids
// and subjects, so stores that share a backend do not see each other's data.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/edgeauth/edgeauth/middleware/session"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// The timeouts a store under test must be configured with.
const (
	IdleTimeout = 30 * time.Minute
	Lifetime    = 12 * time.Hour
)

// Clock is a fake clock safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock that stands at t until advanced.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Run runs the conformance suite against the stores newStore returns.
func Run(t *testing.T, newStore func(t *testing.T, now func() time.Time) session.Store) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Start near wall time so that stores which also set backend
			// TTLs (Redis) compute positive ones.
			clock := NewClock(time.Now().UTC().Truncate(time.Second))
			e := &env{t: t, clock: clock, store: newStore(t, clock.Now), ctx: t.Context(), tag: session.NewID()[:12]}
			tc.fn(e)
		})
	}
}

type env struct {
	t     *testing.T
	clock *Clock
	store session.Store
	ctx   context.Context
	tag   string // makes issuers and subjects unique per subtest
}

// issuer returns an issuer unique to this subtest.
func (e *env) issuer(n int) string { return fmt.Sprintf("https://idp%d.test/%s", n, e.tag) }

// newSession returns a fully populated session created now, alive for the
// store's lifetime.
func (e *env) newSession(iss, sub, sid string) *session.Session {
	now := e.clock.Now()
	return &session.Session{
		ID:                session.NewID(),
		Issuer:            iss,
		Subject:           sub,
		SID:               sid,
		Email:             sub + "@example.com",
		EmailVerified:     true,
		PreferredUsername: sub,
		Name:              "User " + sub,
		Groups:            []string{"staff", "eng"},
		Claims:            map[string][]string{"department": {"R&D"}},
		ACR:               "mfa",
		AMR:               []string{"pwd", "otp"},
		AuthTime:          now,
		IDToken:           "eyJhbGciOiJSUzI1NiJ9.e30.sig",
		RefreshToken:      "refresh-" + sub,
		TokenExpiry:       now.Add(5 * time.Minute),
		CreatedAt:         now,
		LastSeen:          now,
		ExpiresAt:         now.Add(Lifetime),
		IP:                "203.0.113.7",
		Country:           "CH",
		DeviceID:          "dev-1",
		Fingerprint:       42,
		Version:           1,
	}
}

func (e *env) put(s *session.Session) {
	e.t.Helper()
	if err := e.store.Put(e.ctx, s); err != nil {
		e.t.Fatalf("Put(%s): %v", s.Subject, err)
	}
}

// mustGet returns the stored session and fails unless it is live.
func (e *env) mustGet(id string) *session.Session {
	e.t.Helper()
	s, err := e.store.Get(e.ctx, id)
	if err != nil {
		e.t.Fatalf("Get at %v: %v, want the session", e.clock.Now(), err)
	}
	return s
}

// mustBeGone fails unless Get reports ErrNotFound.
func (e *env) mustBeGone(id, why string) {
	e.t.Helper()
	s, err := e.store.Get(e.ctx, id)
	if !errors.Is(err, session.ErrNotFound) {
		e.t.Fatalf("Get %s: (%v, %v), want ErrNotFound", why, s != nil, err)
	}
}

// sameSession compares sessions field by field; nil and empty lists are
// equal, times by instant (a store may hand back UTC).
func sameSession(t *testing.T, want, got *session.Session) {
	t.Helper()
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("session mismatch (-want +got):\n%s", diff)
	}
}

func ids(l []*session.Session) []string {
	out := make([]string, 0, len(l))
	for _, s := range l {
		out = append(out, s.ID)
	}
	slices.Sort(out)
	return out
}

func sortedIDs(in ...string) []string {
	out := slices.Clone(in)
	slices.Sort(out)
	return out
}

var cases = []struct {
	name string
	fn   func(e *env)
}{
	{"PutThenGet", func(e *env) {
		s := e.newSession(e.issuer(1), "alice", "sid-1")
		e.put(s)
		sameSession(e.t, s, e.mustGet(s.ID))
	}},
	{"GetUnknown", func(e *env) {
		e.mustBeGone(session.NewID(), "of an unknown id")
		e.mustBeGone("", "of the empty id")
	}},
	{"PutReplaces", func(e *env) {
		s := e.newSession(e.issuer(1), "alice", "sid-1")
		e.put(s)
		s2 := s.Clone()
		s2.Email = "alice@new.example.com"
		s2.Groups = []string{"admins"}
		s2.Version = 2
		e.put(s2)
		sameSession(e.t, s2, e.mustGet(s.ID))
	}},
	{"PutCopiesInput", func(e *env) {
		s := e.newSession(e.issuer(1), "alice", "sid-1")
		want := s.Clone()
		e.put(s)
		// A caller reusing its struct must not change what is stored.
		s.Email = "mallory@example.com"
		s.Groups[0] = "admins"
		s.Claims["department"][0] = "Finance"
		s.AMR[0] = "none"
		sameSession(e.t, want, e.mustGet(want.ID))
	}},
	{"GetReturnsIndependentValues", func(e *env) {
		s := e.newSession(e.issuer(1), "alice", "sid-1")
		e.put(s)
		// Returned values are read-only by contract; a caller that needs to
		// change one clones it. The clone must not reach back into the
		// store.
		c := e.mustGet(s.ID).Clone()
		c.Groups[0] = "admins"
		c.Claims["department"][0] = "Finance"
		sameSession(e.t, s, e.mustGet(s.ID))
	}},
	{"Delete", func(e *env) {
		s := e.newSession(e.issuer(1), "alice", "sid-1")
		other := e.newSession(e.issuer(1), "alice", "sid-2")
		e.put(s)
		e.put(other)
		if err := e.store.Delete(e.ctx, s.ID); err != nil {
			e.t.Fatalf("Delete: %v", err)
		}
		e.mustBeGone(s.ID, "after Delete")
		e.mustGet(other.ID)
		if err := e.store.Delete(e.ctx, s.ID); err != nil {
			e.t.Errorf("second Delete: %v, want nil", err)
		}
		if err := e.store.Delete(e.ctx, session.NewID()); err != nil {
			e.t.Errorf("Delete of unknown id: %v, want nil", err)
		}
		got, err := e.store.List(e.ctx, s.Issuer, "alice")
		if err != nil {
			e.t.Fatal(err)
		}
		if diff := cmp.Diff([]string{other.ID}, ids(got)); diff != "" {
			e.t.Errorf("List after Delete (-want +got):\n%s", diff)
		}
	}},
	{"AbsoluteLifetime", func(e *env) {
		s := e.newSession(e.issuer(1), "alice", "sid-1")
		s.ExpiresAt = e.clock.Now().Add(45 * time.Minute)
		e.put(s)
		// Keep it active so that only the absolute lifetime can end it.
		for _, step := range []time.Duration{20 * time.Minute, 20 * time.Minute, 4*time.Minute + 59*time.Second} {
			e.clock.Advance(step)
			e.mustGet(s.ID)
		}
		e.clock.Advance(2 * time.Second)
		e.mustBeGone(s.ID, "after ExpiresAt despite activity")
	}},
	{"IdleTimeout", func(e *env) {
		s := e.newSession(e.issuer(1), "alice", "sid-1")
		e.put(s)
		e.clock.Advance(IdleTimeout - time.Second)
		e.mustGet(s.ID)
		e.clock.Advance(IdleTimeout + time.Second)
		e.mustBeGone(s.ID, "after the idle timeout")
	}},
	{"GetExtendsIdleTimeout", func(e *env) {
		s := e.newSession(e.issuer(1), "alice", "sid-1")
		e.put(s)
		// Each Get is more than TouchInterval after the previous activity,
		// so each must count; together they span twice the idle timeout.
		for range 4 {
			e.clock.Advance(IdleTimeout/2 + session.TouchInterval)
			e.mustGet(s.ID)
		}
		e.clock.Advance(IdleTimeout + session.TouchInterval + time.Second)
		e.mustBeGone(s.ID, "after idling past the timeout")
	}},
	{"PutHonoursLastSeen", func(e *env) {
		s := e.newSession(e.issuer(1), "alice", "sid-1")
		s.LastSeen = e.clock.Now().Add(-IdleTimeout - time.Second)
		if err := e.store.Put(e.ctx, s); err != nil && !errors.Is(err, session.ErrNotFound) {
			e.t.Fatalf("Put of an idle session: %v", err)
		}
		e.mustBeGone(s.ID, "of a session written already idle")
	}},
	{"PutOfExpired", func(e *env) {
		s := e.newSession(e.issuer(1), "alice", "sid-1")
		s.ExpiresAt = e.clock.Now().Add(-time.Second)
		if err := e.store.Put(e.ctx, s); err != nil && !errors.Is(err, session.ErrNotFound) {
			e.t.Fatalf("Put of an expired session: %v", err)
		}
		e.mustBeGone(s.ID, "of a session written already expired")
	}},
	{"DeleteSubject", func(e *env) {
		iss, iss2 := e.issuer(1), e.issuer(2)
		a1 := e.newSession(iss, "alice", "sid-1")
		a2 := e.newSession(iss, "alice", "sid-2")
		b := e.newSession(iss, "bob", "sid-3")
		foreign := e.newSession(iss2, "alice", "sid-4") // same sub, other issuer: another user
		for _, s := range []*session.Session{a1, a2, b, foreign} {
			e.put(s)
		}
		if _, ok := e.store.SubjectRevokedAt(e.ctx, iss, "alice"); ok {
			e.t.Errorf("SubjectRevokedAt before any revocation: ok = true")
		}
		e.clock.Advance(time.Minute)
		at := e.clock.Now()
		n, err := e.store.DeleteSubject(e.ctx, iss, "alice")
		if err != nil || n != 2 {
			e.t.Fatalf("DeleteSubject = (%d, %v), want (2, nil)", n, err)
		}
		e.mustBeGone(a1.ID, "after DeleteSubject")
		e.mustBeGone(a2.ID, "after DeleteSubject")
		e.mustGet(b.ID)
		e.mustGet(foreign.ID)
		got, ok := e.store.SubjectRevokedAt(e.ctx, iss, "alice")
		if !ok || !got.Equal(at) {
			e.t.Errorf("SubjectRevokedAt = (%v, %v), want (%v, true)", got, ok, at)
		}
		if _, ok := e.store.SubjectRevokedAt(e.ctx, iss2, "alice"); ok {
			e.t.Errorf("SubjectRevokedAt of the other issuer's alice: ok = true")
		}
		if l, err := e.store.List(e.ctx, iss, "alice"); err != nil || len(l) != 0 {
			e.t.Errorf("List after DeleteSubject = (%v, %v), want none", ids(l), err)
		}
		// A subject without sessions can be revoked too (a bearer-only user).
		e.clock.Advance(time.Minute)
		if n, err := e.store.DeleteSubject(e.ctx, iss, "carol"); err != nil || n != 0 {
			e.t.Errorf("DeleteSubject(carol) = (%d, %v), want (0, nil)", n, err)
		}
		if got, ok := e.store.SubjectRevokedAt(e.ctx, iss, "carol"); !ok || !got.Equal(e.clock.Now()) {
			e.t.Errorf("SubjectRevokedAt(carol) = (%v, %v), want (%v, true)", got, ok, e.clock.Now())
		}
	}},
	// Attack: an in-flight token refresh (or a replica lagging behind)
	// writes back a session after an administrator revoked every session of
	// the user. The write must not resurrect it.
	{"RevokedSubjectIsNotResurrected", func(e *env) {
		iss := e.issuer(1)
		s := e.newSession(iss, "alice", "sid-1")
		e.put(s)
		e.clock.Advance(time.Minute)
		if _, err := e.store.DeleteSubject(e.ctx, iss, "alice"); err != nil {
			e.t.Fatal(err)
		}
		e.clock.Advance(time.Minute)
		late := s.Clone()
		late.Version++
		late.LastSeen = e.clock.Now()
		if err := e.store.Put(e.ctx, late); err != nil && !errors.Is(err, session.ErrNotFound) {
			e.t.Fatalf("Put after revocation: %v", err)
		}
		e.mustBeGone(s.ID, "of a session written back after its subject was revoked")
		// A login after the revocation is a new session and works.
		fresh := e.newSession(iss, "alice", "sid-2")
		e.put(fresh)
		e.mustGet(fresh.ID)
	}},
	{"DeleteSID", func(e *env) {
		iss := e.issuer(1)
		x1 := e.newSession(iss, "alice", "sid-x")
		x2 := e.newSession(iss, "alice", "sid-x") // two tabs, one provider session
		y := e.newSession(iss, "alice", "sid-y")
		other := e.newSession(e.issuer(2), "alice", "sid-x") // same sid at another issuer
		for _, s := range []*session.Session{x1, x2, y, other} {
			e.put(s)
		}
		n, err := e.store.DeleteSID(e.ctx, iss, "sid-x")
		if err != nil || n != 2 {
			e.t.Fatalf("DeleteSID = (%d, %v), want (2, nil)", n, err)
		}
		e.mustBeGone(x1.ID, "after DeleteSID")
		e.mustBeGone(x2.ID, "after DeleteSID")
		e.mustGet(y.ID)
		e.mustGet(other.ID)
		if n, err := e.store.DeleteSID(e.ctx, iss, "sid-unknown"); err != nil || n != 0 {
			e.t.Errorf("DeleteSID(unknown) = (%d, %v), want (0, nil)", n, err)
		}
		// DeleteSID ends sessions, it does not revoke the subject.
		if _, ok := e.store.SubjectRevokedAt(e.ctx, iss, "alice"); ok {
			e.t.Errorf("SubjectRevokedAt after DeleteSID: ok = true")
		}
	}},
	{"DeleteSIDFollowsReplace", func(e *env) {
		// A session re-written under another provider sid (re-login within
		// the session) is found by the new sid, not the old one.
		iss := e.issuer(1)
		s := e.newSession(iss, "alice", "sid-old")
		e.put(s)
		s2 := s.Clone()
		s2.SID = "sid-new"
		e.put(s2)
		if n, err := e.store.DeleteSID(e.ctx, iss, "sid-old"); err != nil || n != 0 {
			e.t.Errorf("DeleteSID(old) = (%d, %v), want (0, nil)", n, err)
		}
		e.mustGet(s.ID)
		if n, err := e.store.DeleteSID(e.ctx, iss, "sid-new"); err != nil || n != 1 {
			e.t.Errorf("DeleteSID(new) = (%d, %v), want (1, nil)", n, err)
		}
		e.mustBeGone(s.ID, "after DeleteSID(new)")
	}},
	{"List", func(e *env) {
		iss := e.issuer(1)
		a1 := e.newSession(iss, "alice", "sid-1")
		a2 := e.newSession(iss, "alice", "sid-2")
		short := e.newSession(iss, "alice", "sid-3")
		short.ExpiresAt = e.clock.Now().Add(10 * time.Minute)
		b := e.newSession(iss, "bob", "sid-4")
		for _, s := range []*session.Session{a1, a2, short, b} {
			e.put(s)
		}
		got, err := e.store.List(e.ctx, iss, "alice")
		if err != nil {
			e.t.Fatal(err)
		}
		if diff := cmp.Diff(sortedIDs(a1.ID, a2.ID, short.ID), ids(got)); diff != "" {
			e.t.Errorf("List (-want +got):\n%s", diff)
		}
		for _, s := range got {
			if s.ID == a1.ID {
				sameSession(e.t, a1, s)
			}
		}
		e.clock.Advance(11 * time.Minute)
		got, err = e.store.List(e.ctx, iss, "alice")
		if err != nil {
			e.t.Fatal(err)
		}
		if diff := cmp.Diff(sortedIDs(a1.ID, a2.ID), ids(got)); diff != "" {
			e.t.Errorf("List after one expired (-want +got):\n%s", diff)
		}
		got, err = e.store.List(e.ctx, iss, "nobody")
		if err != nil || len(got) != 0 {
			e.t.Errorf("List(nobody) = (%v, %v), want none", ids(got), err)
		}
	}},
	{"ListFollowsReplace", func(e *env) {
		// A record re-written for another subject leaves the old
		// subject's index.
		iss := e.issuer(1)
		s := e.newSession(iss, "alice", "sid-1")
		e.put(s)
		s2 := s.Clone()
		s2.Subject = "bob"
		e.put(s2)
		if l, err := e.store.List(e.ctx, iss, "alice"); err != nil || len(l) != 0 {
			e.t.Errorf("List(alice) = (%v, %v), want none", ids(l), err)
		}
		if l, err := e.store.List(e.ctx, iss, "bob"); err != nil || len(l) != 1 {
			e.t.Errorf("List(bob) = (%v, %v), want one", ids(l), err)
		}
	}},
	{"Blob", func(e *env) {
		key := "risk/history/" + e.tag
		want := []byte("known devices: dev-1")
		in := slices.Clone(want)
		if err := e.store.PutBlob(e.ctx, key, in, time.Hour); err != nil {
			e.t.Fatalf("PutBlob: %v", err)
		}
		in[0] = 'X' // the store keeps its own copy
		got, err := e.store.GetBlob(e.ctx, key)
		if err != nil {
			e.t.Fatalf("GetBlob: %v", err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			e.t.Errorf("GetBlob (-want +got):\n%s", diff)
		}
		got[0] = 'Y' // and hands out copies
		got, err = e.store.GetBlob(e.ctx, key)
		if err != nil || string(got) != string(want) {
			e.t.Errorf("GetBlob after modifying the returned slice = (%q, %v), want %q", got, err, want)
		}
		if err := e.store.PutBlob(e.ctx, key, []byte("v2"), time.Hour); err != nil {
			e.t.Fatal(err)
		}
		if got, err := e.store.GetBlob(e.ctx, key); err != nil || string(got) != "v2" {
			e.t.Errorf("GetBlob after overwrite = (%q, %v), want v2", got, err)
		}
		if _, err := e.store.GetBlob(e.ctx, key+"/unknown"); !errors.Is(err, session.ErrNotFound) {
			e.t.Errorf("GetBlob(unknown) err = %v, want ErrNotFound", err)
		}
	}},
	{"BlobTTL", func(e *env) {
		key := "risk/ttl/" + e.tag
		if err := e.store.PutBlob(e.ctx, key, []byte("x"), 10*time.Minute); err != nil {
			e.t.Fatal(err)
		}
		e.clock.Advance(10*time.Minute - time.Second)
		if _, err := e.store.GetBlob(e.ctx, key); err != nil {
			e.t.Errorf("GetBlob before TTL: %v", err)
		}
		e.clock.Advance(2 * time.Second)
		if _, err := e.store.GetBlob(e.ctx, key); !errors.Is(err, session.ErrNotFound) {
			e.t.Errorf("GetBlob after TTL err = %v, want ErrNotFound", err)
		}
	}},
	{"BlobsAndSessionsDoNotCollide", func(e *env) {
		// Blob keys come from other concerns; one equal to a session id
		// must not overwrite or reveal the session.
		s := e.newSession(e.issuer(1), "alice", "sid-1")
		e.put(s)
		if err := e.store.PutBlob(e.ctx, s.ID, []byte("blob"), time.Hour); err != nil {
			e.t.Fatal(err)
		}
		sameSession(e.t, s, e.mustGet(s.ID))
		if got, err := e.store.GetBlob(e.ctx, s.ID); err != nil || string(got) != "blob" {
			e.t.Errorf("GetBlob = (%q, %v), want blob", got, err)
		}
		if err := e.store.Delete(e.ctx, s.ID); err != nil {
			e.t.Fatal(err)
		}
		if got, err := e.store.GetBlob(e.ctx, s.ID); err != nil || string(got) != "blob" {
			e.t.Errorf("GetBlob after deleting the session = (%q, %v), want blob", got, err)
		}
	}},
	{"Concurrent", func(e *env) {
		// Run under -race: every goroutine reads its own writes while the
		// others write, revoke and list.
		const workers, rounds = 8, 25
		iss := e.issuer(1)
		errs := make(chan error, workers*rounds)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				sub := fmt.Sprintf("user%d", w)
				for r := range rounds {
					s := e.newSession(iss, sub, fmt.Sprintf("sid-%d-%d", w, r))
					if err := e.store.Put(e.ctx, s); err != nil {
						errs <- fmt.Errorf("Put: %w", err)
						return
					}
					got, err := e.store.Get(e.ctx, s.ID)
					if err != nil {
						errs <- fmt.Errorf("Get after Put: %w", err)
						return
					}
					if got.ID != s.ID || got.Subject != sub {
						errs <- fmt.Errorf("Get returned %s/%s, want %s/%s", got.ID, got.Subject, s.ID, sub)
						return
					}
					if _, err := e.store.List(e.ctx, iss, sub); err != nil {
						errs <- fmt.Errorf("List: %w", err)
					}
					if err := e.store.PutBlob(e.ctx, sub, []byte{byte(r)}, time.Hour); err != nil {
						errs <- fmt.Errorf("PutBlob: %w", err)
					}
					if _, err := e.store.GetBlob(e.ctx, sub); err != nil {
						errs <- fmt.Errorf("GetBlob: %w", err)
					}
					switch r % 3 {
					case 0:
						if err := e.store.Delete(e.ctx, s.ID); err != nil {
							errs <- fmt.Errorf("Delete: %w", err)
						}
						if _, err := e.store.Get(e.ctx, s.ID); !errors.Is(err, session.ErrNotFound) {
							errs <- fmt.Errorf("Get after Delete: %v, want ErrNotFound", err)
						}
					case 1:
						if _, err := e.store.DeleteSID(e.ctx, iss, s.SID); err != nil {
							errs <- fmt.Errorf("DeleteSID: %w", err)
						}
					}
				}
			})
		}
		// One more goroutine revokes a subject nobody else uses.
		wg.Go(func() {
			for range rounds {
				if _, err := e.store.DeleteSubject(e.ctx, iss, "revoked-user"); err != nil {
					errs <- fmt.Errorf("DeleteSubject: %w", err)
				}
			}
		})
		wg.Wait()
		close(errs)
		for err := range errs {
			e.t.Error(err)
		}
		// Each worker kept the rounds with r%3 == 2 (neither deleted nor
		// DeleteSID'd).
		for w := range workers {
			l, err := e.store.List(e.ctx, iss, fmt.Sprintf("user%d", w))
			if err != nil {
				e.t.Fatal(err)
			}
			if want := rounds / 3; len(l) != want {
				e.t.Errorf("user%d has %d live sessions, want %d", w, len(l), want)
			}
		}
	}},
}
