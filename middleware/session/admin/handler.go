package admin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/edgeauth/edgeauth/middleware/session"
	"github.com/edgeauth/edgeauth/proxy/errpage"
)

// Options configures the admin handler. Zero values are documented per
// field.
type Options struct {
	// Store is the session store. Required.
	Store session.Store
	// Token is the admin bearer token (read by cmd/ from admin.token_file).
	// Required, at least MinTokenLen bytes; surrounding whitespace is the
	// caller's to trim.
	Token []byte
	// Issuer is used when a request has no ?iss=. Zero: iss is required.
	Issuer string
	// ForgetDevices makes the risk engine forget a user's known devices.
	// Zero: the endpoint answers 501.
	ForgetDevices func(ctx context.Context, iss, sub string) error
	// Audit receives one event per admin action. Zero: none.
	Audit func(action, sub, detail string, ok bool)
	// Logger receives technical failures. Zero: slog.Default().
	Logger *slog.Logger
	// Timeout bounds each request's store calls. Zero: 10s.
	Timeout time.Duration
}

// MinTokenLen is the shortest admin token accepted (128 bits of hex).
const MinTokenLen = 32

// Handler serves /admin/users/... and /admin/sessions/... .
type Handler struct {
	svc       *Service
	tokenHash [sha256.Size]byte
	log       *slog.Logger
	timeout   time.Duration
}

// New validates opts and returns the handler.
func New(opts Options) (*Handler, error) {
	if opts.Store == nil {
		return nil, errors.New("admin: no session store")
	}
	if len(opts.Token) < MinTokenLen {
		return nil, fmt.Errorf("admin: token of %d bytes, want at least %d", len(opts.Token), MinTokenLen)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Second
	}
	return &Handler{
		svc: &Service{store: opts.Store, issuer: opts.Issuer, forget: opts.ForgetDevices, audit: opts.Audit},
		// Comparing hashes keeps the compare constant-time in the length
		// too: subtle.ConstantTimeCompare returns at once on unequal lengths.
		tokenHash: sha256.Sum256(opts.Token),
		log:       opts.Logger,
		timeout:   opts.Timeout,
	}, nil
}

var bearerPrefix = []byte("Bearer ")

func (h *Handler) authorized(ctx *fasthttp.RequestCtx) bool {
	v := ctx.Request.Header.Peek(fasthttp.HeaderAuthorization)
	tok, ok := bytes.CutPrefix(v, bearerPrefix)
	if !ok || len(tok) == 0 {
		return false
	}
	got := sha256.Sum256(tok)
	return subtle.ConstantTimeCompare(got[:], h.tokenHash[:]) == 1
}

// Protect puts the admin token check in front of another admin handler
// (the profiler), with the same audit event on failure.
func (h *Handler) Protect(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		if h.refuse(ctx) {
			return
		}
		next(ctx)
	}
}

// refuse answers 401 and reports true when the request lacks the token.
func (h *Handler) refuse(ctx *fasthttp.RequestCtx) bool {
	if h.authorized(ctx) {
		return false
	}
	h.svc.emit(ActionAuthFailed, "", "path="+string(ctx.Path()), errors.New("unauthorized"))
	errpage.Write(ctx, fasthttp.StatusUnauthorized, "unauthorized", "A valid admin bearer token is required.")
	ctx.Response.Header.Set(fasthttp.HeaderWWWAuthenticate, `Bearer realm="edgeauth-admin"`)
	return true
}

// Handle serves one admin request.
func (h *Handler) Handle(ctx *fasthttp.RequestCtx) {
	if h.refuse(ctx) {
		return
	}
	r, err := ParsePath(string(ctx.URI().PathOriginal()))
	if err != nil {
		h.fail(ctx, err)
		return
	}
	method := string(ctx.Method())
	allow := map[RouteKind]string{RouteUserSessions: "GET, DELETE", RouteSession: "DELETE", RouteForgetDevices: "POST"}[r.Kind]
	c, cancel := context.WithTimeout(context.Background(), h.timeout)
	defer cancel()
	args := ctx.QueryArgs()
	iss := string(args.Peek("iss"))
	switch {
	case r.Kind == RouteUserSessions && method == fasthttp.MethodGet:
		views, err := h.svc.List(c, iss, r.Subject)
		if err != nil {
			h.fail(ctx, err)
			return
		}
		writeJSON(ctx, fasthttp.StatusOK, map[string]any{"subject": r.Subject, "sessions": views})
	case r.Kind == RouteUserSessions && method == fasthttp.MethodDelete:
		n, err := h.svc.RevokeAll(c, iss, r.Subject)
		if err != nil {
			h.fail(ctx, err)
			return
		}
		writeJSON(ctx, fasthttp.StatusOK, map[string]any{"subject": r.Subject, "revoked": n})
	case r.Kind == RouteSession && method == fasthttp.MethodDelete:
		if err := h.svc.RevokeOne(c, r.Ref, iss, string(args.Peek("sub"))); err != nil {
			h.fail(ctx, err)
			return
		}
		writeJSON(ctx, fasthttp.StatusOK, map[string]any{"revoked": 1})
	case r.Kind == RouteForgetDevices && method == fasthttp.MethodPost:
		if err := h.svc.ForgetDevices(c, iss, r.Subject); err != nil {
			h.fail(ctx, err)
			return
		}
		writeJSON(ctx, fasthttp.StatusOK, map[string]any{"subject": r.Subject, "forgotten": true})
	default:
		errpage.Write(ctx, fasthttp.StatusMethodNotAllowed, "method_not_allowed", "Method not allowed on this path.")
		ctx.Response.Header.Set(fasthttp.HeaderAllow, allow)
	}
}

// fail maps core errors to responses; causes of 5xx stay in the log.
func (h *Handler) fail(ctx *fasthttp.RequestCtx, err error) {
	switch {
	case errors.Is(err, ErrBadRequest):
		errpage.Write(ctx, fasthttp.StatusBadRequest, "bad_request", clientText(err))
	case errors.Is(err, ErrNotFound):
		errpage.Write(ctx, fasthttp.StatusNotFound, "not_found", "No such admin resource or session.")
	case errors.Is(err, ErrNotConfigured):
		errpage.Write(ctx, fasthttp.StatusNotImplemented, "not_configured", "This operation is not configured.")
	case errors.Is(err, session.ErrUnavailable):
		h.log.LogAttrs(context.Background(), slog.LevelError, "admin: session store unavailable", slog.String("error", err.Error()))
		errpage.Write(ctx, fasthttp.StatusServiceUnavailable, "store_unavailable", "The session store is unavailable; try again.")
	default:
		h.log.LogAttrs(context.Background(), slog.LevelError, "admin: request failed", slog.String("error", err.Error()))
		errpage.Write(ctx, fasthttp.StatusInternalServerError, "internal_error", "The operation failed; see the logs.")
	}
}

// clientText returns the message of a bad-request error, which we wrote
// ourselves and which holds no input.
func clientText(err error) string {
	s := err.Error()
	if i := bytes.LastIndex([]byte(s), []byte(": ")); i >= 0 {
		return s[i+2:]
	}
	return s
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		errpage.Write(ctx, fasthttp.StatusInternalServerError, "internal_error", "Encoding the response failed.")
		return
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	ctx.SetBody(append(b, '\n'))
}
