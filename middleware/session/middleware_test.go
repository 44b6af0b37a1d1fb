package session

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/edgeauth/edgeauth/middleware/reqstate"
	"github.com/google/go-cmp/cmp"
	"github.com/valyala/fasthttp"
)

// failingStore is a Store whose Get fails for a technical reason; every
// other method is the embedded real MemoryStore.
type failingStore struct {
	*MemoryStore
	err error
}

func (f failingStore) Get(context.Context, string) (*Session, error) { return nil, f.err }

type fixture struct {
	codec  *Codec
	cookie *Cookie
	store  *MemoryStore
	now    time.Time
	clock  func() time.Time
	live   *Session
	logs   *bytes.Buffer
	logger *slog.Logger
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{now: time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC), logs: new(bytes.Buffer)}
	f.clock = func() time.Time { return f.now }
	f.logger = slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.codec = mustCodec(t, testKey(1))
	var err error
	if f.cookie, err = NewCookie(CookieOptions{Secure: true}); err != nil {
		t.Fatal(err)
	}
	if f.store, err = NewMemoryStore(MemoryOptions{Budget: 8 << 20, IdleTimeout: time.Hour, Now: f.clock}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.store.Close() })
	f.live = typicalSession()
	f.live.ID = NewID()
	f.live.CreatedAt, f.live.LastSeen, f.live.ExpiresAt = f.now, f.now, f.now.Add(12*time.Hour)
	if err := f.store.Put(context.Background(), f.live); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) handler(t testing.TB, store Store, hook func(*fasthttp.RequestCtx, error) bool, called *bool) fasthttp.RequestHandler {
	t.Helper()
	mw, err := Middleware(MiddlewareOptions{Codec: f.codec, Cookie: f.cookie, Store: store, Logger: f.logger, OnStoreError: hook})
	if err != nil {
		t.Fatal(err)
	}
	return mw(func(ctx *fasthttp.RequestCtx) { *called = true })
}

func requestWithCookies(cookies ...string) *fasthttp.RequestCtx {
	ctx := new(fasthttp.RequestCtx)
	ctx.Request.SetRequestURI("/app")
	for _, c := range cookies {
		ctx.Request.Header.Add("Cookie", c)
	}
	return ctx
}

func TestMiddlewareRejectsBadOptions(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for name, o := range map[string]MiddlewareOptions{
		"no codec":  {Cookie: f.cookie, Store: f.store},
		"no cookie": {Codec: f.codec, Store: f.store},
		"no store":  {Codec: f.codec, Cookie: f.cookie},
	} {
		if _, err := Middleware(o); err == nil {
			t.Errorf("%s: Middleware = nil error", name)
		}
	}
}

func TestMiddleware(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	name := f.cookie.Name() + "="
	good := name + f.codec.Encode(f.live.ID)
	revoked := f.live.Clone()
	revoked.ID, revoked.Subject = NewID(), "revoked-user"
	expired := f.live.Clone()
	expired.ID, expired.ExpiresAt = NewID(), f.now.Add(time.Minute)
	for _, s := range []*Session{revoked, expired} {
		if err := f.store.Put(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.store.DeleteSubject(context.Background(), revoked.Issuer, revoked.Subject); err != nil {
		t.Fatal(err)
	}
	f.now = f.now.Add(2 * time.Minute) // expired is now past ExpiresAt
	tampered := []byte(f.codec.Encode(f.live.ID))
	tampered[10] ^= 'A' ^ 'B'

	tests := []struct {
		name    string
		cookies []string
		wantOK  bool
	}{
		{"valid", []string{good}, true},
		{"no cookie", nil, false},
		{"tampered", []string{name + string(tampered)}, false},
		{"unknown id", []string{name + f.codec.Encode(NewID())}, false},
		{"expired", []string{name + f.codec.Encode(expired.ID)}, false},
		{"revoked", []string{name + f.codec.Encode(revoked.ID)}, false},
		{"foreign key", []string{name + mustCodec(t, testKey(7)).Encode(f.live.ID)}, false},
		// Attack: cookie tossing, a second cookie of the same name.
		{"duplicate", []string{good, good}, false},
		{"unprefixed name", []string{"edgeauth_session=" + f.codec.Encode(f.live.ID)}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var called bool
			h := f.handler(t, f.store, nil, &called)
			ctx := requestWithCookies(tc.cookies...)
			h(ctx)
			if !called {
				t.Fatal("next was not called")
			}
			if got := ctx.Response.StatusCode(); got != fasthttp.StatusOK {
				t.Errorf("status = %d, want 200 (no error page for a bad cookie)", got)
			}
			st := reqstate.Get(ctx)
			if got := st.Method == reqstate.MethodSession; got != tc.wantOK {
				t.Fatalf("authenticated = %v, want %v", got, tc.wantOK)
			}
			if !tc.wantOK {
				if st.SessionID != "" || st.Principal.Subject != "" {
					t.Errorf("state filled for a rejected cookie: %+v", st)
				}
				return
			}
			want := reqstate.Principal{
				Issuer: f.live.Issuer, Subject: f.live.Subject, Email: f.live.Email, EmailVerified: true,
				PreferredUsername: f.live.PreferredUsername, Name: f.live.Name, Groups: f.live.Groups,
				ACR: f.live.ACR, AMR: f.live.AMR, AuthTime: f.live.AuthTime, Claims: f.live.Claims,
			}
			if diff := cmp.Diff(want, st.Principal); diff != "" {
				t.Errorf("principal (-want +got):\n%s", diff)
			}
			if st.SessionID != f.live.ID {
				t.Errorf("SessionID = %q, want %q", st.SessionID, f.live.ID)
			}
		})
	}
	// Rejections are logged at debug with a hashed id, never the cookie or
	// the id itself.
	logs := f.logs.String()
	if !strings.Contains(logs, HashID(revoked.ID)) {
		t.Errorf("no debug line with the hashed id of the revoked session:\n%s", logs)
	}
	for _, secret := range []string{revoked.ID, f.live.ID, f.codec.Encode(f.live.ID)} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain a session id or cookie value")
		}
	}
}

func TestMiddlewareStoreError(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cookie := f.cookie.Name() + "=" + f.codec.Encode(f.live.ID)
	down := failingStore{MemoryStore: f.store, err: ErrUnavailable}

	t.Run("no hook: anonymous", func(t *testing.T) {
		var called bool
		ctx := requestWithCookies(cookie)
		f.handler(t, down, nil, &called)(ctx)
		if !called || reqstate.Get(ctx).Authenticated() {
			t.Errorf("called = %v, authenticated = %v; want next called without a session", called, reqstate.Get(ctx).Authenticated())
		}
	})
	t.Run("hook writes 503", func(t *testing.T) {
		var called bool
		var gotErr error
		hook := func(ctx *fasthttp.RequestCtx, err error) bool {
			gotErr = err
			ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
			return true
		}
		ctx := requestWithCookies(cookie)
		f.handler(t, down, hook, &called)(ctx)
		if called {
			t.Error("next called after the hook handled the error")
		}
		if !errors.Is(gotErr, ErrUnavailable) || ctx.Response.StatusCode() != fasthttp.StatusServiceUnavailable {
			t.Errorf("hook err = %v, status = %d", gotErr, ctx.Response.StatusCode())
		}
	})
	if !strings.Contains(f.logs.String(), `"level":"WARN"`) {
		t.Errorf("store failure not logged at warn:\n%s", f.logs.String())
	}
}

// BenchmarkLookup is the hot path of every browser request: parse the
// Cookie header, verify the HMAC, hit the cache, fill the state.
func BenchmarkLookup(b *testing.B) {
	f := newFixture(b)
	var called bool
	h := f.handler(b, f.store, nil, &called)
	ctx := requestWithCookies(f.cookie.Name() + "=" + f.codec.Encode(f.live.ID))
	b.ReportAllocs()
	for b.Loop() {
		h(ctx)
		ctx.ResetUserValues()
	}
	if !called {
		b.Fatal("next not called")
	}
}
