package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/dgraph-io/ristretto/v2"
)

// DefaultMemoryBudget is the memory store's budget when none is configured.
const DefaultMemoryBudget = 512 << 20

// DefaultLifetime is the absolute session lifetime when none is configured.
const DefaultLifetime = 12 * time.Hour

// maxRevocations bounds the subject revocation records; older than the
// lifetime ones are dropped first.
const maxRevocations = 100_000

// blobPrefix keeps blob keys apart from session ids in the one cache: a NUL
// never occurs in a session id (base64url), so no blob key can shadow a
// session.
const blobPrefix = "\x00blob\x00"

// MemoryOptions configures NewMemoryStore.
type MemoryOptions struct {
	// Budget is the memory the store may use for records, in bytes (cost =
	// approximate bytes of a record and its index entries). Zero means
	// DefaultMemoryBudget. When full, the least useful sessions are evicted
	// (ristretto's TinyLFU), and a new login may be refused (Put returns
	// ErrUnavailable) rather than exceed the budget.
	Budget int64
	// IdleTimeout ends a session not used for that long. Zero means none.
	IdleTimeout time.Duration
	// Lifetime is the absolute lifetime given to records without ExpiresAt,
	// how long subject revocations are remembered, and the age beyond which
	// a snapshot is stale. Zero means DefaultLifetime.
	Lifetime time.Duration
	// Now is the clock of every expiry decision. Nil means time.Now.
	Now func() time.Time
	// Logger receives evictions and refused writes. Nil discards.
	Logger *slog.Logger
}

// MemoryStore is the embedded Store: sessions in a ristretto cache bounded
// by a memory budget, with subject and provider-session indexes kept in
// step with the cache through its eviction callbacks.
type MemoryStore struct {
	cache    *ristretto.Cache[string, *entry]
	budget   int64
	idle     time.Duration
	lifetime time.Duration
	now      func() time.Time
	log      *slog.Logger

	mu      sync.Mutex
	bySub   map[subjectKey]map[string]*entry
	bySID   map[subjectKey]map[string]*entry
	revoked map[subjectKey]time.Time
}

type subjectKey struct{ iss, sub string }

// entry is what the cache holds. A session entry's record is immutable and
// replaced as a whole (atomic pointer) when touched; dead is set once the
// entry was deleted, replaced or evicted, so a Get racing with those never
// serves it.
type entry struct {
	sess atomic.Pointer[Session]
	dead atomic.Bool
	mu   sync.Mutex // orders touch against delete/replace
	cost int64

	blob    []byte
	blobExp time.Time
}

// Compile-time check.
var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns a MemoryStore.
func NewMemoryStore(o MemoryOptions) (*MemoryStore, error) {
	if o.Budget < 0 || o.IdleTimeout < 0 || o.Lifetime < 0 {
		return nil, errors.New("session: memory store: negative budget or duration")
	}
	if o.Budget == 0 {
		o.Budget = DefaultMemoryBudget
	}
	if o.Lifetime == 0 {
		o.Lifetime = DefaultLifetime
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m := &MemoryStore{
		budget:   o.Budget,
		idle:     o.IdleTimeout,
		lifetime: o.Lifetime,
		now:      o.Now,
		log:      o.Logger,
		bySub:    make(map[subjectKey]map[string]*entry),
		bySID:    make(map[subjectKey]map[string]*entry),
		revoked:  make(map[subjectKey]time.Time),
	}
	// Ristretto wants ~10 counters per item it expects to hold; a typical
	// record costs ~1.5 KiB.
	counters := max(o.Budget/1536*10, 10_000)
	c, err := ristretto.NewCache(&ristretto.Config[string, *entry]{
		NumCounters: counters,
		MaxCost:     o.Budget,
		BufferItems: 64,
		OnEvict:     func(it *ristretto.Item[*entry]) { m.forget(it.Value, "evicted") },
		OnReject:    func(it *ristretto.Item[*entry]) { m.forget(it.Value, "rejected") },
	})
	if err != nil {
		return nil, fmt.Errorf("session: memory store: %w", err)
	}
	m.cache = c
	return m, nil
}

// deadline is when s stops being live.
func (m *MemoryStore) deadline(s *Session) time.Time {
	d := s.ExpiresAt
	if m.idle > 0 {
		if i := s.LastSeen.Add(m.idle); i.Before(d) {
			d = i
		}
	}
	return d
}

// Get implements Store. On a cache hit with a recent LastSeen it does not
// allocate.
func (m *MemoryStore) Get(_ context.Context, id string) (*Session, error) {
	e, ok := m.cache.Get(id)
	if !ok || e == nil || e.dead.Load() {
		return nil, ErrNotFound
	}
	s := e.sess.Load()
	if s == nil {
		return nil, ErrNotFound // a blob entry
	}
	now := m.now()
	if !now.Before(m.deadline(s)) {
		return nil, ErrNotFound
	}
	if m.idle > 0 && now.Sub(s.LastSeen) >= TouchInterval {
		s = m.touch(id, e, now)
		if s == nil {
			return nil, ErrNotFound
		}
	}
	return s, nil
}

// touch records activity: a shallow copy of the record with the new
// LastSeen replaces the old one (slices are shared, both are read-only),
// and the cache TTL moves with the idle deadline. At most once per
// TouchInterval per session, so the allocations do not show per request.
func (m *MemoryStore) touch(id string, e *entry, now time.Time) *Session {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.dead.Load() {
		return nil
	}
	cur := e.sess.Load()
	if now.Sub(cur.LastSeen) < TouchInterval {
		return cur // another request touched it meanwhile
	}
	c := *cur
	c.LastSeen = now
	e.sess.Store(&c)
	if ttl := m.deadline(&c).Sub(now); ttl > 0 {
		// Holding e.mu orders this against Delete/replace, which mark e
		// dead under it first. If the cache evicted e meanwhile this
		// re-admits it, and the pending eviction callback marks it dead.
		m.cache.SetWithTTL(id, e, e.cost, ttl)
	}
	return &c
}

// Put implements Store.
func (m *MemoryStore) Put(_ context.Context, s *Session) error {
	if s == nil {
		return errors.New("session: put: nil session")
	}
	_, err := m.put(s.Clone(), true)
	return err
}

// put stores c, which it owns. Without wait the write is only queued (bulk
// restore waits once at the end); the returned entry is nil when nothing
// was queued.
func (m *MemoryStore) put(c *Session, wait bool) (*entry, error) {
	s := c
	if s == nil || s.ID == "" || len(s.ID) > MaxFieldSize || strings.IndexByte(s.ID, 0) >= 0 {
		return nil, errors.New("session: put: missing, oversized or invalid id")
	}
	now := m.now()
	if c.ExpiresAt.IsZero() {
		c.ExpiresAt = now.Add(m.lifetime)
	}
	if c.LastSeen.IsZero() {
		c.LastSeen = now
	}
	e := &entry{cost: sessionCost(c)}
	e.sess.Store(c)
	key := subjectKey{c.Issuer, c.Subject}

	m.mu.Lock()
	if at, ok := m.revoked[key]; ok && !c.CreatedAt.After(at) {
		m.mu.Unlock()
		m.log.LogAttrs(context.Background(), slog.LevelWarn, "session: write of a revoked subject's session refused",
			slog.String("session", HashID(c.ID)))
		return nil, fmt.Errorf("session: put: subject revoked: %w", ErrNotFound)
	}
	ttl := m.deadline(c).Sub(now)
	replaced := false
	if old, ok := m.cache.Get(c.ID); ok && old != nil {
		if ttl > 0 && m.replaceInPlace(old, c, e.cost) {
			// The live entry now carries c: readers never see a gap in
			// which the id is unknown. Killing the old entry first and
			// waiting for ristretto to admit the new one sent one request
			// of a 30-request refresh burst to the login page.
			e, replaced = old, true
		} else {
			m.kill(old)
		}
	}
	if ttl <= 0 {
		m.mu.Unlock()
		return nil, nil // already expired: nothing to keep
	}
	if !replaced {
		m.index(e)
	}
	// Under m.mu so that a concurrent DeleteSubject either sees e in the
	// index or runs entirely after this write.
	queued := m.cache.SetWithTTL(c.ID, e, e.cost, ttl)
	m.mu.Unlock()
	if !queued {
		// Dropped because the set buffer was full (a burst of writes):
		// let it drain and try once more.
		m.cache.Wait()
		m.mu.Lock()
		if !e.dead.Load() {
			m.cache.SetWithTTL(c.ID, e, e.cost, ttl)
		}
		m.mu.Unlock()
	}
	if !wait {
		return e, nil
	}

	// Read your writes: ristretto applies sets asynchronously.
	m.cache.Wait()
	if got, ok := m.cache.Get(c.ID); !ok || got != e {
		if e.dead.Load() {
			return e, nil // replaced or deleted concurrently
		}
		m.mu.Lock()
		m.kill(e)
		m.mu.Unlock()
		m.log.LogAttrs(context.Background(), slog.LevelWarn, "session: memory budget full, session not admitted",
			slog.String("session", HashID(c.ID)))
		return nil, fmt.Errorf("session: put: memory budget full: %w", ErrUnavailable)
	}
	return e, nil
}

// replaceInPlace swaps c into the live session entry old, keeping the
// indexes in step. m.mu must be held. It reports false when old is dead or
// holds a blob, and the caller then stores a new entry.
func (m *MemoryStore) replaceInPlace(old *entry, c *Session, cost int64) bool {
	old.mu.Lock()
	defer old.mu.Unlock()
	if old.dead.Load() || old.sess.Load() == nil {
		return false
	}
	m.unindex(old)
	old.sess.Store(c)
	old.cost = cost
	m.index(old)
	return true
}

// index adds e to the subject and sid indexes. m.mu must be held.
func (m *MemoryStore) index(e *entry) {
	s := e.sess.Load()
	add := func(idx map[subjectKey]map[string]*entry, k subjectKey) {
		ids := idx[k]
		if ids == nil {
			ids = make(map[string]*entry, 1)
			idx[k] = ids
		}
		ids[s.ID] = e
	}
	add(m.bySub, subjectKey{s.Issuer, s.Subject})
	if s.SID != "" {
		add(m.bySID, subjectKey{s.Issuer, s.SID})
	}
}

// kill marks e dead and removes it from the indexes if they still point at
// it. m.mu must be held. It does not touch the cache: ristretto's Del may
// block on its buffer while the eviction callback waits for m.mu.
func (m *MemoryStore) kill(e *entry) {
	e.mu.Lock()
	e.dead.Store(true)
	e.mu.Unlock()
	m.unindex(e)
}

// unindex removes e from the indexes if they still point at it. m.mu must
// be held.
func (m *MemoryStore) unindex(e *entry) {
	s := e.sess.Load()
	if s == nil {
		return
	}
	drop := func(idx map[subjectKey]map[string]*entry, k subjectKey) {
		if ids := idx[k]; ids[s.ID] == e {
			delete(ids, s.ID)
			if len(ids) == 0 {
				delete(idx, k)
			}
		}
	}
	drop(m.bySub, subjectKey{s.Issuer, s.Subject})
	if s.SID != "" {
		drop(m.bySID, subjectKey{s.Issuer, s.SID})
	}
}

// forget is the cache's eviction/rejection/expiry callback.
func (m *MemoryStore) forget(e *entry, why string) {
	if e == nil {
		return
	}
	m.mu.Lock()
	m.kill(e)
	m.mu.Unlock()
	if s := e.sess.Load(); s != nil && why == "evicted" && m.now().Before(m.deadline(s)) {
		m.log.LogAttrs(context.Background(), slog.LevelDebug, "session: evicted under memory pressure",
			slog.String("session", HashID(s.ID)))
	}
}

// Delete implements Store.
func (m *MemoryStore) Delete(_ context.Context, id string) error {
	m.mu.Lock()
	e, ok := m.cache.Get(id)
	if ok && e != nil && e.sess.Load() != nil {
		m.kill(e)
	}
	m.mu.Unlock()
	if ok && e != nil && e.sess.Load() != nil {
		m.cache.Del(id)
	}
	return nil
}

// deleteIndexed kills every entry under k in idx and returns how many were
// live.
func (m *MemoryStore) deleteIndexed(idx map[subjectKey]map[string]*entry, k subjectKey, revokeAt time.Time) int {
	m.mu.Lock()
	if !revokeAt.IsZero() {
		m.recordRevocation(k, revokeAt)
	}
	ids := idx[k]
	victims := make([]*entry, 0, len(ids))
	for _, e := range ids {
		victims = append(victims, e)
	}
	now := m.now()
	n := 0
	for _, e := range victims {
		if s := e.sess.Load(); now.Before(m.deadline(s)) {
			n++
		}
		m.kill(e)
	}
	m.mu.Unlock()
	for _, e := range victims {
		m.cache.Del(e.sess.Load().ID)
	}
	return n
}

// recordRevocation remembers when k was revoked, bounded. m.mu must be held.
func (m *MemoryStore) recordRevocation(k subjectKey, at time.Time) {
	if _, ok := m.revoked[k]; !ok && len(m.revoked) >= maxRevocations {
		cutoff := at.Add(-m.lifetime)
		var oldestK subjectKey
		var oldest time.Time
		for rk, t := range m.revoked {
			if t.Before(cutoff) {
				delete(m.revoked, rk)
				continue
			}
			if oldest.IsZero() || t.Before(oldest) {
				oldest, oldestK = t, rk
			}
		}
		if len(m.revoked) >= maxRevocations {
			delete(m.revoked, oldestK)
		}
	}
	m.revoked[k] = at
}

// DeleteSubject implements Store.
func (m *MemoryStore) DeleteSubject(_ context.Context, issuer, subject string) (int, error) {
	return m.deleteIndexed(m.bySub, subjectKey{issuer, subject}, m.now()), nil
}

// DeleteSID implements Store.
func (m *MemoryStore) DeleteSID(_ context.Context, issuer, sid string) (int, error) {
	if sid == "" {
		return 0, nil
	}
	return m.deleteIndexed(m.bySID, subjectKey{issuer, sid}, time.Time{}), nil
}

// List implements Store.
func (m *MemoryStore) List(_ context.Context, issuer, subject string) ([]*Session, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	ids := m.bySub[subjectKey{issuer, subject}]
	out := make([]*Session, 0, len(ids))
	for _, e := range ids {
		if s := e.sess.Load(); !e.dead.Load() && now.Before(m.deadline(s)) {
			out = append(out, s)
		}
	}
	return out, nil
}

// SubjectRevokedAt implements Store.
func (m *MemoryStore) SubjectRevokedAt(_ context.Context, issuer, subject string) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.revoked[subjectKey{issuer, subject}]
	return t, ok
}

// GetBlob implements Store.
func (m *MemoryStore) GetBlob(_ context.Context, key string) ([]byte, error) {
	e, ok := m.cache.Get(blobPrefix + key)
	if !ok || e == nil || e.blob == nil || !m.now().Before(e.blobExp) {
		return nil, ErrNotFound
	}
	return append([]byte(nil), e.blob...), nil
}

// PutBlob implements Store.
func (m *MemoryStore) PutBlob(_ context.Context, key string, b []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return errors.New("session: put blob: ttl must be positive")
	}
	e := &entry{blob: append(make([]byte, 0, len(b)+1), b...), blobExp: m.now().Add(ttl)}
	e.cost = int64(len(key)+len(b)) + int64(unsafe.Sizeof(entry{})) + 64
	k := blobPrefix + key
	m.cache.SetWithTTL(k, e, e.cost, ttl)
	m.cache.Wait()
	if got, ok := m.cache.Get(k); !ok || got != e {
		return fmt.Errorf("session: put blob: memory budget full: %w", ErrUnavailable)
	}
	return nil
}

// Close releases the cache. The store must not be used afterwards.
func (m *MemoryStore) Close() error {
	m.cache.Close()
	return nil
}

// sessionCost approximates the bytes a record holds: struct, strings,
// slices, the entry, two index slots and ristretto's own bookkeeping. The
// constants were calibrated with TestMillionSessions (Go heap in use per
// session vs. estimate); ristretto adds its internal item size on top.
func sessionCost(s *Session) int64 {
	const strHdr, sliceHdr, indexSlot, cacheOverhead = 16, 24, 300, 500
	n := int(unsafe.Sizeof(Session{})) + int(unsafe.Sizeof(entry{})) + 2*indexSlot + cacheOverhead
	for _, f := range [...]string{s.ID, s.Issuer, s.Subject, s.SID, s.Email, s.PreferredUsername,
		s.Name, s.ACR, s.IDToken, s.RefreshToken, s.IP, s.Country, s.DeviceID} {
		n += len(f)
	}
	for _, g := range s.Groups {
		n += strHdr + len(g)
	}
	for _, a := range s.AMR {
		n += strHdr + len(a)
	}
	for k, v := range s.Claims {
		n += 150 + len(k) + sliceHdr
		for _, x := range v {
			n += strHdr + len(x)
		}
	}
	return int64(n)
}
