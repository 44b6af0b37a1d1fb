package risk

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/edgeauth/edgeauth/middleware/reqstate"
	"github.com/edgeauth/edgeauth/middleware/risk/device"
	"github.com/valyala/fasthttp"
)

// MiddlewareOptions configure the fasthttp adapter.
type MiddlewareOptions struct {
	// Service does the work. Required.
	Service *Service
	// Cookie signs device cookies. Required.
	Cookie *device.CookieCodec
	// CookieName is the device cookie. "" means "edgeauth_device".
	CookieName string
	// CookieLifetime is the device cookie's Max-Age. Zero means 365 days.
	CookieLifetime time.Duration
	// CookieDomain scopes the cookie. "" means host-only (safest).
	CookieDomain string
	// Insecure leaves the Secure attribute off the device cookie, for
	// plain-HTTP development only. Zero: Secure.
	Insecure bool
	// ShadowDecision returns what a shadow-mode route would have decided
	// (policy.ShadowDecision; DecisionNone when not in shadow mode). A
	// request that shadow mode let through but would have stepped up or
	// denied is not written to history: otherwise a stolen cookie used once
	// on a shadow route would make its location the user's last one, and
	// the enforcing routes would no longer see impossible travel. Nil
	// means no route is in shadow mode.
	ShadowDecision func(ctx *fasthttp.RequestCtx) reqstate.Decision
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Rand is the source of device ids. Nil means crypto/rand.
	Rand io.Reader
	// Logger. Nil means slog.Default().
	Logger *slog.Logger
}

var (
	hdrSecCHUA         = []byte("Sec-CH-UA")
	hdrSecCHUAPlatform = []byte("Sec-CH-UA-Platform")
	hdrSecCHUAMobile   = []byte("Sec-CH-UA-Mobile")
	hdrAcceptLanguage  = []byte("Accept-Language")
)

// Middleware returns the risk step. For every request it fills
// state.Location (audit wants it). For authenticated requests it also reads
// (or issues) the device cookie, computes the fingerprint, evaluates the
// rules and writes state.DeviceID, Fingerprint, RiskScore and the reasons;
// after the rest of the chain has run, an allowed request updates the
// user's last location (rate-bounded). It never writes a response: the
// decision is policy's.
func Middleware(o MiddlewareOptions) (func(fasthttp.RequestHandler) fasthttp.RequestHandler, error) {
	if o.Service == nil || o.Cookie == nil {
		return nil, errMissing
	}
	name := o.CookieName
	if name == "" {
		name = "edgeauth_device"
	}
	nameB := []byte(name)
	life := o.CookieLifetime
	if life <= 0 {
		life = 365 * 24 * time.Hour
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	svc := o.Service
	return func(next fasthttp.RequestHandler) fasthttp.RequestHandler {
		return func(ctx *fasthttp.RequestCtx) {
			st := reqstate.Get(ctx)
			if !st.Authenticated() {
				st.Location, _ = svc.Locate(st.ClientIP)
				next(ctx)
				return
			}
			h := &ctx.Request.Header
			bearer := st.Method == reqstate.MethodBearer || st.Method == reqstate.MethodDPoP
			var id device.ID
			var err error
			if bearer {
				// API clients get no device cookie: they would not keep it.
			} else if id, err = o.Cookie.Decode(h.CookieBytes(nameB)); err != nil {
				// No or invalid cookie: a new device as far as we know.
				// The new id only becomes "known" at the next login or
				// step-up (BindDevice), never by being presented.
				if nid, rerr := device.NewID(o.Rand); rerr == nil {
					setCookie(ctx, name, o.Cookie.Encode(nid), o.CookieDomain, life, !o.Insecure)
					id = nid
				} else {
					log.LogAttrs(ctx, slog.LevelError, "risk: device id", slog.Any("error", rerr))
				}
				// This request is still scored as "no device cookie".
				st.DeviceID = id.String()
				id = device.ID{}
			} else {
				st.DeviceID = id.String()
			}
			req := Request{
				Issuer:  st.Principal.Issuer,
				Subject: st.Principal.Subject,
				IP:      st.ClientIP,
				Traits: device.Traits{
					UserAgent:       h.UserAgent(),
					AcceptLanguage:  h.PeekBytes(hdrAcceptLanguage),
					SecCHUA:         h.PeekBytes(hdrSecCHUA),
					SecCHUAPlatform: h.PeekBytes(hdrSecCHUAPlatform),
					SecCHUAMobile:   h.PeekBytes(hdrSecCHUAMobile),
					JA4:             st.TLSFingerprint,
				},
				DeviceID: id,
				Bearer:   bearer,
			}
			req.SessionFingerprint = st.SessionFingerprint
			req.AcceptedIP = st.AcceptedIP
			t := reqstate.NowOr(ctx, o.Now)
			var a Assessment
			svc.Assess(context.Background(), &req, t, &a)
			st.Location = a.Location
			st.Fingerprint = a.Fingerprint
			st.RiskScore = a.Result.Score
			for _, r := range a.Result.List() {
				st.AddReason(r.String())
			}
			next(ctx)
			if st.Decision == reqstate.DecisionAllow && !shadowHeld(ctx, o.ShadowDecision) {
				if err := svc.Allowed(context.Background(), req.Issuer, req.Subject, &a, id, t); err != nil {
					log.LogAttrs(ctx, slog.LevelWarn, "risk: history update failed", slog.Any("error", err))
				}
			}
		}
	}, nil
}

// shadowHeld reports whether shadow mode let through a request that
// enforcement would have held (step-up or deny).
func shadowHeld(ctx *fasthttp.RequestCtx, shadow func(*fasthttp.RequestCtx) reqstate.Decision) bool {
	if shadow == nil {
		return false
	}
	d := shadow(ctx)
	return d != reqstate.DecisionNone && d != reqstate.DecisionAllow
}

func setCookie(ctx *fasthttp.RequestCtx, name, value, domain string, life time.Duration, secure bool) {
	c := fasthttp.AcquireCookie()
	defer fasthttp.ReleaseCookie(c)
	c.SetKey(name)
	c.SetValue(value)
	c.SetPath("/")
	if domain != "" {
		c.SetDomain(domain)
	}
	c.SetMaxAge(int(life / time.Second))
	c.SetHTTPOnly(true)
	c.SetSecure(secure)
	// Lax: the cookie must ride along on the top-level redirect back from
	// the provider, where the login hook binds it.
	c.SetSameSite(fasthttp.CookieSameSiteLaxMode)
	ctx.Response.Header.SetCookie(c)
}

// BindDevice is the login/step-up hook: after a successful login or
// step-up, bind the request's device cookie (issuing one if the request had
// none, so the browser that just authenticated is the one remembered) with
// its fingerprint and record the location. It returns the fingerprint so
// the caller can store it in the session (fingerprint_changed check).
func BindDevice(ctx *fasthttp.RequestCtx, o *MiddlewareOptions, iss, sub string) (uint64, error) {
	st := reqstate.Get(ctx)
	name := o.CookieName
	if name == "" {
		name = "edgeauth_device"
	}
	h := &ctx.Request.Header
	id, err := o.Cookie.Decode(h.Cookie(name))
	if err != nil {
		if id, err = device.NewID(o.Rand); err != nil {
			return 0, err
		}
		life := o.CookieLifetime
		if life <= 0 {
			life = 365 * 24 * time.Hour
		}
		setCookie(ctx, name, o.Cookie.Encode(id), o.CookieDomain, life, !o.Insecure)
	}
	fp := device.Compute(device.Traits{
		UserAgent:       h.UserAgent(),
		AcceptLanguage:  h.PeekBytes(hdrAcceptLanguage),
		SecCHUA:         h.PeekBytes(hdrSecCHUA),
		SecCHUAPlatform: h.PeekBytes(hdrSecCHUAPlatform),
		SecCHUAMobile:   h.PeekBytes(hdrSecCHUAMobile),
		JA4:             st.TLSFingerprint,
	})
	loc, _ := o.Service.Locate(st.ClientIP)
	st.Location, st.DeviceID, st.Fingerprint = loc, id.String(), fp
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	return fp, o.Service.BindDevice(context.Background(), iss, sub, loc, id, fp, now())
}
