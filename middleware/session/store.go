package session

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned by a Store when no live record exists for a key:
// unknown, expired or revoked. Callers treat it as "no session".
var ErrNotFound = errors.New("session: not found")

// ErrUnavailable wraps technical failures of a remote store (Redis down).
// Callers fail closed for new logins and may fall back to their L1 cache.
var ErrUnavailable = errors.New("session: store unavailable")

// Session is the server-side record behind a session cookie. Identity lives
// here, never in the cookie, so the cookie stays small however many groups a
// user has.
type Session struct {
	ID      string // opaque random id (base64url of 32 bytes); the cookie carries it signed
	Issuer  string
	Subject string
	// SID is the provider's session id claim, used by back-channel logout.
	SID string

	Email             string
	EmailVerified     bool
	PreferredUsername string
	Name              string
	Groups            []string
	Claims            map[string][]string
	ACR               string
	AMR               []string
	AuthTime          time.Time

	// IDToken is kept for RP-initiated logout (id_token_hint).
	IDToken      string
	RefreshToken string
	// TokenExpiry is when the ID/access token expires; with a refresh token
	// the session is renewed before then.
	TokenExpiry time.Time

	CreatedAt time.Time
	LastSeen  time.Time
	ExpiresAt time.Time // absolute lifetime end

	// Where and from what the session was created or last stepped up.
	IP       string
	Country  string
	DeviceID string
	// Fingerprint is the device fingerprint seen at login; a change within the
	// session is a risk signal (cookie moved to another device).
	Fingerprint uint64

	// StepUpFailures counts failed or abandoned step-ups.
	StepUpFailures int
	// Version increases on every write; stores may use it for optimistic
	// concurrency.
	Version uint64
}

// TouchInterval is how often a store records activity of a session for the
// idle timeout. Writing LastSeen on every request would turn every read into
// a write (and, for Redis, a round trip); once a minute keeps the idle
// timeout exact to within a minute at a negligible cost.
const TouchInterval = time.Minute

// Store keeps sessions. Every implementation runs the conformance suite in
// storetest. Get returns ErrNotFound for unknown, expired and revoked ids.
// Returned *Session values are shared and must not be modified; use Clone.
// Stores take their clock as an injected Now func() time.Time and use it for
// every expiry decision.
type Store interface {
	// Get returns the live session. A successful Get is activity for the
	// idle timeout: when LastSeen is TouchInterval or more in the past the
	// store advances it to now (without rewriting the record where it can).
	// A session whose subject was revoked (DeleteSubject) at or after its
	// CreatedAt is not live, even if it was Put again afterwards: that
	// closes the race where an in-flight refresh writes back a session an
	// administrator just revoked.
	Get(ctx context.Context, id string) (*Session, error)
	// Put inserts or replaces a record; a following Get sees it (stores with
	// asynchronous caches wait for the write). The store keeps its own copy:
	// the caller may modify s afterwards. The store expires the record at
	// min(ExpiresAt, LastSeen+idle timeout).
	Put(ctx context.Context, s *Session) error
	// Delete revokes one session. Deleting an unknown id is not an error.
	Delete(ctx context.Context, id string) error
	// DeleteSubject revokes every session of issuer+subject and returns how
	// many were removed. It also records the revocation time so that bearer
	// tokens of that subject issued before it stop passing.
	DeleteSubject(ctx context.Context, issuer, subject string) (int, error)
	// DeleteSID revokes the sessions created under a provider session id.
	DeleteSID(ctx context.Context, issuer, sid string) (int, error)
	// List returns the live sessions of a subject.
	List(ctx context.Context, issuer, subject string) ([]*Session, error)
	// SubjectRevokedAt returns when DeleteSubject last ran for the subject.
	SubjectRevokedAt(ctx context.Context, issuer, subject string) (time.Time, bool)
	// GetBlob and PutBlob store opaque per-key data of other concerns (risk
	// history) with its own TTL; GetBlob returns ErrNotFound when absent.
	GetBlob(ctx context.Context, key string) ([]byte, error)
	PutBlob(ctx context.Context, key string, b []byte, ttl time.Duration) error
	Close() error
}

// Clone returns a deep copy safe to modify.
func (s *Session) Clone() *Session {
	c := *s
	c.Groups = append([]string(nil), s.Groups...)
	c.AMR = append([]string(nil), s.AMR...)
	if s.Claims != nil {
		c.Claims = make(map[string][]string, len(s.Claims))
		for k, v := range s.Claims {
			c.Claims[k] = append([]string(nil), v...)
		}
	}
	return &c
}
