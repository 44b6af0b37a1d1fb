package redisstore

import (
	"testing"
	"time"

	"github.com/edgeauth/edgeauth/middleware/session/redisstore/redistest"
)

// TestGetL1HitDoesNotAllocate guards the hot path: a request with a valid
// session cookie must not allocate in the store.
func TestGetL1HitDoesNotAllocate(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	now := time.Now()
	st := newTestStore(t, srv, func() time.Time { return now })
	s := testSession(now, "alice")
	if err := st.Put(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	st.l1.Wait()
	ctx := t.Context()
	before := st.Stats().RedisRoundTrips
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := st.Get(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Get (L1 hit) allocates %.1f times per call, want 0", allocs)
	}
	if rt := st.Stats().RedisRoundTrips - before; rt != 0 {
		t.Errorf("L1 hits made %d Redis round trips", rt)
	}
}

func BenchmarkGetL1Hit(b *testing.B) {
	srv := redistest.Start(b, redistest.Options{})
	now := time.Now()
	st := newTestStore(b, srv, func() time.Time { return now })
	s := testSession(now, "alice")
	if err := st.Put(b.Context(), s); err != nil {
		b.Fatal(err)
	}
	st.l1.Wait()
	ctx := b.Context()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := st.Get(ctx, s.ID); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkGetL1Miss measures a Get that has to ask Redis: with a 1ns L1TTL
// every call reads the record and the subject's revocation time.
func BenchmarkGetL1Miss(b *testing.B) {
	srv := redistest.Start(b, redistest.Options{})
	st := newTestStore(b, srv, time.Now, func(o *Options) { o.L1TTL = time.Nanosecond })
	s := testSession(time.Now(), "alice")
	if err := st.Put(b.Context(), s); err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	before := st.Stats().RedisRoundTrips
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := st.Get(ctx, s.ID); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(st.Stats().RedisRoundTrips-before)/float64(b.N), "roundtrips/op")
}
