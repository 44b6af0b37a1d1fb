// Package redisstore is the Redis implementation of session.Store, for more
// than one edgeauth instance behind a load balancer.
//
// Contract:
//   - Redis (single node, Sentinel or Cluster, via go-redis UniversalClient)
//     holds the truth. Records are session.MarshalBinary bytes and expire in
//     Redis at min(ExpiresAt, LastSeen+IdleTimeout); indexes are a set of
//     session ids per issuer+subject and per provider sid.
//   - A ristretto L1 cache sits in front with a short TTL (10 s by default) so
//     the request hot path rarely touches Redis; an L1 hit allocates nothing.
//   - Revocations (Delete, DeleteSubject, DeleteSID) overwrite the record with
//     a tombstone (so a concurrent write-back cannot resurrect the session) and
//     publish on a pub/sub channel; every instance drops the ids from its L1
//     and records subject revocations locally the moment the message arrives.
//     After a reconnect of the subscription the L1 is flushed, since messages
//     sent while it was down are lost.
//   - Redis outage: Get keeps answering from L1 for OutageGrace after the
//     first failure, then fails closed; Put fails with session.ErrUnavailable;
//     every such degraded decision is logged and counted. go-redis reconnects
//     and resubscribes on its own, so the store recovers without a restart.
//   - A record that does not decode (corrupt, or written by a newer version)
//     is logged, counted and treated as not found; it is left in place so a
//     newer instance in a rolling deploy can still read it.
//
// Trust boundary: Redis is trusted for availability and access control (run
// it with a password or ACL user and TLS off-host), but not for memory
// safety: every byte read from it goes through the bounded record decoder.
// Session ids and subjects never appear in logs, only hashes of them.
package redisstore

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"golang.org/x/sync/singleflight"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/redis/go-redis/v9"

	"github.com/edgeauth/edgeauth/middleware/session"
)

// Options configures a Store. Zero values are documented per field.
type Options struct {
	// Addrs are host:port addresses. One address: single node; several:
	// Cluster; with MasterName: Sentinel addresses. Required.
	Addrs []string
	// MasterName selects Sentinel mode. Zero: not Sentinel.
	MasterName string
	// Username and Password authenticate (ACL user, or requirepass with an
	// empty Username). Zero: no AUTH.
	Username, Password string
	// DB selects the database (single node and Sentinel only). Zero: 0.
	DB int
	// TLS enables TLS to Redis. Zero (nil): plain TCP.
	TLS *tls.Config
	// KeyPrefix is prepended to every key and to the channel name, so several
	// deployments can share one Redis. Zero: "edgeauth:".
	KeyPrefix string

	// L1TTL is how long a record read from Redis is served from memory
	// without asking Redis again. Revocations bypass it (pub/sub). Zero: 10s.
	L1TTL time.Duration
	// L1Budget bounds the L1 cache in bytes (record size is the cost).
	// Zero: 64 MiB.
	L1Budget int64
	// OutageGrace is how long after the first Redis failure sessions already
	// in L1 keep working. Negative: no grace (fail closed at once).
	// Zero: 5m.
	OutageGrace time.Duration
	// Lifetime bounds a session whose ExpiresAt is zero (from CreatedAt) and
	// how long tombstones of revoked sessions are kept. Zero: 12h.
	Lifetime time.Duration
	// IdleTimeout expires a session that was not seen for this long (from
	// LastSeen). Zero: no idle expiry.
	IdleTimeout time.Duration
	// RevocationTTL is how long a subject revocation time is kept (it must
	// outlive the longest bearer token). Zero: 24h.
	RevocationTTL time.Duration
	// OpTimeout bounds every Redis call, so an outage is detected quickly
	// instead of stalling requests. Zero: 500ms.
	OpTimeout time.Duration

	// Now is the clock for expiry and grace decisions. Zero: time.Now.
	Now func() time.Time
	// Logger receives degraded decisions, corrupt records and reconnects.
	// Zero: slog.Default().
	Logger *slog.Logger
	// OnDegraded, if set, is called for every degraded decision with its
	// kind (see the Decision* constants), for metrics. Zero: not called.
	OnDegraded func(kind string)
}

// Degraded decision kinds passed to Options.OnDegraded.
const (
	// DecisionServedFromL1 means Get answered from a stale L1 entry during
	// an outage, within OutageGrace.
	DecisionServedFromL1 = "served_from_l1"
	// DecisionFailedClosed means Get, Put, a revocation or a lookup failed
	// because Redis is unavailable and nothing safe was known locally.
	DecisionFailedClosed = "failed_closed"
	// DecisionRevocationUnknown means SubjectRevokedAt could not ask Redis
	// and answered from what this instance last knew.
	DecisionRevocationUnknown = "revocation_unknown"
)

// Stats are monotonic counters; see Store.Stats.
type Stats struct {
	L1Hits, L1Misses uint64
	// RedisRoundTrips counts commands and pipelines sent (one pipeline is
	// one round trip).
	RedisRoundTrips uint64
	// ServedFromL1, FailedClosed and RevocationUnknown count degraded
	// decisions by kind.
	ServedFromL1, FailedClosed, RevocationUnknown uint64
	// CorruptRecords counts values in Redis that did not decode.
	CorruptRecords uint64
	// RevocationsReceived counts pub/sub revocation messages handled.
	RevocationsReceived uint64
	// Resubscribes counts reconnects of the revocation subscription (each
	// flushes L1).
	Resubscribes uint64
}

// tombstone replaces a revoked record. It is not a valid record (the first
// byte of a record is session.RecordVersion, never 0), so it can never be
// mistaken for one.
const tombstone = "\x00revoked"

// putScript writes a record unless the key holds a tombstone, and returns
// the previous value ("" when none, the integer 0 when revoked). Without
// the tombstone check a request that read the session before an
// offboarding call and writes it back afterwards (LastSeen update, token
// refresh) would resurrect the revoked session. One key only, so it runs
// on Redis Cluster too.
var putScript = redis.NewScript(`
local old = redis.call('GET', KEYS[1])
if old == ARGV[3] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return old or ''`)

// subjKey identifies a subject; a struct key avoids building a string on
// the bearer hot path.
type subjKey struct{ iss, sub string }

type revState struct {
	at      time.Time // zero when not revoked
	checked time.Time // when Redis was last asked
}

// entry is an L1 value: a session or a blob, and until when it is fresh.
type entry struct {
	sess  *session.Session
	blob  []byte
	exp   time.Time // blobs only: when the blob expires
	fresh time.Time
}

// Store implements session.Store on Redis with an L1 cache and revocation
// broadcast. Create it with New; it is safe for concurrent use.
type Store struct {
	fetches singleflight.Group // concurrent L1 misses of one id share a read
	rdb     redis.UniversalClient
	ps      *redis.PubSub
	l1      *ristretto.Cache[string, *entry]
	opts    Options
	log     *slog.Logger
	now     func() time.Time

	prefix  string
	channel string
	// origin tags our own broadcasts so that their echo is not applied (and
	// OnRevoke listeners not called) a second time.
	origin string

	// epoch increases before every L1 invalidation from a revocation, so a
	// Get that read Redis before the revocation does not cache what it read
	// after the invalidation ran.
	epoch atomic.Uint64
	// downSince is the UnixNano (Options.Now) of the first failure of the
	// current outage, 0 when Redis is reachable.
	downSince atomic.Int64
	// probeAt is the real monotonic deadline before which, during an outage,
	// calls are not even sent: one probe per probeInterval finds out that
	// Redis is back, the other requests decide from L1 at once.
	probeAt atomic.Int64

	revMu   sync.RWMutex
	revoked map[subjKey]revState

	lsnMu     sync.RWMutex
	listeners []func(issuer, subject, sessionID string)

	stats struct {
		l1Hits, l1Misses, roundTrips, servedFromL1, failedClosed, revUnknown,
		corrupt, revReceived, resubscribes atomic.Uint64
	}

	done chan struct{}
	wg   sync.WaitGroup
}

var _ session.Store = (*Store)(nil)

const (
	probeInterval   = 250 * time.Millisecond
	maxRevokedCache = 1 << 16
)

// New connects to Redis, subscribes to the revocation channel and returns a
// Store. It fails when the options are invalid or Redis does not answer (a
// wrong address or password is a deployment error better seen at start).
func New(ctx context.Context, opts Options) (*Store, error) {
	if len(opts.Addrs) == 0 {
		return nil, errors.New("redisstore: no Redis address")
	}
	if opts.KeyPrefix == "" {
		opts.KeyPrefix = "edgeauth:"
	}
	if opts.L1TTL == 0 {
		opts.L1TTL = 10 * time.Second
	}
	if opts.L1TTL < 0 {
		return nil, fmt.Errorf("redisstore: negative L1TTL %v", opts.L1TTL)
	}
	if opts.L1Budget == 0 {
		opts.L1Budget = 64 << 20
	}
	if opts.OutageGrace == 0 {
		opts.OutageGrace = 5 * time.Minute
	}
	if opts.Lifetime == 0 {
		opts.Lifetime = 12 * time.Hour
	}
	if opts.RevocationTTL == 0 {
		opts.RevocationTTL = 24 * time.Hour
	}
	if opts.OpTimeout == 0 {
		opts.OpTimeout = 500 * time.Millisecond
	}
	if opts.Lifetime < 0 || opts.IdleTimeout < 0 || opts.RevocationTTL < 0 || opts.OpTimeout < 0 || opts.L1Budget < 0 {
		return nil, errors.New("redisstore: negative Lifetime, IdleTimeout, RevocationTTL, OpTimeout or L1Budget")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	l1, err := ristretto.NewCache(&ristretto.Config[string, *entry]{
		NumCounters: max(opts.L1Budget/100, 1000), // ~10x the entries of ~1 KiB records
		MaxCost:     opts.L1Budget,
		BufferItems: 64,
	})
	if err != nil {
		return nil, fmt.Errorf("redisstore: l1 cache: %w", err)
	}
	s := &Store{
		rdb: redis.NewUniversalClient(&redis.UniversalOptions{
			Addrs:        opts.Addrs,
			MasterName:   opts.MasterName,
			Username:     opts.Username,
			Password:     opts.Password,
			DB:           opts.DB,
			TLSConfig:    opts.TLS,
			DialTimeout:  opts.OpTimeout,
			ReadTimeout:  opts.OpTimeout,
			WriteTimeout: opts.OpTimeout,
			PoolTimeout:  opts.OpTimeout,
			// One retry covers a pooled connection that died with a Redis
			// restart; more would only stretch an outage's latency.
			MaxRetries:      1,
			MinRetryBackoff: 5 * time.Millisecond,
			MaxRetryBackoff: 50 * time.Millisecond,
		}),
		l1:      l1,
		opts:    opts,
		log:     opts.Logger,
		now:     opts.Now,
		prefix:  opts.KeyPrefix,
		channel: opts.KeyPrefix + "revoke",
		origin:  session.NewID()[:16],
		revoked: make(map[subjKey]revState),
		done:    make(chan struct{}),
	}
	s.rdb.AddHook(countHook{&s.stats.roundTrips})
	cctx, cancel := context.WithTimeout(ctx, 5*opts.OpTimeout)
	defer cancel()
	if err := s.rdb.Ping(cctx).Err(); err != nil {
		s.rdb.Close()
		l1.Close()
		return nil, fmt.Errorf("redisstore: ping %v: %w: %w", opts.Addrs, session.ErrUnavailable, err)
	}
	s.ps = s.rdb.Subscribe(cctx, s.channel)
	// Wait for the confirmation so that no revocation published after New
	// returns is missed.
	if _, err := s.ps.Receive(cctx); err != nil {
		s.ps.Close()
		s.rdb.Close()
		l1.Close()
		return nil, fmt.Errorf("redisstore: subscribe: %w: %w", session.ErrUnavailable, err)
	}
	ch := s.ps.ChannelWithSubscriptions(
		redis.WithChannelSize(1024),
		redis.WithChannelHealthCheckInterval(time.Second),
	)
	s.wg.Add(1)
	go s.listen(ch)
	return s, nil
}

// countHook counts round trips for Stats.
type countHook struct{ n *atomic.Uint64 }

func (h countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}
func (h countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// Close stops the subscription and closes the client and the L1 cache.
func (s *Store) Close() error {
	select {
	case <-s.done:
		return nil
	default:
	}
	close(s.done)
	err := s.ps.Close()
	s.wg.Wait()
	err = errors.Join(err, s.rdb.Close())
	s.l1.Close()
	if err != nil {
		return fmt.Errorf("redisstore: close: %w", err)
	}
	return nil
}

// OnRevoke registers f to be called for every revocation this instance
// learns about, its own or another instance's: once per session id, and
// once with an empty sessionID when all sessions of a subject were revoked.
// The verified-token cache uses it to evict. f must not block.
func (s *Store) OnRevoke(f func(issuer, subject, sessionID string)) {
	s.lsnMu.Lock()
	s.listeners = append(s.listeners, f)
	s.lsnMu.Unlock()
}

// Stats returns a snapshot of the counters.
func (s *Store) Stats() Stats {
	return Stats{
		L1Hits:              s.stats.l1Hits.Load(),
		L1Misses:            s.stats.l1Misses.Load(),
		RedisRoundTrips:     s.stats.roundTrips.Load(),
		ServedFromL1:        s.stats.servedFromL1.Load(),
		FailedClosed:        s.stats.failedClosed.Load(),
		RevocationUnknown:   s.stats.revUnknown.Load(),
		CorruptRecords:      s.stats.corrupt.Load(),
		RevocationsReceived: s.stats.revReceived.Load(),
		Resubscribes:        s.stats.resubscribes.Load(),
	}
}

// Keys. Session ids are base64url, subjects and issuers arbitrary; "|"
// cannot make two different (iss, sub) pairs collide because the issuer is
// a URL and the length of the issuer is part of the key.
func (s *Store) sessKey(id string) string { return s.prefix + "s:" + id }
func (s *Store) subjectKey(iss, sub string) string {
	return s.prefix + "u:" + strconv.Itoa(len(iss)) + ":" + iss + "|" + sub
}
func (s *Store) sidKey(iss, sid string) string {
	return s.prefix + "sid:" + strconv.Itoa(len(iss)) + ":" + iss + "|" + sid
}
func (s *Store) revokedKey(iss, sub string) string {
	return s.prefix + "r:" + strconv.Itoa(len(iss)) + ":" + iss + "|" + sub
}
func (s *Store) blobKey(key string) string { return s.prefix + "b:" + key }

// l1BlobKey keeps blobs apart from session ids in the shared L1; session
// ids never start with a NUL byte.
func l1BlobKey(key string) string { return "\x00b" + key }

// expiry is when the session stops being valid at the latest: its absolute
// end (or CreatedAt+Lifetime when unset) and its idle end.
func (s *Store) expiry(sess *session.Session) time.Time {
	end := sess.ExpiresAt
	if end.IsZero() {
		end = sess.CreatedAt.Add(s.opts.Lifetime)
	}
	if s.opts.IdleTimeout > 0 {
		if idle := sess.LastSeen.Add(s.opts.IdleTimeout); idle.Before(end) {
			end = idle
		}
	}
	return end
}

// absoluteEnd is the part of expiry that no other instance can extend.
func (s *Store) absoluteEnd(sess *session.Session) time.Time {
	if sess.ExpiresAt.IsZero() {
		return sess.CreatedAt.Add(s.opts.Lifetime)
	}
	return sess.ExpiresAt
}

func (s *Store) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opts.OpTimeout)
}

// errDown is returned without a round trip while an outage is known and no
// probe is due.
var errDown = errors.New("redis down, next probe pending")

// admit reports whether a call may go to Redis now.
func (s *Store) admit() bool {
	if s.downSince.Load() == 0 {
		return true
	}
	now := time.Now().UnixNano()
	next := s.probeAt.Load()
	return now >= next && s.probeAt.CompareAndSwap(next, now+int64(probeInterval))
}

// result records the outcome of a Redis call for outage tracking and
// returns err wrapped as ErrUnavailable when it is a technical failure.
func (s *Store) result(op string, err error) error {
	if err == nil || errors.Is(err, redis.Nil) {
		if since := s.downSince.Swap(0); since != 0 {
			s.log.LogAttrs(context.Background(), slog.LevelWarn, "redisstore: redis reachable again",
				slog.Duration("outage", s.now().Sub(time.Unix(0, since))))
		}
		return err
	}
	if s.downSince.CompareAndSwap(0, s.now().UnixNano()) {
		s.probeAt.Store(time.Now().UnixNano() + int64(probeInterval))
		s.log.LogAttrs(context.Background(), slog.LevelError, "redisstore: redis unavailable",
			slog.String("op", op), slog.String("error", err.Error()))
	}
	return fmt.Errorf("redisstore: %s: %w: %w", op, session.ErrUnavailable, err)
}

func (s *Store) degraded(kind, op, id string) {
	switch kind {
	case DecisionServedFromL1:
		s.stats.servedFromL1.Add(1)
	case DecisionFailedClosed:
		s.stats.failedClosed.Add(1)
	case DecisionRevocationUnknown:
		s.stats.revUnknown.Add(1)
	}
	s.log.LogAttrs(context.Background(), slog.LevelWarn, "redisstore: degraded decision",
		slog.String("decision", kind), slog.String("op", op), slog.String("id_hash", session.HashID(id)))
	if s.opts.OnDegraded != nil {
		s.opts.OnDegraded(kind)
	}
}

// inGrace reports whether an outage started less than OutageGrace ago.
func (s *Store) inGrace(now time.Time) bool {
	since := s.downSince.Load()
	return since != 0 && s.opts.OutageGrace > 0 && now.Sub(time.Unix(0, since)) < s.opts.OutageGrace
}

// Get returns the live session with id and records activity once per
// session.TouchInterval. The hot path is an L1 hit: one cache lookup, a
// read of the local revocation map and time comparisons, no allocation.
func (s *Store) Get(ctx context.Context, id string) (*session.Session, error) {
	now := s.now()
	e, cached := s.l1.Get(id)
	if cached && e.sess != nil {
		if !now.Before(s.absoluteEnd(e.sess)) || s.revokedLocally(e.sess) {
			s.l1.Del(id)
			return nil, session.ErrNotFound
		}
		if now.Before(e.fresh) && now.Before(s.expiry(e.sess)) {
			s.stats.l1Hits.Add(1)
			return s.touch(ctx, e.sess, now)
		}
	} else {
		cached = false
	}
	s.stats.l1Misses.Add(1)
	epoch := s.epoch.Load()
	// One Redis read per id at a time: when a busy session's L1 entry
	// expires, every concurrent request misses at once, and without this
	// each would read Redis (and open pool connections) for the same
	// record. The key carries the revocation epoch: a request that starts
	// after a revocation must not join a read that began before it.
	v, err, _ := s.fetches.Do(strconv.FormatUint(epoch, 10)+"/"+id, func() (any, error) {
		sess, err := s.fetch(ctx, id, now)
		if err == nil && s.epoch.Load() == epoch {
			// Cached before the read's waiters return, and waited for
			// (ristretto applies sets asynchronously): otherwise the
			// requests right behind these (a page's assets) miss L1 too
			// and read Redis again, one flight after another. Only misses
			// wait, once per session per L1 TTL.
			s.l1.SetWithTTL(id, &entry{sess: sess, fresh: now.Add(s.opts.L1TTL)}, s.cost(sess), s.l1RealTTL())
			s.l1.Wait()
		}
		return sess, err
	})
	sess, _ := v.(*session.Session)
	switch {
	case err == nil:
		return s.touch(ctx, sess, now)
	case errors.Is(err, session.ErrNotFound):
		if cached {
			s.l1.Del(id)
		}
		return nil, err
	}
	// Redis is unavailable. A session this instance already holds keeps
	// working for the grace period, unless its idle timeout ran out as far
	// as this instance knows (another instance may have seen it since, but
	// we cannot ask, so we fail closed).
	if cached && s.inGrace(now) && now.Before(s.expiry(e.sess)) {
		s.degraded(DecisionServedFromL1, "get", id)
		return s.touch(ctx, e.sess, now)
	}
	s.degraded(DecisionFailedClosed, "get", id)
	return nil, err
}

// touch advances LastSeen when it is TouchInterval or more in the past, so
// that activity on any instance extends the idle timeout. During an outage
// the write fails; the local copy is advanced anyway so that the session
// does not idle out here while the grace period lasts.
func (s *Store) touch(ctx context.Context, sess *session.Session, now time.Time) (*session.Session, error) {
	if now.Sub(sess.LastSeen) < session.TouchInterval {
		return sess, nil
	}
	c := sess.Clone()
	c.LastSeen = now
	err := s.Put(ctx, c)
	switch {
	case err == nil:
		return c, nil
	case errors.Is(err, session.ErrUnavailable):
		s.l1.SetWithTTL(c.ID, &entry{sess: c, fresh: now}, s.cost(c), s.l1RealTTL())
		return c, nil
	default:
		return nil, err
	}
}

// revokedLocally reports whether this instance knows of a revocation of the
// session's subject at or after the session was created.
func (s *Store) revokedLocally(sess *session.Session) bool {
	s.revMu.RLock()
	st, ok := s.revoked[subjKey{sess.Issuer, sess.Subject}]
	s.revMu.RUnlock()
	return ok && !st.at.IsZero() && !st.at.Before(sess.CreatedAt)
}

// revokedSubject reports whether the subject was revoked at or after the
// session was created, asking Redis when the local answer is older than
// L1TTL.
func (s *Store) revokedSubject(ctx context.Context, sess *session.Session) bool {
	at, ok := s.SubjectRevokedAt(ctx, sess.Issuer, sess.Subject)
	return ok && !at.Before(sess.CreatedAt)
}

// l1RealTTL is the wall-clock TTL given to ristretto: long enough to keep
// entries through an outage's grace period. Freshness is decided with
// Options.Now against entry.fresh, not by ristretto.
func (s *Store) l1RealTTL() time.Duration {
	return s.opts.L1TTL + max(s.opts.OutageGrace, 0)
}

func (s *Store) cost(sess *session.Session) int64 {
	return int64(256 + len(sess.IDToken) + len(sess.RefreshToken) + 32*len(sess.Groups) + 64*len(sess.Claims))
}

// fetch reads and decodes a record from Redis.
func (s *Store) fetch(ctx context.Context, id string, now time.Time) (*session.Session, error) {
	if !s.admit() {
		return nil, fmt.Errorf("redisstore: get: %w: %w", session.ErrUnavailable, errDown)
	}
	cctx, cancel := s.opCtx(ctx)
	b, err := s.rdb.Get(cctx, s.sessKey(id)).Bytes()
	cancel()
	if err = s.result("get", err); err != nil {
		if errors.Is(err, redis.Nil) {
			return nil, session.ErrNotFound
		}
		return nil, err
	}
	sess := s.decode(id, b)
	if sess == nil || !now.Before(s.expiry(sess)) || s.revokedSubject(ctx, sess) {
		return nil, session.ErrNotFound
	}
	return sess, nil
}

// decode returns nil for tombstones and for records that do not decode or
// do not belong to id (a record copied under another key).
func (s *Store) decode(id string, b []byte) *session.Session {
	if string(b) == tombstone {
		return nil
	}
	sess := new(session.Session)
	if err := sess.UnmarshalBinary(b); err != nil || sess.ID != id {
		s.stats.corrupt.Add(1)
		reason := "id mismatch"
		if err != nil {
			reason = err.Error()
		}
		s.log.LogAttrs(context.Background(), slog.LevelError, "redisstore: skipping corrupt session record",
			slog.String("id_hash", session.HashID(id)), slog.Int("bytes", len(b)), slog.String("reason", reason))
		return nil
	}
	return sess
}

// Put writes sess to Redis, indexes it under its subject and provider sid,
// and caches it in L1. It fails with session.ErrUnavailable when Redis is
// down (a new login must not be half-created) and with session.ErrNotFound
// when the session was revoked meanwhile.
func (s *Store) Put(ctx context.Context, sess *session.Session) error {
	if sess == nil || sess.ID == "" {
		return errors.New("redisstore: put: session without id")
	}
	now := s.now()
	exp := s.expiry(sess)
	ttl := exp.Sub(now)
	if ttl <= 0 {
		// Already expired: nothing to keep, and an older live copy must go.
		return s.Delete(ctx, sess.ID)
	}
	if s.revokedSubject(ctx, sess) {
		return fmt.Errorf("redisstore: put: subject revoked after the session was created: %w", session.ErrNotFound)
	}
	data, err := sess.MarshalBinary()
	if err != nil {
		return fmt.Errorf("redisstore: put: %w", err)
	}
	if !s.admit() {
		s.degraded(DecisionFailedClosed, "put", sess.ID)
		return fmt.Errorf("redisstore: put: %w: %w", session.ErrUnavailable, errDown)
	}
	// Index sets live as long as their longest member: NX sets a first
	// expiry, GT only ever extends it (Redis >= 7.0). Seconds, rounded up.
	setTTL := ttl.Truncate(time.Second) + time.Second
	cctx, cancel := s.opCtx(ctx)
	defer cancel()
	pipe := s.rdb.Pipeline()
	put := putScript.Eval(cctx, pipe, []string{s.sessKey(sess.ID)}, data, ttl.Milliseconds()+1, tombstone)
	uk := s.subjectKey(sess.Issuer, sess.Subject)
	pipe.SAdd(cctx, uk, sess.ID)
	pipe.ExpireNX(cctx, uk, setTTL)
	pipe.ExpireGT(cctx, uk, setTTL)
	if sess.SID != "" {
		sk := s.sidKey(sess.Issuer, sess.SID)
		pipe.SAdd(cctx, sk, sess.ID)
		pipe.ExpireNX(cctx, sk, setTTL)
		pipe.ExpireGT(cctx, sk, setTTL)
	}
	_, err = pipe.Exec(cctx)
	if err = s.result("put", err); err != nil {
		s.degraded(DecisionFailedClosed, "put", sess.ID)
		return err
	}
	switch prev := put.Val().(type) {
	case int64:
		s.l1.Del(sess.ID)
		return fmt.Errorf("redisstore: put: session revoked: %w", session.ErrNotFound)
	case string:
		s.unindexMoved(ctx, prev, sess)
	}
	c := sess.Clone()
	s.l1.SetWithTTL(sess.ID, &entry{sess: c, fresh: now.Add(s.opts.L1TTL)}, s.cost(c), s.l1RealTTL())
	return nil
}

// unindexMoved removes the session from the subject and sid indexes of its
// previous version when a re-write moved it (re-login under another
// provider session), so that DeleteSID of the old sid does not end it.
func (s *Store) unindexMoved(ctx context.Context, prevRecord string, sess *session.Session) {
	if prevRecord == "" {
		return
	}
	var prev session.Session
	if prev.UnmarshalBinary([]byte(prevRecord)) != nil {
		return
	}
	pipe := s.rdb.Pipeline()
	cctx, cancel := s.opCtx(ctx)
	defer cancel()
	if prev.Issuer != sess.Issuer || prev.Subject != sess.Subject {
		pipe.SRem(cctx, s.subjectKey(prev.Issuer, prev.Subject), sess.ID)
	}
	if prev.SID != "" && (prev.Issuer != sess.Issuer || prev.SID != sess.SID) {
		pipe.SRem(cctx, s.sidKey(prev.Issuer, prev.SID), sess.ID)
	}
	if pipe.Len() > 0 {
		// A failure leaves a stale member; deletions by index check that
		// the record still matches, so it is harmless.
		_, err := pipe.Exec(cctx)
		_ = s.result("put unindex", err)
	}
}

// Delete revokes one session on every instance.
func (s *Store) Delete(ctx context.Context, id string) error {
	old, err := s.revokeIDs(ctx, "delete", []string{id})
	if err != nil {
		return err
	}
	var iss, sub string
	if len(old) == 1 {
		iss, sub = old[0].Issuer, old[0].Subject
	}
	return s.publishAndApply(ctx, "delete", revocation{IDs: []string{id}, Iss: iss, Sub: sub}, old)
}

// DeleteSubject revokes every session of issuer+subject on every instance
// and records the revocation time (kept RevocationTTL) for bearer checks.
func (s *Store) DeleteSubject(ctx context.Context, issuer, subject string) (int, error) {
	now := s.now()
	ids, err := s.matching(ctx, "delete subject", s.subjectKey(issuer, subject), func(o *session.Session) bool {
		return o.Issuer == issuer && o.Subject == subject
	})
	if err != nil {
		return 0, err
	}
	old, err := s.revokeIDs(ctx, "delete subject", ids)
	if err != nil {
		return 0, err
	}
	cctx, cancel := s.opCtx(ctx)
	pipe := s.rdb.Pipeline()
	pipe.Del(cctx, s.subjectKey(issuer, subject))
	pipe.Set(cctx, s.revokedKey(issuer, subject), now.UnixNano(), s.opts.RevocationTTL)
	_, err = pipe.Exec(cctx)
	cancel()
	if err = s.result("delete subject", err); err != nil {
		s.degraded(DecisionFailedClosed, "delete subject", subject)
		return 0, err
	}
	msg := revocation{IDs: ids, Iss: issuer, Sub: subject, At: now.UnixNano()}
	if err := s.publishAndApply(ctx, "delete subject", msg, old); err != nil {
		return 0, err
	}
	return s.countLive(old, now), nil
}

// DeleteSID revokes the sessions created under a provider session id
// (back-channel logout) on every instance.
func (s *Store) DeleteSID(ctx context.Context, issuer, sid string) (int, error) {
	now := s.now()
	ids, err := s.matching(ctx, "delete sid", s.sidKey(issuer, sid), func(o *session.Session) bool {
		return o.Issuer == issuer && o.SID == sid
	})
	if err != nil {
		return 0, err
	}
	old, err := s.revokeIDs(ctx, "delete sid", ids)
	if err != nil {
		return 0, err
	}
	cctx, cancel := s.opCtx(ctx)
	err = s.rdb.Del(cctx, s.sidKey(issuer, sid)).Err()
	cancel()
	if err = s.result("delete sid", err); err != nil {
		return 0, err
	}
	if err := s.publishAndApply(ctx, "delete sid", revocation{IDs: ids, Iss: issuer}, old); err != nil {
		return 0, err
	}
	return s.countLive(old, now), nil
}

func (s *Store) countLive(old []*session.Session, now time.Time) int {
	n := 0
	for _, o := range old {
		if now.Before(s.expiry(o)) {
			n++
		}
	}
	return n
}

func (s *Store) members(ctx context.Context, op, key string) ([]string, error) {
	if !s.admit() {
		s.degraded(DecisionFailedClosed, op, key)
		return nil, fmt.Errorf("redisstore: %s: %w: %w", op, session.ErrUnavailable, errDown)
	}
	cctx, cancel := s.opCtx(ctx)
	ids, err := s.rdb.SMembers(cctx, key).Result()
	cancel()
	if err = s.result(op, err); err != nil {
		s.degraded(DecisionFailedClosed, op, key)
		return nil, err
	}
	slices.Sort(ids)
	return ids, nil
}

// matching returns the ids indexed under key whose records still match
// (an index may hold ids whose record moved to another subject or sid).
func (s *Store) matching(ctx context.Context, op, key string, match func(*session.Session) bool) ([]string, error) {
	ids, err := s.members(ctx, op, key)
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	recs, err := s.getMany(ctx, op, ids)
	if err != nil {
		return nil, err
	}
	out := ids[:0]
	for i, id := range ids {
		if recs[i] != nil && match(recs[i]) {
			out = append(out, id)
		}
	}
	return out, nil
}

// getMany reads records in one round trip; absent, revoked and corrupt ones
// are nil.
func (s *Store) getMany(ctx context.Context, op string, ids []string) ([]*session.Session, error) {
	cctx, cancel := s.opCtx(ctx)
	defer cancel()
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.Get(cctx, s.sessKey(id))
	}
	_, err := pipe.Exec(cctx)
	if err = s.result(op, err); err != nil && !errors.Is(err, redis.Nil) {
		s.degraded(DecisionFailedClosed, op, ids[0])
		return nil, err
	}
	out := make([]*session.Session, len(ids))
	for i, c := range cmds {
		if b, err := c.Bytes(); err == nil {
			out[i] = s.decode(ids[i], b)
		}
	}
	return out, nil
}

// revokeIDs replaces each record with a tombstone (kept Lifetime, so a
// late write-back of the session fails) and returns the decodable records
// that were there.
func (s *Store) revokeIDs(ctx context.Context, op string, ids []string) ([]*session.Session, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	if !s.admit() {
		s.degraded(DecisionFailedClosed, op, ids[0])
		return nil, fmt.Errorf("redisstore: %s: %w: %w", op, session.ErrUnavailable, errDown)
	}
	cctx, cancel := s.opCtx(ctx)
	defer cancel()
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StatusCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.SetArgs(cctx, s.sessKey(id), tombstone, redis.SetArgs{TTL: s.opts.Lifetime, Get: true})
	}
	_, err := pipe.Exec(cctx)
	if err = s.result(op, err); err != nil && !errors.Is(err, redis.Nil) {
		s.degraded(DecisionFailedClosed, op, ids[0])
		return nil, err
	}
	var old []*session.Session
	for i, c := range cmds {
		b, err := c.Bytes()
		if err != nil {
			continue // redis.Nil: there was no record
		}
		if o := s.decode(ids[i], b); o != nil {
			old = append(old, o)
		}
	}
	// Unindex the old records from their sets (the subject set of a
	// DeleteSubject is deleted whole by the caller).
	if len(old) > 0 {
		pipe := s.rdb.Pipeline()
		for _, o := range old {
			pipe.SRem(cctx, s.subjectKey(o.Issuer, o.Subject), o.ID)
			if o.SID != "" {
				pipe.SRem(cctx, s.sidKey(o.Issuer, o.SID), o.ID)
			}
		}
		if _, err := pipe.Exec(cctx); err != nil {
			// The records are tombstoned already; stale set members are
			// skipped and removed by List.
			_ = s.result(op, err)
		}
	}
	return old, nil
}

// publishAndApply applies a revocation locally (so this instance refuses
// the sessions even if the broadcast is lost) and publishes it. A failed
// publish is an error: the records are gone from Redis, but other
// instances may serve them from L1 until their L1TTL ends.
func (s *Store) publishAndApply(ctx context.Context, op string, msg revocation, old []*session.Session) error {
	s.apply(msg, old)
	msg.Origin = s.origin
	b := msg.encode()
	cctx, cancel := s.opCtx(ctx)
	err := s.rdb.Publish(cctx, s.channel, b).Err()
	cancel()
	if err = s.result(op+" publish", err); err != nil {
		s.degraded(DecisionFailedClosed, op+" publish", op)
		return err
	}
	return nil
}

// apply drops revoked ids from L1, records a subject revocation and calls
// the OnRevoke listeners. old, when known, gives issuer and subject per id.
func (s *Store) apply(msg revocation, old []*session.Session) {
	// The subject's revocation time first: once a session is refused here,
	// its subject's bearer tokens must be refused too (a request seeing the
	// L1 entry gone could otherwise read the tombstone and answer before
	// the time was recorded).
	if msg.At != 0 {
		s.recordRevocation(subjKey{msg.Iss, msg.Sub}, time.Unix(0, msg.At), s.now())
	}
	s.epoch.Add(1)
	for _, id := range msg.IDs {
		s.l1.Del(id)
	}
	s.lsnMu.RLock()
	ls := s.listeners
	s.lsnMu.RUnlock()
	if len(ls) == 0 {
		return
	}
	byID := make(map[string]*session.Session, len(old))
	for _, o := range old {
		byID[o.ID] = o
	}
	for _, id := range msg.IDs {
		iss, sub := msg.Iss, msg.Sub
		if o := byID[id]; o != nil {
			iss, sub = o.Issuer, o.Subject
		}
		for _, f := range ls {
			f(iss, sub, id)
		}
	}
	if msg.At != 0 {
		for _, f := range ls {
			f(msg.Iss, msg.Sub, "")
		}
	}
}

func (s *Store) recordRevocation(k subjKey, at, now time.Time) {
	s.revMu.Lock()
	defer s.revMu.Unlock()
	if cur, ok := s.revoked[k]; !ok || at.After(cur.at) {
		s.revoked[k] = revState{at: at, checked: now}
	}
	s.pruneLocked(now)
}

// pruneLocked bounds the local revocation cache: negative answers older
// than L1TTL go first, then revocations older than RevocationTTL.
func (s *Store) pruneLocked(now time.Time) {
	if len(s.revoked) <= maxRevokedCache {
		return
	}
	for k, v := range s.revoked {
		if (v.at.IsZero() && now.Sub(v.checked) >= s.opts.L1TTL) || (!v.at.IsZero() && now.Sub(v.at) >= s.opts.RevocationTTL) {
			delete(s.revoked, k)
		}
	}
	if len(s.revoked) > maxRevokedCache {
		for k, v := range s.revoked {
			if v.at.IsZero() {
				delete(s.revoked, k)
			}
		}
	}
}

// SubjectRevokedAt returns when all sessions of the subject were last
// revoked. Answers are cached for L1TTL and updated at once by the
// broadcast. During an outage it answers from what it last knew and counts
// the degraded decision; a subject it never looked up is then reported as
// not revoked (the token itself is still verified).
func (s *Store) SubjectRevokedAt(ctx context.Context, issuer, subject string) (time.Time, bool) {
	now := s.now()
	k := subjKey{issuer, subject}
	s.revMu.RLock()
	st, ok := s.revoked[k]
	s.revMu.RUnlock()
	if ok && now.Sub(st.checked) < s.opts.L1TTL {
		return st.at, !st.at.IsZero()
	}
	if !s.admit() {
		s.degraded(DecisionRevocationUnknown, "subject revoked at", subject)
		return st.at, !st.at.IsZero()
	}
	cctx, cancel := s.opCtx(ctx)
	ns, err := s.rdb.Get(cctx, s.revokedKey(issuer, subject)).Int64()
	cancel()
	if err = s.result("subject revoked at", err); err != nil && !errors.Is(err, redis.Nil) {
		s.degraded(DecisionRevocationUnknown, "subject revoked at", subject)
		return st.at, !st.at.IsZero()
	}
	var at time.Time
	if err == nil && ns > 0 {
		at = time.Unix(0, ns)
	}
	s.revMu.Lock()
	if cur := s.revoked[k]; cur.at.After(at) {
		at = cur.at // a broadcast arrived meanwhile
	}
	s.revoked[k] = revState{at: at, checked: now}
	s.pruneLocked(now)
	s.revMu.Unlock()
	return at, !at.IsZero()
}

// List returns the live sessions of a subject, oldest first. Index members
// whose record is gone (expired, revoked) are removed on the way.
func (s *Store) List(ctx context.Context, issuer, subject string) ([]*session.Session, error) {
	now := s.now()
	uk := s.subjectKey(issuer, subject)
	ids, err := s.members(ctx, "list", uk)
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	recs, err := s.getMany(ctx, "list", ids)
	if err != nil {
		return nil, err
	}
	var out []*session.Session
	var stale []any
	for i, sess := range recs {
		if sess == nil || sess.Issuer != issuer || sess.Subject != subject {
			stale = append(stale, ids[i])
			continue
		}
		if now.Before(s.expiry(sess)) && !s.revokedSubject(ctx, sess) {
			out = append(out, sess)
		}
	}
	if len(stale) > 0 {
		cctx, cancel := s.opCtx(ctx)
		_ = s.result("list cleanup", s.rdb.SRem(cctx, uk, stale...).Err())
		cancel()
	}
	slices.SortFunc(out, func(a, b *session.Session) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return compareStrings(a.ID, b.ID)
	})
	return out, nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// GetBlob returns a copy of per-key data of another concern (risk
// history), served from L1 for L1TTL.
func (s *Store) GetBlob(ctx context.Context, key string) ([]byte, error) {
	now := s.now()
	lk := l1BlobKey(key)
	e, cached := s.l1.Get(lk)
	if cached && e.sess != nil {
		cached = false
	}
	if cached && !now.Before(e.exp) {
		s.l1.Del(lk)
		return nil, session.ErrNotFound
	}
	if cached && now.Before(e.fresh) {
		s.stats.l1Hits.Add(1)
		return slices.Clone(e.blob), nil
	}
	s.stats.l1Misses.Add(1)
	if !s.admit() {
		return s.blobDegraded(e, cached, now, key, fmt.Errorf("redisstore: get blob: %w: %w", session.ErrUnavailable, errDown))
	}
	cctx, cancel := s.opCtx(ctx)
	v, err := s.rdb.Get(cctx, s.blobKey(key)).Bytes()
	cancel()
	if err = s.result("get blob", err); err != nil {
		if errors.Is(err, redis.Nil) {
			s.l1.Del(lk)
			return nil, session.ErrNotFound
		}
		return s.blobDegraded(e, cached, now, key, err)
	}
	b, exp, ok := decodeBlob(v)
	if !ok {
		s.stats.corrupt.Add(1)
		s.log.LogAttrs(ctx, slog.LevelError, "redisstore: skipping corrupt blob",
			slog.String("key_hash", session.HashID(key)), slog.Int("bytes", len(v)))
		return nil, session.ErrNotFound
	}
	if !now.Before(exp) {
		return nil, session.ErrNotFound
	}
	s.l1.SetWithTTL(lk, &entry{blob: b, exp: exp, fresh: now.Add(s.opts.L1TTL)}, int64(64+len(b)), s.l1RealTTL())
	return slices.Clone(b), nil
}

func (s *Store) blobDegraded(e *entry, cached bool, now time.Time, key string, err error) ([]byte, error) {
	if cached && s.inGrace(now) {
		s.degraded(DecisionServedFromL1, "get blob", key)
		return slices.Clone(e.blob), nil
	}
	s.degraded(DecisionFailedClosed, "get blob", key)
	return nil, err
}

// PutBlob stores b under key for ttl (ttl <= 0 deletes it).
func (s *Store) PutBlob(ctx context.Context, key string, b []byte, ttl time.Duration) error {
	lk := l1BlobKey(key)
	if !s.admit() {
		s.degraded(DecisionFailedClosed, "put blob", key)
		return fmt.Errorf("redisstore: put blob: %w: %w", session.ErrUnavailable, errDown)
	}
	now := s.now()
	exp := now.Add(ttl)
	cctx, cancel := s.opCtx(ctx)
	var err error
	if ttl <= 0 {
		err = s.rdb.Del(cctx, s.blobKey(key)).Err()
	} else {
		err = s.rdb.Set(cctx, s.blobKey(key), encodeBlob(b, exp), ttl).Err()
	}
	cancel()
	if err = s.result("put blob", err); err != nil {
		s.degraded(DecisionFailedClosed, "put blob", key)
		return err
	}
	if ttl <= 0 {
		s.l1.Del(lk)
		return nil
	}
	c := slices.Clone(b)
	s.l1.SetWithTTL(lk, &entry{blob: c, exp: exp, fresh: now.Add(s.opts.L1TTL)}, int64(64+len(c)), s.l1RealTTL())
	return nil
}

// Blobs are stored as a version byte, the expiry (UnixNano of Options.Now,
// big-endian) and the caller's bytes. The expiry is kept in the value
// because Redis expires keys by its own clock, and the store decides by the
// injected one.
const blobVersion byte = 1

func encodeBlob(b []byte, exp time.Time) []byte {
	v := make([]byte, 9, 9+len(b))
	v[0] = blobVersion
	binary.BigEndian.PutUint64(v[1:], uint64(exp.UnixNano()))
	return append(v, b...)
}

func decodeBlob(v []byte) (b []byte, exp time.Time, ok bool) {
	if len(v) < 9 || v[0] != blobVersion {
		return nil, time.Time{}, false
	}
	return v[9:], time.Unix(0, int64(binary.BigEndian.Uint64(v[1:9]))), true
}
