package redisstore

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/edgeauth/edgeauth/middleware/session"
	"github.com/edgeauth/edgeauth/middleware/session/redisstore/redistest"
	"github.com/edgeauth/edgeauth/middleware/session/storetest"
)

// quietLogger drops log output; tests assert on Stats instead.
func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newTestStore connects a Store to srv with the conformance timeouts.
func newTestStore(t testing.TB, srv *redistest.Server, now func() time.Time, mod ...func(*Options)) *Store {
	t.Helper()
	o := Options{
		Addrs:       []string{srv.Addr},
		Lifetime:    storetest.Lifetime,
		IdleTimeout: storetest.IdleTimeout,
		Now:         now,
		Logger:      quietLogger(),
	}
	for _, m := range mod {
		m(&o)
	}
	s, err := New(context.Background(), o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Options{})
	storetest.Run(t, func(t *testing.T, now func() time.Time) session.Store {
		return newTestStore(t, srv, now)
	})
}
