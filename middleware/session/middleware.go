package session

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"

	"github.com/edgeauth/edgeauth/middleware/reqstate"
	"github.com/valyala/fasthttp"
)

// MiddlewareOptions configures the session lookup middleware.
type MiddlewareOptions struct {
	// Codec verifies cookie values. Required.
	Codec *Codec
	// Cookie names the session cookie. Required.
	Cookie *Cookie
	// Store holds the sessions. Required.
	Store Store
	// Logger gets debug lines for rejected cookies (with a hashed id, never
	// the cookie) and warnings for store failures. Nil discards.
	Logger *slog.Logger
	// OnStoreError is called when the store fails for a technical reason
	// (anything but ErrNotFound, e.g. ErrUnavailable). If it returns true it
	// has written the response (say, a 503 page) and the chain stops. Nil,
	// or false, continues without a session: policy then asks for a login.
	OnStoreError func(ctx *fasthttp.RequestCtx, err error) (handled bool)
	// Refresh, when set, sees every live session before the state is
	// filled and returns the one to use: the same, or one renewed because
	// its tokens are about to expire (sso.RP.MaybeRefresh). An error makes
	// the request anonymous. It runs here rather than as a step of its own
	// so a request looks its session up once.
	Refresh func(ctx context.Context, s *Session) (*Session, error)
}

// Middleware returns the session lookup step. It reads the session cookie,
// verifies it, fetches the session and, when live, fills reqstate:
// Method=MethodSession, SessionID and Principal. It never writes a response
// for a bad cookie and always calls next, except when OnStoreError handles
// a store failure.
func Middleware(o MiddlewareOptions) (func(fasthttp.RequestHandler) fasthttp.RequestHandler, error) {
	switch {
	case o.Codec == nil:
		return nil, errors.New("session: middleware: nil Codec")
	case o.Cookie == nil:
		return nil, errors.New("session: middleware: nil Cookie")
	case o.Store == nil:
		return nil, errors.New("session: middleware: nil Store")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return func(next fasthttp.RequestHandler) fasthttp.RequestHandler {
		return func(ctx *fasthttp.RequestCtx) {
			if o.lookup(ctx) {
				return
			}
			next(ctx)
		}
	}, nil
}

// lookup fills the state from the cookie; it returns true when
// OnStoreError wrote the response.
func (o *MiddlewareOptions) lookup(ctx *fasthttp.RequestCtx) (handled bool) {
	v, ok := o.Cookie.Value(ctx)
	if !ok {
		if o.Logger.Enabled(ctx, slog.LevelDebug) && len(ctx.Request.Header.Cookie(o.Cookie.Name())) > 0 {
			o.Logger.LogAttrs(ctx, slog.LevelDebug, "session: duplicate session cookie ignored")
		}
		return false
	}
	id, ok := o.Codec.Decode(v)
	if !ok {
		o.Logger.LogAttrs(ctx, slog.LevelDebug, "session: invalid session cookie ignored",
			slog.Int("len", len(v)))
		return false
	}
	s, err := o.Store.Get(ctx, id)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			if o.Logger.Enabled(ctx, slog.LevelDebug) {
				o.Logger.LogAttrs(ctx, slog.LevelDebug, "session: unknown, expired or revoked session",
					slog.String("session", HashID(id)))
			}
			return false
		}
		o.Logger.LogAttrs(context.Background(), slog.LevelWarn, "session: store failed, treating request as anonymous",
			slog.String("session", HashID(id)), slog.String("error", err.Error()))
		if o.OnStoreError != nil {
			return o.OnStoreError(ctx, err)
		}
		return false
	}
	if o.Refresh != nil {
		if s, err = o.Refresh(context.Background(), s); err != nil {
			// Logged by the refresher; the user signs in again.
			return false
		}
	}
	st := reqstate.Get(ctx)
	st.Method = reqstate.MethodSession
	st.SessionID = id
	st.Principal = reqstate.Principal{
		Issuer:            s.Issuer,
		Subject:           s.Subject,
		Email:             s.Email,
		EmailVerified:     s.EmailVerified,
		PreferredUsername: s.PreferredUsername,
		Name:              s.Name,
		Groups:            s.Groups,
		ACR:               s.ACR,
		AMR:               s.AMR,
		AuthTime:          s.AuthTime,
		Claims:            s.Claims,
	}
	// An unparsable IP leaves AcceptedIP zero: nothing accepted.
	st.AcceptedIP, _ = netip.ParseAddr(s.IP)
	st.SessionFingerprint = s.Fingerprint
	return false
}
