// Package admin implements the session part of the admin API: list a
// user's sessions, revoke one or all of them (the offboarding call) and
// forget a user's known devices. The core (Service, ParsePath) does not
// import fasthttp; handler.go adapts it.
//
// Trust boundary: the admin listener is loopback by default, and every
// request must carry the admin bearer token (compared in constant time);
// anything else is answered 401 before a path is even parsed. Raw session
// ids are credentials: they are accepted as input but never returned or
// logged — responses and audit events carry HashID(id) instead. Every
// action, failed authentication included, is an audit event.
package admin

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/edgeauth/edgeauth/middleware/session"
)

// HashID returns the first 16 hex digits of SHA-256(id): enough to tell a
// user's sessions (or devices) apart, useless to hijack one.
func HashID(id string) string { return session.HashID(id) }

// SessionView is what the API shows of a session.
type SessionView struct {
	ID       string    `json:"id"` // HashID of the session id
	Created  time.Time `json:"created"`
	LastSeen time.Time `json:"last_seen"`
	Expires  time.Time `json:"expires"`
	IP       string    `json:"ip"`
	Country  string    `json:"country"`
	Device   string    `json:"device"` // HashID of the device id, "" when none
	ACR      string    `json:"acr,omitempty"`
}

// Limits on path and query values, checked before any store call.
const (
	// MaxSubjectLen is OpenID Connect Core §2's limit on "sub".
	MaxSubjectLen = 255
	// MaxIssuerLen bounds an issuer URL.
	MaxIssuerLen = 2048
)

// Errors the adapter maps to status codes.
var (
	ErrBadRequest = errors.New("admin: bad request")
	ErrNotFound   = errors.New("admin: not found")
	// ErrNotConfigured is returned when an optional dependency (forgetting
	// devices) was not provided.
	ErrNotConfigured = errors.New("admin: not configured")
)

// Service is the admin core. Create it with New.
type Service struct {
	store  session.Store
	issuer string
	forget func(ctx context.Context, iss, sub string) error
	audit  func(action, sub, detail string, ok bool)
}

// Audit actions.
const (
	ActionAuthFailed    = "admin.auth_failed"
	ActionList          = "sessions.list"
	ActionRevoke        = "sessions.revoke"
	ActionRevokeAll     = "sessions.revoke_all"
	ActionForgetDevices = "devices.forget"
)

func (s *Service) emit(action, sub, detail string, err error) {
	if s.audit != nil {
		s.audit(action, sub, detail, err == nil)
	}
}

func (s *Service) iss(iss string) (string, error) {
	if iss == "" {
		iss = s.issuer
	}
	if iss == "" {
		return "", fmt.Errorf("%w: iss is required", ErrBadRequest)
	}
	if len(iss) > MaxIssuerLen {
		return "", fmt.Errorf("%w: iss longer than %d bytes", ErrBadRequest, MaxIssuerLen)
	}
	return iss, nil
}

// List returns the live sessions of iss+sub (iss "" = the default issuer).
func (s *Service) List(ctx context.Context, iss, sub string) (views []SessionView, err error) {
	defer func() { s.emit(ActionList, sub, fmt.Sprintf("iss=%s n=%d", iss, len(views)), err) }()
	if iss, err = s.iss(iss); err != nil {
		return nil, err
	}
	l, err := s.store.List(ctx, iss, sub)
	if err != nil {
		return nil, fmt.Errorf("admin: list: %w", err)
	}
	views = make([]SessionView, 0, len(l))
	for _, x := range l {
		v := SessionView{
			ID: HashID(x.ID), Created: x.CreatedAt.UTC(), LastSeen: x.LastSeen.UTC(), Expires: x.ExpiresAt.UTC(),
			IP: x.IP, Country: x.Country, ACR: x.ACR,
		}
		if x.DeviceID != "" {
			v.Device = HashID(x.DeviceID)
		}
		views = append(views, v)
	}
	return views, nil
}

// isHash reports whether ref has the form HashID returns.
func isHash(ref string) bool {
	if len(ref) != 16 {
		return false
	}
	for i := 0; i < len(ref); i++ {
		if c := ref[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// RevokeOne revokes the session ref names: a raw session id, or its
// HashID together with the subject (a hash is resolved among that
// subject's sessions; a store cannot be searched by hash).
func (s *Service) RevokeOne(ctx context.Context, ref, iss, sub string) (err error) {
	detail := "session=" + HashID(ref)
	if isHash(ref) {
		detail = "session=" + ref
	}
	defer func() { s.emit(ActionRevoke, sub, detail, err) }()
	id := ref
	if isHash(ref) {
		if sub == "" {
			return fmt.Errorf("%w: sub is required to revoke a session by its hash", ErrBadRequest)
		}
		if iss, err = s.iss(iss); err != nil {
			return err
		}
		l, err := s.store.List(ctx, iss, sub)
		if err != nil {
			return fmt.Errorf("admin: revoke: %w", err)
		}
		id = ""
		for _, x := range l {
			if HashID(x.ID) == ref {
				id = x.ID
			}
		}
		if id == "" {
			return fmt.Errorf("%w: no such session", ErrNotFound)
		}
	} else {
		x, err := s.store.Get(ctx, id)
		if errors.Is(err, session.ErrNotFound) {
			return fmt.Errorf("%w: no such session", ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("admin: revoke: %w", err)
		}
		if sub == "" {
			sub = x.Subject
		}
	}
	if err := s.store.Delete(ctx, id); err != nil {
		return fmt.Errorf("admin: revoke: %w", err)
	}
	return nil
}

// RevokeAll revokes every session of iss+sub and blocks the subject's
// bearer tokens issued before now (Store.DeleteSubject).
func (s *Service) RevokeAll(ctx context.Context, iss, sub string) (n int, err error) {
	defer func() { s.emit(ActionRevokeAll, sub, fmt.Sprintf("iss=%s n=%d", iss, n), err) }()
	if iss, err = s.iss(iss); err != nil {
		return 0, err
	}
	n, err = s.store.DeleteSubject(ctx, iss, sub)
	if err != nil {
		return 0, fmt.Errorf("admin: revoke all: %w", err)
	}
	return n, nil
}

// ForgetDevices makes the risk engine forget the subject's known devices.
func (s *Service) ForgetDevices(ctx context.Context, iss, sub string) (err error) {
	defer func() { s.emit(ActionForgetDevices, sub, "iss="+iss, err) }()
	if s.forget == nil {
		return fmt.Errorf("%w: forgetting devices", ErrNotConfigured)
	}
	if iss, err = s.iss(iss); err != nil {
		return err
	}
	if err := s.forget(ctx, iss, sub); err != nil {
		return fmt.Errorf("admin: forget devices: %w", err)
	}
	return nil
}

// Route is a parsed admin path.
type Route struct {
	Kind    RouteKind
	Subject string // unescaped, for the user routes
	Ref     string // unescaped, for RouteSession
}

// RouteKind names an admin endpoint.
type RouteKind uint8

// The order of these constants never changes.
const (
	RouteUnknown       RouteKind = iota
	RouteUserSessions            // /admin/users/{sub}/sessions
	RouteSession                 // /admin/sessions/{id}
	RouteForgetDevices           // /admin/users/{sub}/devices/forget
)

// ParsePath parses an escaped request path (without query). Segments are
// split before unescaping, so a subject may contain "/" as %2F without
// reaching another route; an empty, over-long or badly escaped segment is
// ErrBadRequest, an unknown shape ErrNotFound.
func ParsePath(escaped string) (Route, error) {
	rest, ok := strings.CutPrefix(escaped, "/admin/")
	if !ok {
		return Route{}, ErrNotFound
	}
	seg := strings.Split(rest, "/")
	unesc := func(s string, max int) (string, error) {
		v, err := url.PathUnescape(s)
		if err != nil || v == "" || len(v) > max {
			return "", fmt.Errorf("%w: invalid path segment", ErrBadRequest)
		}
		for i := 0; i < len(v); i++ {
			if v[i] < 0x20 || v[i] == 0x7f {
				return "", fmt.Errorf("%w: control character in path segment", ErrBadRequest)
			}
		}
		return v, nil
	}
	switch {
	case len(seg) == 3 && seg[0] == "users" && seg[2] == "sessions":
		sub, err := unesc(seg[1], MaxSubjectLen)
		return Route{Kind: RouteUserSessions, Subject: sub}, err
	case len(seg) == 4 && seg[0] == "users" && seg[2] == "devices" && seg[3] == "forget":
		sub, err := unesc(seg[1], MaxSubjectLen)
		return Route{Kind: RouteForgetDevices, Subject: sub}, err
	case len(seg) == 2 && seg[0] == "sessions":
		ref, err := unesc(seg[1], session.IDLen)
		if err == nil && !isHash(ref) && !isID(ref) {
			err = fmt.Errorf("%w: not a session id or hash", ErrBadRequest)
		}
		return Route{Kind: RouteSession, Ref: ref}, err
	}
	return Route{}, ErrNotFound
}

// isID reports whether ref looks like a session id (base64url, IDLen).
func isID(ref string) bool {
	if len(ref) != session.IDLen {
		return false
	}
	for i := 0; i < len(ref); i++ {
		c := ref[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
