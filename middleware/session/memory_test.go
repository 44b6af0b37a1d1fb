package session_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/edgeauth/edgeauth/middleware/session"
	"github.com/edgeauth/edgeauth/middleware/session/storetest"
)

func newMemoryStore(t testing.TB, o session.MemoryOptions) *session.MemoryStore {
	t.Helper()
	s, err := session.NewMemoryStore(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestMemoryStoreConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, now func() time.Time) session.Store {
		return newMemoryStore(t, session.MemoryOptions{
			Budget:      64 << 20,
			IdleTimeout: storetest.IdleTimeout,
			Lifetime:    storetest.Lifetime,
			Now:         now,
		})
	})
}

func TestNewMemoryStoreRejectsBadOptions(t *testing.T) {
	t.Parallel()
	for _, o := range []session.MemoryOptions{{Budget: -1}, {IdleTimeout: -time.Second}, {Lifetime: -time.Second}} {
		if _, err := session.NewMemoryStore(o); err == nil {
			t.Errorf("NewMemoryStore(%+v) = nil error", o)
		}
	}
}

// TestMemoryStoreBudget fills a small budget many times over: the store must
// stay within it, evict, and keep its indexes in step with what it holds.
func TestMemoryStoreBudget(t *testing.T) {
	t.Parallel()
	clock := storetest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	const budget = 256 << 10
	m := newMemoryStore(t, session.MemoryOptions{Budget: budget, Now: clock.Now})
	ctx := context.Background()
	const n = 2000 // ~1.4 KiB each: ~11x the budget
	var full int
	ids := make([]string, 0, n)
	for i := range n {
		s := &session.Session{
			ID: session.NewID(), Issuer: "https://idp", Subject: fmt.Sprintf("u%d", i%50), SID: fmt.Sprintf("sid%d", i),
			IDToken: string(make([]byte, 1000)), CreatedAt: clock.Now(), ExpiresAt: clock.Now().Add(time.Hour),
		}
		err := m.Put(ctx, s)
		switch {
		case errors.Is(err, session.ErrUnavailable):
			full++
		case err != nil:
			t.Fatal(err)
		}
		ids = append(ids, s.ID)
	}
	live := 0
	for _, id := range ids {
		if _, err := m.Get(ctx, id); err == nil {
			live++
		}
	}
	listed := 0
	for u := range 50 {
		l, err := m.List(ctx, "https://idp", fmt.Sprintf("u%d", u))
		if err != nil {
			t.Fatal(err)
		}
		listed += len(l)
	}
	t.Logf("budget %d B: %d of %d sessions live, %d listed, %d refused", budget, live, n, listed, full)
	if maxLive := budget / 1000; live == 0 || live > maxLive {
		t.Errorf("%d sessions live, want between 1 and %d for a %d byte budget", live, maxLive, budget)
	}
	if listed != live {
		t.Errorf("indexes list %d sessions, cache holds %d: indexes not cleaned on eviction", listed, live)
	}
}

// A refresh replaces a live session under the same id while the browser's
// other requests keep reading it. Readers must never see the id as unknown
// in between: that sent one request of a 30-request burst to the login page.
func TestMemoryStoreReplaceHasNoGap(t *testing.T) {
	t.Parallel()
	s := newMemoryStore(t, session.MemoryOptions{Budget: 64 << 20})
	ctx := context.Background()
	now := time.Now()
	base := &session.Session{ID: session.NewID(), Issuer: "https://idp", Subject: "sarah", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := s.Put(ctx, base); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	misses := make(chan int, 4)
	for range 4 {
		go func() {
			n := 0
			for {
				select {
				case <-stop:
					misses <- n
					return
				default:
				}
				if _, err := s.Get(ctx, base.ID); errors.Is(err, session.ErrNotFound) {
					n++
				}
			}
		}()
	}
	for i := range 300 {
		next := base.Clone()
		next.RefreshToken = fmt.Sprintf("rt-%d", i)
		if err := s.Put(ctx, next); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	total := 0
	for range 4 {
		total += <-misses
	}
	if total != 0 {
		t.Fatalf("readers saw the session as unknown %d times during replaces", total)
	}
	got, err := s.Get(ctx, base.ID)
	if err != nil || got.RefreshToken != "rt-299" {
		t.Fatalf("after replaces: %v %+v", err, got)
	}
	if list, _ := s.List(ctx, "https://idp", "sarah"); len(list) != 1 {
		t.Fatalf("index holds %d sessions, want 1", len(list))
	}
}
