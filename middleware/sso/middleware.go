package sso

import (
	"bytes"
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/valyala/fasthttp"
	"golang.org/x/oauth2"

	"github.com/edgeauth/edgeauth/middleware/session"
	"github.com/edgeauth/edgeauth/proxy/errpage"
)

var (
	headerOrigin         = []byte("Origin")
	headerReferer        = []byte("Referer")
	headerReferrerPolicy = "Referrer-Policy"
	headerWWWAuth        = "WWW-Authenticate"
)

// StartLogin sends the browser to the provider: it records a login
// transaction (PKCE verifier, nonce, issuer, validated return_to) under the
// hash of a fresh state, binds the state to this browser with a signed
// HttpOnly pre-auth cookie, and answers 302. stepUp nil is a plain login.
//
// Whether a request may be redirected at all (browser navigation vs API
// call) is the caller's decision (policy makes it).
func (rp *RP) StartLogin(ctx *fasthttp.RequestCtx, returnTo string, stepUp *StepUp) {
	d := rp.disc.Load()
	if d == nil {
		errpage.Write(ctx, fasthttp.StatusServiceUnavailable, "sign_in_unavailable",
			"The sign-in service cannot be reached right now. Please try again in a minute.")
		return
	}
	redirectURI, ok := rp.callbackURL(ctx)
	if !ok {
		errpage.Write(ctx, fasthttp.StatusBadRequest, "unknown_host", "This host is not served here.")
		return
	}
	now := rp.now()
	state := randomToken()
	txn := transaction{
		Nonce:       randomToken(),
		Verifier:    oauth2.GenerateVerifier(),
		Issuer:      rp.opts.Issuer,
		ReturnTo:    rp.safeTarget(returnTo),
		RedirectURI: redirectURI,
		Created:     now,
	}
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(txn.Verifier), oidc.Nonce(txn.Nonce)}
	if stepUp != nil {
		txn.StepUp = true
		txn.ACR = stepUp.ACR
		if txn.ACR == nil {
			txn.ACR = rp.opts.StepUpACR
		}
		txn.MaxAge = stepUp.MaxAge
		if txn.MaxAge == 0 {
			txn.MaxAge = rp.opts.StepUpMaxAge
		}
		if len(txn.ACR) > 0 {
			opts = append(opts, oauth2.SetAuthURLParam("acr_values", strings.Join(txn.ACR, " ")))
		}
		if txn.MaxAge > 0 {
			opts = append(opts, oauth2.SetAuthURLParam("max_age", strconv.FormatInt(int64(txn.MaxAge/time.Second), 10)))
		} else {
			opts = append(opts, oauth2.SetAuthURLParam("prompt", "login"))
		}
	}
	b, err := txn.marshal()
	if err == nil {
		err = rp.opts.Store.PutBlob(context.Background(), txnStoreKey(state), b, txnTTL)
	}
	if err != nil {
		rp.log.LogAttrs(context.Background(), slog.LevelError, "sso: store login transaction", slog.String("error", err.Error()))
		errpage.Write(ctx, fasthttp.StatusServiceUnavailable, "session_store_unavailable",
			"Sign-in is temporarily unavailable. Please try again in a minute.")
		return
	}
	rp.evictTransactions(ctx)
	rp.setCookie(ctx, rp.txnPrefix+txnCookieSuffix(state), rp.txnKeys.txnCookieValue(state, now), int(txnTTL/time.Second))
	conf := d.oauth
	conf.RedirectURL = redirectURI
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	ctx.Response.Header.Set(fasthttp.HeaderLocation, conf.AuthCodeURL(state, opts...))
	ctx.SetStatusCode(fasthttp.StatusFound)
}

// callbackURL returns the absolute redirect_uri for this request.
func (rp *RP) callbackURL(ctx *fasthttp.RequestCtx) (string, bool) {
	if rp.external != nil {
		return rp.external.Scheme + "://" + rp.external.Host + rp.redirectPath, true
	}
	origin, ok := rp.requestOrigin(ctx)
	return origin + rp.redirectPath, ok
}

// requestOrigin is scheme://host of the request, only for allowed hosts: the
// Host header is client-controlled and must never pick where codes go.
func (rp *RP) requestOrigin(ctx *fasthttp.RequestCtx) (string, bool) {
	host := strings.ToLower(string(ctx.Host()))
	if _, ok := rp.allowed[host]; !ok || host == "" {
		return "", false
	}
	if ctx.IsTLS() {
		return "https://" + host, true
	}
	return "http://" + host, true
}

func (rp *RP) setCookie(ctx *fasthttp.RequestCtx, name, value string, maxAge int) {
	c := fasthttp.AcquireCookie()
	defer fasthttp.ReleaseCookie(c)
	c.SetKey(name)
	c.SetValue(value)
	c.SetPath("/")
	c.SetHTTPOnly(true)
	c.SetSecure(rp.opts.SecureCookies)
	c.SetSameSite(fasthttp.CookieSameSiteLaxMode)
	if maxAge > 0 {
		c.SetMaxAge(maxAge)
	} else {
		c.SetExpire(fasthttp.CookieExpireDelete)
	}
	ctx.Response.Header.SetCookie(c)
}

// evictTransactions keeps at most MaxTransactions-1 pre-auth cookies before
// a new one is added, dropping the oldest; a browser cannot be made to
// hoard cookies (RFC 6265bis §6.1 limits) and every tab still works.
func (rp *RP) evictTransactions(ctx *fasthttp.RequestCtx) {
	type tc struct {
		name    string
		created time.Time
	}
	var found []tc
	prefix := []byte(rp.txnPrefix)
	ctx.Request.Header.VisitAllCookie(func(k, v []byte) {
		if !bytes.HasPrefix(k, prefix) {
			return
		}
		_, created, ok := rp.txnKeys.parseTxnCookie(string(v))
		if !ok {
			created = time.Time{} // unverifiable: evict first
		}
		found = append(found, tc{string(k), created})
	})
	if len(found) < rp.opts.MaxTransactions {
		return
	}
	slices.SortFunc(found, func(a, b tc) int { return a.created.Compare(b.created) })
	for _, c := range found[:len(found)-rp.opts.MaxTransactions+1] {
		rp.setCookie(ctx, c.name, "", -1)
	}
}

// uniqueCookie returns the value of cookie name, or false when it is absent
// or appears more than once (a duplicate is an injection attempt, RFC
// 6265bis §8.6 cookie tossing).
func uniqueCookie(ctx *fasthttp.RequestCtx, name string) ([]byte, bool) {
	var val []byte
	n := 0
	ctx.Request.Header.VisitAllCookie(func(k, v []byte) {
		if string(k) == name {
			val = v
			n++
		}
	})
	return val, n == 1
}

// consumeTransaction checks the state against this browser's pre-auth
// cookie, then loads and deletes the server-side record: each state works
// once (RFC 9700 §4.2.4), even with two callbacks racing.
func (rp *RP) consumeTransaction(ctx *fasthttp.RequestCtx, state string) (*transaction, error) {
	if state == "" || len(state) > 128 {
		return nil, errors.Join(ErrState, errors.New("missing state"))
	}
	name := rp.txnPrefix + txnCookieSuffix(state)
	v, ok := uniqueCookie(ctx, name)
	// Whatever happens next, this transaction's cookie is spent.
	rp.setCookie(ctx, name, "", -1)
	if !ok {
		return nil, errors.Join(ErrState, errors.New("no pre-auth cookie for state"))
	}
	cs, created, ok := rp.txnKeys.parseTxnCookie(string(v))
	if !ok || !hmac.Equal([]byte(cs), []byte(state)) {
		return nil, errors.Join(ErrState, errors.New("pre-auth cookie does not match state"))
	}
	now := rp.now()
	if now.Sub(created) > txnTTL {
		return nil, ErrExpired
	}
	key := txnStoreKey(state)
	if !rp.used.add(key, now, now.Add(txnTTL+clockSkew)) {
		return nil, errors.Join(ErrState, errors.New("state replayed"))
	}
	bctx := context.Background()
	b, err := rp.opts.Store.GetBlob(bctx, key)
	if err != nil || len(b) == 0 {
		return nil, errors.Join(ErrState, errors.New("no transaction (expired or used)"))
	}
	// Tombstone for other instances sharing the store; the store has no
	// blob delete, so an empty value marks "used".
	_ = rp.opts.Store.PutBlob(bctx, key, []byte{}, txnTTL)
	txn, err := unmarshalTxn(b)
	if err != nil {
		return nil, errors.Join(ErrState, err)
	}
	if now.Sub(txn.Created) > txnTTL || txn.Issuer != rp.opts.Issuer {
		return nil, ErrExpired
	}
	return txn, nil
}

// HandleCallback completes a login at the redirect path.
func (rp *RP) HandleCallback(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.Set(headerReferrerPolicy, "no-referrer")
	if !ctx.IsGet() {
		errpage.Write(ctx, fasthttp.StatusMethodNotAllowed, "method_not_allowed", "Use GET.")
		return
	}
	args := ctx.QueryArgs()
	state := string(args.Peek("state"))
	txn, err := rp.consumeTransaction(ctx, state)
	if err != nil {
		rp.callbackFail(ctx, err)
		return
	}
	if pe := args.Peek("error"); len(pe) > 0 {
		rp.callbackFail(ctx, errors.Join(ErrProvider, errors.New("authorization error "+strconv.Quote(string(pe)))),
			providerErrorCode(string(pe)))
		return
	}
	d := rp.disc.Load()
	if d == nil {
		rp.callbackFail(ctx, ErrUnavailable)
		return
	}
	// Mix-up defence (RFC 9207 §2.4): iss, when sent, must be the issuer we
	// sent the browser to; when the provider promises it, it must be sent.
	iss := args.Peek("iss")
	if (len(iss) > 0 && string(iss) != txn.Issuer) || (len(iss) == 0 && d.issRequired) {
		rp.callbackFail(ctx, errors.Join(ErrState, errors.New("iss parameter mismatch")))
		return
	}
	code := string(args.Peek("code"))
	if code == "" {
		rp.callbackFail(ctx, errors.Join(ErrState, errors.New("no code")))
		return
	}
	bctx := context.Background()
	var prev *session.Session
	if id, ok := rp.cookies.SessionID(ctx); ok {
		if s, err := rp.opts.Store.Get(bctx, id); err == nil {
			prev = s
		}
	}
	if txn.StepUp && prev == nil {
		// The session ended while the user was at the provider: treat the
		// step-up as a fresh login, with its stricter checks kept.
		rp.log.LogAttrs(bctx, slog.LevelDebug, "sso: step-up without a current session")
	}
	sess, err := rp.exchange(bctx, d, txn, code, prev)
	if err != nil {
		if errors.Is(err, ErrStepUp) && prev != nil {
			p := prev.Clone()
			p.StepUpFailures++
			_ = rp.opts.Store.Put(bctx, p)
		}
		rp.callbackFail(ctx, err)
		return
	}
	if rp.opts.OnLogin != nil {
		rp.opts.OnLogin(ctx, sess)
	}
	if err := rp.opts.Store.Put(bctx, sess); err != nil {
		rp.callbackFail(ctx, errors.Join(ErrUnavailable, err))
		return
	}
	if prev != nil {
		// No fixation: the pre-login id is never promoted; it dies here.
		_ = rp.opts.Store.Delete(bctx, prev.ID)
	}
	rp.cookies.SetSession(ctx, sess.ID, sess.ExpiresAt)
	rp.log.LogAttrs(bctx, slog.LevelInfo, "sso: login", slog.String("subject", hashID(sess.Subject)),
		slog.String("session", hashID(sess.ID)), slog.String("acr", sess.ACR), slog.Bool("step_up", txn.StepUp))
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	ctx.Response.Header.Set(fasthttp.HeaderLocation, txn.ReturnTo)
	ctx.SetStatusCode(fasthttp.StatusSeeOther)
}

// providerErrorCode maps the provider's error parameter to our reason code;
// the raw value is attacker-controllable and never shown.
func providerErrorCode(e string) string {
	switch e {
	case "access_denied", "login_required", "interaction_required", "consent_required",
		"unmet_authentication_requirements", "temporarily_unavailable", "server_error":
		return e
	}
	return "provider_error"
}

// callbackFail renders the error page for a failed callback. It never
// redirects, so a failing provider cannot cause a login loop.
func (rp *RP) callbackFail(ctx *fasthttp.RequestCtx, err error, code ...string) {
	rp.log.LogAttrs(context.Background(), slog.LevelWarn, "sso: callback failed",
		slog.String("request_id", errpage.RequestID(ctx)), slog.String("error", err.Error()))
	status, reason, msg := fasthttp.StatusBadRequest, "login_state_invalid",
		"This sign-in attempt is invalid, expired or was already used. Go back to the page you wanted and try again."
	switch {
	case errors.Is(err, ErrExpired):
		reason, msg = "login_expired", "This sign-in attempt took too long. Go back to the page you wanted and try again."
	case errors.Is(err, ErrProvider):
		status, reason, msg = fasthttp.StatusForbidden, "provider_error", "The sign-in provider did not complete the sign-in."
		if len(code) > 0 {
			reason = code[0]
		}
		if reason == "access_denied" {
			msg = "Sign-in was cancelled or refused by the sign-in provider."
		}
	case errors.Is(err, ErrUnavailable):
		status, reason, msg = fasthttp.StatusServiceUnavailable, "sign_in_unavailable",
			"The sign-in service cannot be reached right now. Please try again in a minute."
	case errors.Is(err, ErrStepUp):
		status, reason, msg = fasthttp.StatusForbidden, "step_up_failed",
			"The additional verification required for this page was not completed."
	case errors.Is(err, ErrIDToken):
		status, reason, msg = fasthttp.StatusUnauthorized, "id_token_invalid", "The sign-in response could not be verified."
	}
	errpage.Write(ctx, status, reason, msg)
	ctx.Response.Header.Set(headerReferrerPolicy, "no-referrer")
}

// LogoutCSRFToken is the token the logout form must carry for session id:
// HMAC of the id under a key of its own, so only a page we rendered for
// this session can post it.
func (rp *RP) LogoutCSRFToken(sessionID string) string { return rp.csrfKeys.sign(sessionID) }

var logoutPage = template.Must(template.New("logout").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="referrer" content="same-origin"><title>Sign out</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:30rem;margin:4rem auto;padding:0 1rem}</style></head>
<body>{{if .Token}}<h1>Sign out?</h1>
<form method="post" action="{{.Action}}"><input type="hidden" name="csrf" value="{{.Token}}">
<button type="submit" id="logout">Sign out</button></form>
{{else}}<h1>You are signed out</h1><p><a href="/">Continue</a></p>{{end}}
</body></html>
`))

// handleLogoutPage renders the confirmation form. GET never logs out: a
// cross-site <img src=/.edgeauth/logout> must not end sessions.
func (rp *RP) handleLogoutPage(ctx *fasthttp.RequestCtx) {
	var token string
	if id, ok := rp.cookies.SessionID(ctx); ok {
		token = rp.LogoutCSRFToken(id)
	}
	var buf bytes.Buffer
	_ = logoutPage.Execute(&buf, struct{ Action, Token string }{LogoutPath, token})
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	// No form-action: browsers apply it to the redirects that follow the
	// submission too, and the logout continues to the provider's
	// end_session endpoint on another origin (Chromium blocked it).
	ctx.Response.Header.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	ctx.SetContentType("text/html; charset=utf-8")
	ctx.SetBody(buf.Bytes())
}

// sameOrigin checks Origin (or, without it, Referer) against the request's
// own origin. A request with neither is refused: browsers send Origin on
// every POST, so its absence means a non-browser or a stripped header.
func (rp *RP) sameOrigin(ctx *fasthttp.RequestCtx) bool {
	want, ok := rp.requestOrigin(ctx)
	if !ok {
		return false
	}
	if o := ctx.Request.Header.PeekBytes(headerOrigin); len(o) > 0 {
		if string(o) == "null" {
			// Browsers send "Origin: null" on same-origin POSTs from pages
			// under a no-referrer policy (Fetch §3.1); accept it only when
			// the browser itself vouches for the origin. The CSRF token is
			// checked as well.
			return string(ctx.Request.Header.Peek("Sec-Fetch-Site")) == "same-origin"
		}
		return strings.EqualFold(string(o), want)
	}
	ref := ctx.Request.Header.PeekBytes(headerReferer)
	if len(ref) == 0 {
		return false
	}
	u, err := url.Parse(string(ref))
	if err != nil {
		return false
	}
	return strings.EqualFold(u.Scheme+"://"+u.Host, want)
}

// handleLogout ends the session (POST, CSRF-checked) and continues to
// RP-initiated logout at the provider when it offers one.
func (rp *RP) handleLogout(ctx *fasthttp.RequestCtx) {
	if !rp.sameOrigin(ctx) {
		errpage.Write(ctx, fasthttp.StatusForbidden, "csrf_check_failed", "This sign-out request did not come from this site.")
		return
	}
	bctx := context.Background()
	landing := rp.postLogout
	if landing == "" {
		landing = "/"
	}
	id, ok := rp.cookies.SessionID(ctx)
	var sess *session.Session
	if ok {
		tok := string(ctx.PostArgs().Peek("csrf"))
		if !rp.csrfKeys.verify(id, tok) {
			errpage.Write(ctx, fasthttp.StatusForbidden, "csrf_check_failed", "This sign-out request did not come from this site.")
			return
		}
		if s, err := rp.opts.Store.Get(bctx, id); err == nil {
			sess = s
		}
		// Local logout first (RP-Initiated Logout §2 leaves order to us):
		// even if the provider never answers, the session is gone.
		if err := rp.opts.Store.Delete(bctx, id); err != nil {
			errpage.Write(ctx, fasthttp.StatusServiceUnavailable, "session_store_unavailable", "Sign-out failed; please try again.")
			return
		}
	}
	rp.cookies.ClearSession(ctx)
	target := landing
	if d := rp.disc.Load(); d != nil && d.endSession != "" && sess != nil && sess.IDToken != "" {
		q := url.Values{"id_token_hint": {sess.IDToken}, "client_id": {rp.opts.ClientID}, "state": {randomToken()}}
		if rp.postLogout != "" {
			q.Set("post_logout_redirect_uri", rp.postLogout)
		}
		sep := "?"
		if strings.Contains(d.endSession, "?") {
			sep = "&"
		}
		target = d.endSession + sep + q.Encode()
	}
	if sess != nil {
		rp.log.LogAttrs(bctx, slog.LevelInfo, "sso: logout", slog.String("subject", hashID(sess.Subject)),
			slog.String("session", hashID(sess.ID)))
	}
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	ctx.Response.Header.Set(fasthttp.HeaderLocation, target)
	// 303: the browser must follow with GET, never re-POST (RFC 9700 §4.12).
	ctx.SetStatusCode(fasthttp.StatusSeeOther)
}

// maxLogoutBody caps the back-channel request body; a logout token is a
// few hundred bytes.
const maxLogoutBody = 16 << 10

// HandleBackChannelLogout is the OIDC Back-Channel Logout 1.0 receiver.
func (rp *RP) HandleBackChannelLogout(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	if !ctx.IsPost() {
		ctx.Response.Header.Set(fasthttp.HeaderAllow, "POST")
		writeJSONError(ctx, fasthttp.StatusMethodNotAllowed, "invalid_request", "POST required")
		return
	}
	if len(ctx.PostBody()) > maxLogoutBody {
		writeJSONError(ctx, fasthttp.StatusBadRequest, "invalid_request", "body too large")
		return
	}
	if !bytes.HasPrefix(ctx.Request.Header.ContentType(), []byte("application/x-www-form-urlencoded")) {
		writeJSONError(ctx, fasthttp.StatusBadRequest, "invalid_request", "form body required")
		return
	}
	raw := string(ctx.PostArgs().Peek("logout_token"))
	if raw == "" {
		writeJSONError(ctx, fasthttp.StatusBadRequest, "invalid_request", "logout_token missing")
		return
	}
	bctx := context.Background()
	if _, err := rp.handleLogoutToken(bctx, raw); err != nil {
		rp.log.LogAttrs(bctx, slog.LevelWarn, "sso: back-channel logout rejected", slog.String("error", err.Error()))
		if errors.Is(err, ErrUnavailable) || (!errors.Is(err, ErrLogoutToken) && !errors.Is(err, ErrLogoutTokenUsed)) {
			// Technical failure: 503 so the provider may retry; it is not
			// the token's fault.
			writeJSONError(ctx, fasthttp.StatusServiceUnavailable, "temporarily_unavailable", "try again later")
			return
		}
		writeJSONError(ctx, fasthttp.StatusBadRequest, "invalid_request", "invalid logout token")
		return
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
}

func writeJSONError(ctx *fasthttp.RequestCtx, status int, code, desc string) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	b := make([]byte, 0, 96)
	b = append(b, `{"error":`...)
	b = strconv.AppendQuote(b, code)
	b = append(b, `,"error_description":`...)
	b = strconv.AppendQuote(b, desc)
	b = append(b, "}\n"...)
	ctx.SetBody(b)
}

// Handler serves the reserved paths this package owns: the redirect path,
// /.edgeauth/logout (GET confirm page, POST logout) and
// /.edgeauth/backchannel-logout. Any other path is 404. The proxy mounts it
// for /.edgeauth/ (and for the redirect path if configured elsewhere).
func (rp *RP) Handler() fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		switch p := string(ctx.Path()); {
		case p == rp.redirectPath:
			rp.HandleCallback(ctx)
		case p == LogoutPath && (ctx.IsGet() || ctx.IsHead()):
			rp.handleLogoutPage(ctx)
		case p == LogoutPath && ctx.IsPost():
			rp.handleLogout(ctx)
		case p == LogoutPath:
			errpage.Write(ctx, fasthttp.StatusMethodNotAllowed, "method_not_allowed", "Use GET or POST.")
		case p == BackChannelLogoutPath:
			rp.HandleBackChannelLogout(ctx)
		default:
			errpage.Write(ctx, fasthttp.StatusNotFound, "not_found", "Not found.")
		}
	}
}

// sessionCookies is the default SessionCookies: the session package's
// signed-id codec and cookie, so the session-lookup middleware built from
// the same keys and name reads what the callback writes.
type sessionCookies struct {
	codec  *session.Codec
	cookie *session.Cookie
	now    func() time.Time
}

func newSessionCookies(name string, keys [][]byte, secure bool, now func() time.Time) (*sessionCookies, error) {
	codec, err := session.NewCodec(keys)
	if err != nil {
		return nil, fmt.Errorf("sso: %w", err)
	}
	cookie, err := session.NewCookie(session.CookieOptions{Name: name, Secure: secure})
	if err != nil {
		return nil, fmt.Errorf("sso: %w", err)
	}
	return &sessionCookies{codec: codec, cookie: cookie, now: now}, nil
}

func (c *sessionCookies) SessionID(ctx *fasthttp.RequestCtx) (string, bool) {
	v, ok := c.cookie.Value(ctx)
	if !ok {
		return "", false
	}
	return c.codec.Decode(v)
}

func (c *sessionCookies) SetSession(ctx *fasthttp.RequestCtx, id string, expires time.Time) {
	c.cookie.Set(ctx, c.codec.Encode(id), expires.Sub(c.now()))
}

func (c *sessionCookies) ClearSession(ctx *fasthttp.RequestCtx) { c.cookie.Clear(ctx) }

// Cookies returns the session cookie codec in use, so the session-lookup
// step can share it.
func (rp *RP) Cookies() SessionCookies { return rp.cookies }
