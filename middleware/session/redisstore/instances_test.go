package redisstore

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/edgeauth/edgeauth/middleware/session"
	"github.com/edgeauth/edgeauth/middleware/session/redisstore/redistest"
	"github.com/edgeauth/edgeauth/middleware/session/storetest"
)

func testSession(now time.Time, sub string) *session.Session {
	return &session.Session{
		ID:        session.NewID(),
		Issuer:    "https://idp.test",
		Subject:   sub,
		SID:       "sid-" + sub,
		Email:     sub + "@example.com",
		Groups:    []string{"staff"},
		CreatedAt: now,
		LastSeen:  now,
		ExpiresAt: now.Add(storetest.Lifetime),
		IP:        "203.0.113.7",
		Country:   "CH",
		DeviceID:  "dev-1",
		Version:   1,
	}
}

// pollUntil calls f until it returns true or the deadline passes.
func pollUntil(t *testing.T, d time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(time.Millisecond) // poll interval
	}
}

func TestTwoInstancesShareSessions(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Options{})
	clock := storetest.NewClock(time.Now())
	a := newTestStore(t, srv, clock.Now)
	b := newTestStore(t, srv, clock.Now)
	ctx := t.Context()

	s := testSession(clock.Now(), "alice")
	if err := a.Put(ctx, s); err != nil {
		t.Fatal(err)
	}
	got, err := b.Get(ctx, s.ID)
	if err != nil {
		t.Fatalf("Get on B of a session put on A: %v", err)
	}
	if diff := cmp.Diff(s, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("B sees (-want +got):\n%s", diff)
	}

	// Instance restart: a new Store object (empty L1) still finds it.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	c := newTestStore(t, srv, clock.Now)
	if _, err := c.Get(ctx, s.ID); err != nil {
		t.Fatalf("Get after instance restart: %v", err)
	}
}

// TestRevocationBroadcast revokes on B sessions that A holds in its L1 and
// measures how long A keeps accepting them. The bound asserted is the
// issue's 1 s; the figures are logged for bench/RESULTS.md.
func TestRevocationBroadcast(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Options{})
	clock := storetest.NewClock(time.Now())
	a := newTestStore(t, srv, clock.Now)
	b := newTestStore(t, srv, clock.Now)
	ctx := t.Context()

	var mu sync.Mutex
	var heard []string
	a.OnRevoke(func(iss, sub, id string) {
		mu.Lock()
		heard = append(heard, sub+"/"+id)
		mu.Unlock()
	})

	const n = 200
	lat := make([]time.Duration, 0, n)
	for i := range n {
		s := testSession(clock.Now(), fmt.Sprintf("u%d", i))
		if err := b.Put(ctx, s); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Get(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
		a.l1.Wait() // now in A's L1: only the broadcast can make A refuse it
		if e, ok := a.l1.Get(s.ID); !ok || e.sess == nil {
			t.Fatal("session not in A's L1")
		}
		start := time.Now()
		if i%2 == 0 {
			err := b.Delete(ctx, s.ID)
			if err != nil {
				t.Fatal(err)
			}
		} else if k, err := b.DeleteSubject(ctx, s.Issuer, s.Subject); err != nil || k != 1 {
			t.Fatalf("DeleteSubject = %d, %v", k, err)
		}
		pollUntil(t, time.Second, "A refuses a session revoked on B", func() bool {
			_, err := a.Get(ctx, s.ID)
			return errors.Is(err, session.ErrNotFound)
		})
		lat = append(lat, time.Since(start))
		// Subject revocations reach bearer checks on A as well, though A
		// asked Redis (and cached "not revoked") when it loaded the session.
		if i%2 == 1 {
			if at, ok := a.SubjectRevokedAt(ctx, s.Issuer, s.Subject); !ok || !at.Equal(clock.Now()) {
				t.Fatalf("SubjectRevokedAt on A = %v, %v; want %v", at, ok, clock.Now())
			}
		}
	}
	slices.Sort(lat)
	t.Logf("revocation B->A refused after: p50 %v, p99 %v, max %v (n=%d)", lat[n/2], lat[n*99/100], lat[n-1], n)
	pollUntil(t, time.Second, "OnRevoke on A for every revocation", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(heard) == n+n/2 // one per id, plus one per subject
	})
	if got := a.Stats().RevocationsReceived; got != n {
		t.Errorf("A received %d revocations, want %d", got, n)
	}
	if got := b.Stats().RevocationsReceived; got != 0 {
		t.Errorf("B applied %d echoes of its own revocations, want 0", got)
	}
}

// Attack: a request that read the session before an offboarding call
// writes it back afterwards (LastSeen update) on another instance. The
// tombstone makes the write fail instead of resurrecting the session.
func TestWriteBackAfterRevokeOnOtherInstance(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Options{})
	clock := storetest.NewClock(time.Now())
	a := newTestStore(t, srv, clock.Now)
	b := newTestStore(t, srv, clock.Now)
	ctx := t.Context()
	s := testSession(clock.Now(), "alice")
	if err := a.Put(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	late := s.Clone()
	late.LastSeen = clock.Now().Add(time.Second)
	if err := a.Put(ctx, late); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Put of a revoked session = %v, want ErrNotFound", err)
	}
	for _, st := range []*Store{a, b} {
		if _, err := st.Get(ctx, s.ID); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("Get after write-back = %v, want ErrNotFound", err)
		}
	}
}

func TestCorruptRecordIsSkipped(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Options{})
	clock := storetest.NewClock(time.Now())
	st := newTestStore(t, srv, clock.Now)
	ctx := t.Context()

	good := testSession(clock.Now(), "alice")
	if err := st.Put(ctx, good); err != nil {
		t.Fatal(err)
	}
	valid, _ := good.MarshalBinary()
	garbage := session.NewID()
	copied := session.NewID()
	truncated := session.NewID()
	for id, v := range map[string]string{
		garbage:   "\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\xffgarbage",
		copied:    string(valid), // a valid record planted under another id
		truncated: string(valid[:len(valid)/2]),
	} {
		if _, err := srv.Do(ctx, nil, "SET", st.sessKey(id), v); err != nil {
			t.Fatal(err)
		}
		if _, err := srv.Do(ctx, nil, "SADD", st.subjectKey(good.Issuer, good.Subject), id); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Get(ctx, id); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("Get of a corrupt record: %v, want ErrNotFound", err)
		}
	}
	if got := st.Stats().CorruptRecords; got != 3 {
		t.Errorf("CorruptRecords = %d, want 3", got)
	}
	l, err := st.List(ctx, good.Issuer, good.Subject)
	if err != nil || len(l) != 1 || l[0].ID != good.ID {
		t.Errorf("List with corrupt members = %v, %v; want only the good session", l, err)
	}
	if _, err := srv.Do(ctx, nil, "SET", st.blobKey("risk"), "\x07"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetBlob(ctx, "risk"); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("GetBlob of a corrupt blob: %v, want ErrNotFound", err)
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		srv          redistest.Options
		user, pass   string
		wantConnects bool
	}{
		{"password", redistest.Options{Password: "pw-1"}, "", "pw-1", true},
		{"password missing", redistest.Options{Password: "pw-1"}, "", "", false},
		{"password wrong", redistest.Options{Password: "pw-1"}, "", "nope", false},
		{"acl user", redistest.Options{ACLUsers: []string{"user default off", "user edgeauth on >pw-2 ~edgeauth:* &edgeauth:* +@all"}}, "edgeauth", "pw-2", true},
		{"acl user wrong password", redistest.Options{ACLUsers: []string{"user default off", "user edgeauth on >pw-2 ~edgeauth:* &edgeauth:* +@all"}}, "edgeauth", "pw-1", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := redistest.Start(t, tc.srv)
			st, err := New(t.Context(), Options{
				Addrs: []string{srv.Addr}, Username: tc.user, Password: tc.pass,
				Logger: quietLogger(), OpTimeout: 2 * time.Second,
			})
			if !tc.wantConnects {
				if err == nil {
					st.Close()
					t.Fatal("New succeeded with bad credentials")
				}
				if !errors.Is(err, session.ErrUnavailable) {
					t.Errorf("New error %v does not wrap ErrUnavailable", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer st.Close()
			s := testSession(time.Now(), "alice")
			if err := st.Put(t.Context(), s); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Get(t.Context(), s.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := st.DeleteSubject(t.Context(), s.Issuer, s.Subject); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	t.Parallel()
	for name, o := range map[string]Options{
		"no address":     {},
		"negative L1TTL": {Addrs: []string{"127.0.0.1:1"}, L1TTL: -time.Second},
		"negative idle":  {Addrs: []string{"127.0.0.1:1"}, IdleTimeout: -time.Second},
	} {
		if s, err := New(t.Context(), o); err == nil {
			s.Close()
			t.Errorf("%s: New succeeded", name)
		}
	}
}

// TestRedisOutage kills Redis while requests run, with an injected clock
// for the grace period, then restarts it and checks that the same Store
// recovers by itself.
func TestRedisOutage(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Options{})
	clock := storetest.NewClock(time.Now())
	var degraded sync.Map
	a := newTestStore(t, srv, clock.Now, func(o *Options) {
		o.OutageGrace = 5 * time.Minute
		o.OnDegraded = func(kind string) {
			v, _ := degraded.LoadOrStore(kind, new(atomic.Int64))
			v.(*atomic.Int64).Add(1)
		}
	})
	ctx := t.Context()
	held := testSession(clock.Now(), "alice")
	revoked := testSession(clock.Now(), "bob")
	for _, s := range []*session.Session{held, revoked} {
		if err := a.Put(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	a.l1.Wait()
	// bob is revoked by another instance while A holds him in L1.
	other := newTestStore(t, srv, clock.Now)
	if err := other.Delete(ctx, revoked.ID); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, time.Second, "broadcast reaches A", func() bool { return a.Stats().RevocationsReceived == 1 })

	// Background load across the kill and the restart: any answer but a
	// session, ErrNotFound or ErrUnavailable (or a panic) fails the test.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var loadErr atomic.Value
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := a.Get(ctx, held.ID)
				if err != nil && !errors.Is(err, session.ErrUnavailable) && !errors.Is(err, session.ErrNotFound) {
					loadErr.Store(err)
				}
				time.Sleep(time.Millisecond) // pace the load loop
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()

	srv.Kill()
	clock.Advance(time.Minute) // past L1TTL: Get must ask Redis, which is gone
	if _, err := a.Get(ctx, held.ID); err != nil {
		t.Fatalf("Get of an L1 session during the outage: %v, want served within grace", err)
	}
	// Without L1 entry A cannot tell revoked from unknown: either refusal
	// will do, serving it would not.
	if s, err := a.Get(ctx, revoked.ID); err == nil || s != nil {
		t.Errorf("Get of a session revoked before the outage: (%v, %v), want refused", s != nil, err)
	}
	if err := a.Put(ctx, testSession(clock.Now(), "carol")); !errors.Is(err, session.ErrUnavailable) {
		t.Errorf("Put during the outage: %v, want ErrUnavailable", err)
	}
	if _, err := a.Get(ctx, session.NewID()); !errors.Is(err, session.ErrUnavailable) {
		t.Errorf("Get of an unknown session during the outage: %v, want ErrUnavailable", err)
	}
	clock.Advance(4 * time.Minute)
	if _, err := a.Get(ctx, held.ID); err != nil {
		t.Fatalf("Get 5m into the outage (grace not over): %v", err)
	}
	clock.Advance(time.Minute + time.Second)
	if _, err := a.Get(ctx, held.ID); !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("Get after the grace period: %v, want ErrUnavailable", err)
	}
	st := a.Stats()
	if st.ServedFromL1 == 0 || st.FailedClosed == 0 {
		t.Errorf("Stats after outage = %+v, want served-from-L1 and failed-closed decisions counted", st)
	}
	for _, k := range []string{DecisionServedFromL1, DecisionFailedClosed} {
		if _, ok := degraded.Load(k); !ok {
			t.Errorf("OnDegraded never called with %q", k)
		}
	}

	// Redis returns (empty: persistence is off). The same Store recovers.
	srv.Restart()
	fresh := testSession(clock.Now(), "dave")
	pollUntil(t, 10*time.Second, "Put after Redis restart", func() bool {
		return a.Put(ctx, fresh) == nil
	})
	if _, err := a.Get(ctx, fresh.ID); err != nil {
		t.Fatalf("Get after recovery: %v", err)
	}
	pollUntil(t, 10*time.Second, "revocation channel resubscribed", func() bool {
		return a.Stats().Resubscribes > 0
	})
	// The broadcast works again: revoke on a new instance, A refuses.
	b := newTestStore(t, srv, clock.Now)
	if _, err := a.Get(ctx, fresh.ID); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, fresh.ID); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, time.Second, "A refuses a session revoked on B after recovery", func() bool {
		_, err := a.Get(ctx, fresh.ID)
		return errors.Is(err, session.ErrNotFound)
	})
	if v := loadErr.Load(); v != nil {
		t.Errorf("load loop saw %v", v)
	}
}

// TestSteadyStateRoundTrips runs a small load loop over many sessions with
// simulated time and reports Redis round trips per request.
func TestSteadyStateRoundTrips(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Options{})
	clock := storetest.NewClock(time.Now())
	st := newTestStore(t, srv, clock.Now)
	ctx := t.Context()
	const sessions, requests = 200, 40000
	ids := make([]string, sessions)
	for i := range ids {
		s := testSession(clock.Now(), fmt.Sprintf("u%d", i))
		if err := st.Put(ctx, s); err != nil {
			t.Fatal(err)
		}
		ids[i] = s.ID
	}
	st.l1.Wait()
	before := st.Stats().RedisRoundTrips
	// 40000 requests over 40 s of simulated time: 1000 requests/s, each
	// session seen every 200 ms.
	for i := range requests {
		clock.Advance(time.Millisecond)
		if _, err := st.Get(ctx, ids[i%sessions]); err != nil {
			t.Fatal(err)
		}
	}
	rt := float64(st.Stats().RedisRoundTrips-before) / requests
	t.Logf("Redis round trips per request at steady state: %.4f (%d sessions, %d requests, L1TTL 10s, touch 1/min)", rt, sessions, requests)
	if rt >= 0.05 {
		t.Errorf("round trips per request = %.4f, want < 0.05", rt)
	}
}

func TestKeysDoNotCollide(t *testing.T) {
	t.Parallel()
	s := &Store{prefix: "p:"}
	// Without the issuer length, ("a|b", "c") and ("a", "b|c") would share
	// a key and one user could revoke or list another's sessions.
	if s.subjectKey("a|b", "c") == s.subjectKey("a", "b|c") {
		t.Error("subject keys collide")
	}
	if !strings.HasPrefix(s.sidKey("i", "x"), "p:sid:") {
		t.Error("sid key without prefix")
	}
}

// When a busy session's L1 entry is missing or stale, the requests that
// arrive together must share one Redis read instead of each sending its
// own (a burst of reads and new pool connections at every L1 expiry).
func TestConcurrentMissesShareOneRead(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Options{})
	clock := storetest.NewClock(time.Now())
	a := newTestStore(t, srv, clock.Now)
	b := newTestStore(t, srv, clock.Now)
	ctx := t.Context()
	s := testSession(clock.Now(), "alice")
	if err := a.Put(ctx, s); err != nil {
		t.Fatal(err)
	}
	before := b.Stats().RedisRoundTrips
	const n = 64
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			<-start
			if _, err := b.Get(ctx, s.ID); err != nil {
				errs <- err
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Get: %v", err)
	}
	// Goroutines that start after the shared read finished hit L1; a few
	// stragglers may start a second read. One read per request (64) is
	// what this guards against.
	if rt := b.Stats().RedisRoundTrips - before; rt > n/4 {
		t.Fatalf("%d concurrent misses sent %d Redis round trips", n, rt)
	}
}
