package risk

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/netip"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/edgeauth/edgeauth/middleware/reqstate"
	"github.com/edgeauth/edgeauth/middleware/risk/device"
	"github.com/edgeauth/edgeauth/middleware/risk/geoip"
)

// HistoryStore keeps encoded histories. session.Store satisfies it.
type HistoryStore interface {
	GetBlob(ctx context.Context, key string) ([]byte, error)
	PutBlob(ctx context.Context, key string, b []byte, ttl time.Duration) error
}

// ServiceOptions configure a Service.
type ServiceOptions struct {
	// Engine evaluates the rules. Required.
	Engine *Engine
	// Locator resolves client IPs. Nil means every location is unknown.
	Locator geoip.Locator
	// Store keeps histories. Required.
	Store HistoryStore
	// IsNotFound tells "no history yet" apart from a failing store. Nil
	// means errors.Is(err, NotFound) for the NotFound field. A not-found
	// history is empty; any other error is an empty history plus the
	// assessment_unavailable reason (fail closed to step-up).
	IsNotFound func(error) bool
	// NotFound is the store's not-found sentinel (session.ErrNotFound).
	// Nil with a nil IsNotFound means every error counts as a failure.
	NotFound error
	// L1MaxBytes bounds the in-process cache of decoded histories. Zero
	// means 64 MiB; negative disables it.
	L1MaxBytes int64
	// L1TTL is how long a decoded history is trusted before the store is
	// asked again; it bounds how stale another instance's binding can be.
	// Zero means one minute.
	L1TTL time.Duration
	// TouchInterval bounds history writes for allowed requests to one per
	// interval per subject unless the location changed. Zero means 5 min.
	TouchInterval time.Duration
	// StoreTimeout bounds each store call. Zero means 2 s.
	StoreTimeout time.Duration
	// KeyPrefix prefixes store keys. "" means "risk/v1/".
	KeyPrefix string
	// Logger. Nil means slog.Default().
	Logger *slog.Logger
}

type l1Entry struct {
	iss, sub string
	h        *History
}

// Service runs the signals through the engine for one subject: GeoIP,
// fingerprint, history load, evaluation, and history updates. The proxy
// middleware and replay both go through it, so they score identically.
type Service struct {
	eng      *Engine
	loc      geoip.Locator
	store    HistoryStore
	notFound func(error) bool
	l1       *ristretto.Cache[uint64, *l1Entry]
	l1TTL    time.Duration
	touch    time.Duration
	timeout  time.Duration
	prefix   string
	seed     maphash.Seed
	log      *slog.Logger
}

// NewService validates o and builds the L1 cache.
func NewService(o ServiceOptions) (*Service, error) {
	if o.Engine == nil || o.Store == nil {
		return nil, errors.New("risk: service needs an engine and a history store")
	}
	s := &Service{eng: o.Engine, loc: o.Locator, store: o.Store, notFound: o.IsNotFound,
		l1TTL: o.L1TTL, touch: o.TouchInterval, timeout: o.StoreTimeout, prefix: o.KeyPrefix,
		seed: maphash.MakeSeed(), log: o.Logger}
	if s.notFound == nil {
		nf := o.NotFound
		s.notFound = func(err error) bool { return nf != nil && errors.Is(err, nf) }
	}
	if s.l1TTL <= 0 {
		s.l1TTL = time.Minute
	}
	if s.touch <= 0 {
		s.touch = 5 * time.Minute
	}
	if s.timeout <= 0 {
		s.timeout = 2 * time.Second
	}
	if s.prefix == "" {
		s.prefix = "risk/v1/"
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if o.L1MaxBytes >= 0 {
		max := o.L1MaxBytes
		if max == 0 {
			max = 64 << 20
		}
		c, err := ristretto.NewCache(&ristretto.Config[uint64, *l1Entry]{
			NumCounters: max / 20, // ~10 counters per expected entry of ~200 B
			MaxCost:     max,
			BufferItems: 64,
		})
		if err != nil {
			return nil, fmt.Errorf("risk: l1 cache: %w", err)
		}
		s.l1 = c
	}
	return s, nil
}

// Close releases the L1 cache.
func (s *Service) Close() {
	if s.l1 != nil {
		s.l1.Close()
	}
}

// Engine returns the engine.
func (s *Service) Engine() *Engine { return s.eng }

// WaitL1 blocks until pending L1 writes are applied (tests, replay).
func (s *Service) WaitL1() {
	if s.l1 != nil {
		s.l1.Wait()
	}
}

func (s *Service) l1Key(iss, sub string) uint64 {
	var h maphash.Hash
	h.SetSeed(s.seed)
	h.WriteString(iss)
	h.WriteByte(0)
	h.WriteString(sub)
	return h.Sum64()
}

// StoreKey is the store key of a subject's history: a hash, so subjects
// (often e-mail addresses) do not appear in Redis key names and cannot
// inject key syntax.
func (s *Service) StoreKey(iss, sub string) string {
	sum := sha256.Sum256([]byte(iss + "\x00" + sub))
	return s.prefix + hex.EncodeToString(sum[:16])
}

// Locate resolves ip; a lookup error is logged and gives an unknown
// location with ok=false.
func (s *Service) Locate(ip netip.Addr) (reqstate.Location, bool) {
	if s.loc == nil {
		return reqstate.Location{}, true
	}
	loc, err := s.loc.Locate(ip)
	if err != nil {
		s.log.LogAttrs(context.Background(), slog.LevelWarn, "risk: geoip lookup failed", slog.Any("error", err))
		return reqstate.Location{}, false
	}
	return loc, true
}

// Load returns the subject's history (read-only; nil when none) and
// whether the store failed. An L1 hit costs no allocation.
func (s *Service) Load(ctx context.Context, iss, sub string) (*History, bool) {
	k := s.l1Key(iss, sub)
	if s.l1 != nil {
		if e, ok := s.l1.Get(k); ok && e.iss == iss && e.sub == sub {
			return e.h, false
		}
	}
	return s.loadStore(ctx, iss, sub, k)
}

func (s *Service) loadStore(ctx context.Context, iss, sub string, k uint64) (*History, bool) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	b, err := s.store.GetBlob(ctx, s.StoreKey(iss, sub))
	if err != nil {
		if s.notFound(err) {
			s.cache(k, iss, sub, &History{})
			return nil, false
		}
		s.log.LogAttrs(ctx, slog.LevelWarn, "risk: history store failed", slog.Any("error", err))
		return nil, true
	}
	h := new(History)
	if err := h.UnmarshalBinary(b); err != nil {
		// A corrupt blob is a technical failure: fail closed, and let the
		// next successful login overwrite it.
		s.log.LogAttrs(ctx, slog.LevelWarn, "risk: history corrupt", slog.Any("error", err))
		return nil, true
	}
	s.cache(k, iss, sub, h)
	return h, false
}

func (s *Service) cache(k uint64, iss, sub string, h *History) {
	if s.l1 == nil {
		return
	}
	cost := int64(96 + len(iss) + len(sub) + 40*len(h.Devices) + 16*len(h.Countries) + 16*len(h.ASNs))
	// Delete first: ristretto may drop a Set under contention, and a
	// dropped Set must leave no stale history behind (a forgotten device
	// would still count as known).
	s.l1.Del(k)
	s.l1.SetWithTTL(k, &l1Entry{iss: iss, sub: sub, h: h}, cost, s.l1TTL)
}

func (s *Service) save(ctx context.Context, iss, sub string, h *History) error {
	b, err := h.MarshalBinary()
	if err != nil {
		return fmt.Errorf("risk: encode history: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.store.PutBlob(ctx, s.StoreKey(iss, sub), b, s.eng.lim.TTL); err != nil {
		// Forget the L1 copy too: the store is the truth.
		if s.l1 != nil {
			s.l1.Del(s.l1Key(iss, sub))
		}
		return fmt.Errorf("risk: save history: %w", err)
	}
	s.cache(s.l1Key(iss, sub), iss, sub, h)
	return nil
}

// Request is one request's raw signals.
type Request struct {
	Issuer, Subject string
	IP              netip.Addr
	Traits          device.Traits
	// DeviceID is from a verified device cookie (zero if none).
	DeviceID device.ID
	// SessionFingerprint is the fingerprint stored with the session at
	// login or step-up (0 if unknown).
	SessionFingerprint uint64
	// AcceptedIP is the address the session passed its last login or
	// step-up risk check from (zero if none): see Input.AcceptedNetwork.
	AcceptedIP netip.Addr
	// Bearer marks an API client presenting a token: it has no device
	// cookie, and no login event of its own (see Allowed).
	Bearer bool
}

// Assessment is the outcome of Assess.
type Assessment struct {
	Location    reqstate.Location
	Fingerprint uint64
	Result      Result
	// History is the snapshot evaluated against (read-only; nil if none).
	History *History
	// Bearer is copied from the Request.
	Bearer bool
}

// Assess locates the request, fingerprints it, loads the history and
// evaluates the rules at now. It does not write anything.
func (s *Service) Assess(ctx context.Context, r *Request, now time.Time, a *Assessment) {
	loc, locOK := s.Locate(r.IP)
	h, unavailable := s.Load(ctx, r.Issuer, r.Subject)
	a.Location = loc
	a.Fingerprint = device.Compute(r.Traits)
	a.History = h
	a.Bearer = r.Bearer
	s.eng.Evaluate(Input{
		NoDevice:           r.Bearer,
		Location:           loc,
		DeviceID:           r.DeviceID,
		Fingerprint:        a.Fingerprint,
		SessionFingerprint: r.SessionFingerprint,
		HintsMismatch:      device.HintsMismatch(r.Traits),
		Unavailable:        unavailable || !locOK,
		AcceptedNetwork:    r.AcceptedIP.IsValid() && r.AcceptedIP == r.IP,
	}, h, now, &a.Result)
}

// Allowed records an allowed request (last location and time), writing
// at most once per TouchInterval per subject unless the location moved.
func (s *Service) Allowed(ctx context.Context, iss, sub string, a *Assessment, id device.ID, now time.Time) error {
	if !a.History.NeedsTouch(a.Location, now, s.touch) {
		return nil
	}
	h := a.History.Clone()
	if a.Bearer {
		// A token client has no login event here: its tokens were issued
		// after an authentication at the provider. A request that passed
		// the risk check is that client's "login", so its country and
		// network become known — otherwise every API client would be asked
		// to step up from its second request on (new_country, never
		// recorded). A request that did not pass never gets here.
		h.RecordSuccess(a.Location, device.ID{}, 0, now, s.eng.lim)
	} else {
		h.Touch(a.Location, id, a.Fingerprint, now, s.eng.lim)
	}
	return s.save(ctx, iss, sub, h)
}

// BindDevice records a successful login or step-up: the device id with
// its fingerprint becomes known and the location becomes the last one.
// It re-reads the store (not the L1) to lose as few concurrent updates as
// possible; the write is last-writer-wins.
func (s *Service) BindDevice(ctx context.Context, iss, sub string, loc reqstate.Location, id device.ID, fp uint64, now time.Time) error {
	gctx, cancel := context.WithTimeout(ctx, s.timeout)
	b, err := s.store.GetBlob(gctx, s.StoreKey(iss, sub))
	cancel()
	h := new(History)
	switch {
	case err == nil:
		if uerr := h.UnmarshalBinary(b); uerr != nil {
			// Only a corrupt blob is replaced; a history we could not
			// read because the store failed is never overwritten, or
			// every known device would be forgotten.
			s.log.LogAttrs(ctx, slog.LevelWarn, "risk: replacing corrupt history", slog.Any("error", uerr))
			h = new(History)
		}
	case s.notFound(err):
	default:
		return fmt.Errorf("risk: bind device: %w", err)
	}
	h.RecordSuccess(loc, id, fp, now, s.eng.lim)
	return s.save(ctx, iss, sub, h)
}

// ForgetDevices drops every known device of a subject, so the next request
// from any device counts as a new device (the admin "forget devices" call,
// e.g. after a laptop was stolen). Countries, networks and the last
// location are kept: they are not what the operator distrusts.
func (s *Service) ForgetDevices(ctx context.Context, iss, sub string) error {
	gctx, cancel := context.WithTimeout(ctx, s.timeout)
	b, err := s.store.GetBlob(gctx, s.StoreKey(iss, sub))
	cancel()
	switch {
	case s.notFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("risk: forget devices: %w", err)
	}
	h := new(History)
	if err := h.UnmarshalBinary(b); err != nil {
		h = new(History) // corrupt: nothing worth keeping
	}
	h.Devices = nil
	return s.save(ctx, iss, sub, h)
}

// Thresholds map a score to a decision for one route: replay's fallback
// when it is given no Decide function (tests, bench/riskeval). The proxy
// decides with middleware/policy, and `edgeauth risk replay` passes the
// same policy rules to replay, so the two cannot disagree.
type Thresholds struct {
	// StepUpAt is the score at or above which step-up is required. Zero
	// means 40.
	StepUpAt int
	// DenyAt is the score at or above which the request is denied. Zero
	// means never: by default behavioural signals only ever ask for a
	// step-up, and only hard-deny reasons deny.
	DenyAt int
}

// Decide maps a result to allow, step_up or deny.
func (t Thresholds) Decide(r *Result) reqstate.Decision {
	step := t.StepUpAt
	if step == 0 {
		step = 40
	}
	switch {
	case r.HardDeny:
		return reqstate.DecisionDeny
	case t.DenyAt > 0 && r.Score >= t.DenyAt:
		return reqstate.DecisionDeny
	case r.Score >= step:
		return reqstate.DecisionStepUp
	default:
		return reqstate.DecisionAllow
	}
}

var errMissing = errors.New("risk: middleware needs a service and a cookie codec")
