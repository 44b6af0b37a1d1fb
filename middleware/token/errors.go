package token

import (
	"errors"
	"fmt"
)

// Reason classifies why a token was not accepted. The String form is the
// reason code used in logs and metrics; Description is the fixed text shown
// to clients. Neither ever carries key ids, library text or token bytes.
type Reason uint8

// The order of these constants never changes: they appear in metrics.
const (
	ReasonNone              Reason = iota
	ReasonMalformed                // not a well-formed compact JWS / strict JSON
	ReasonTooLarge                 // over the configured size limit
	ReasonUnsupportedAlg           // alg not on the issuer's allow-list (incl. none)
	ReasonUnknownKey               // no key of the issuer matches kid/alg
	ReasonBadSignature             // signature does not verify
	ReasonCrit                     // crit lists an extension we do not understand
	ReasonExpired                  // exp passed (after leeway)
	ReasonNotYetValid              // nbf in the future, or iat in the future
	ReasonMissingClaim             // exp, iss, sub or aud missing
	ReasonBadIssuer                // iss not a trusted issuer
	ReasonBadAudience              // aud does not contain a configured audience
	ReasonBadType                  // typ is not at+jwt where required
	ReasonRevoked                  // subject revoked after the token was issued
	ReasonInactive                 // introspection said active=false
	ReasonIssuerNotAllowed         // trusted issuer, but not on this route
	ReasonDPoPRequired             // DPoP-bound token presented as Bearer
	ReasonDPoPInvalid              // DPoP proof missing or invalid
	ReasonDPoPReplay               // DPoP proof jti seen before
	ReasonInsufficientScope        // valid token without the route's scopes/claims
	ReasonUnavailable              // technical failure: keys or introspection unreachable
	ReasonNotBound                 // DPoP scheme used with a token that has no cnf.jkt
)

var reasonCodes = [...]string{
	ReasonNone:              "none",
	ReasonMalformed:         "malformed",
	ReasonTooLarge:          "too_large",
	ReasonUnsupportedAlg:    "unsupported_alg",
	ReasonUnknownKey:        "unknown_key",
	ReasonBadSignature:      "bad_signature",
	ReasonCrit:              "unsupported_crit",
	ReasonExpired:           "expired",
	ReasonNotYetValid:       "not_yet_valid",
	ReasonMissingClaim:      "missing_claim",
	ReasonBadIssuer:         "bad_issuer",
	ReasonBadAudience:       "bad_audience",
	ReasonBadType:           "bad_type",
	ReasonRevoked:           "revoked",
	ReasonInactive:          "inactive",
	ReasonIssuerNotAllowed:  "issuer_not_allowed",
	ReasonDPoPRequired:      "dpop_required",
	ReasonDPoPInvalid:       "dpop_invalid",
	ReasonDPoPReplay:        "dpop_replay",
	ReasonInsufficientScope: "insufficient_scope",
	ReasonUnavailable:       "unavailable",
	ReasonNotBound:          "token_not_bound",
}

// Client-safe descriptions. Deliberately coarse: an attacker learns that a
// forgery failed, not which check caught it or which key we hold.
var reasonDescriptions = [...]string{
	ReasonNone:              "The access token is invalid",
	ReasonMalformed:         "The access token is malformed",
	ReasonTooLarge:          "The access token is malformed",
	ReasonUnsupportedAlg:    "The access token is invalid",
	ReasonUnknownKey:        "The access token is invalid",
	ReasonBadSignature:      "The access token is invalid",
	ReasonCrit:              "The access token is invalid",
	ReasonExpired:           "The access token expired",
	ReasonNotYetValid:       "The access token is not valid yet",
	ReasonMissingClaim:      "The access token is invalid",
	ReasonBadIssuer:         "The access token is invalid",
	ReasonBadAudience:       "The access token is not meant for this service",
	ReasonBadType:           "The access token is invalid",
	ReasonRevoked:           "The access token was revoked",
	ReasonInactive:          "The access token is not active",
	ReasonIssuerNotAllowed:  "The access token is not meant for this service",
	ReasonDPoPRequired:      "The access token must be used with a DPoP proof",
	ReasonDPoPInvalid:       "The DPoP proof is invalid",
	ReasonDPoPReplay:        "The DPoP proof is invalid",
	ReasonInsufficientScope: "The access token lacks the required scope",
	ReasonUnavailable:       "Token verification is temporarily unavailable",
	ReasonNotBound:          "The access token is not bound to a DPoP key",
}

// String returns the reason code.
func (r Reason) String() string {
	if int(r) < len(reasonCodes) {
		return reasonCodes[r]
	}
	return "unknown"
}

// Description returns the fixed client-safe text for r.
func (r Reason) Description() string {
	if int(r) < len(reasonDescriptions) {
		return reasonDescriptions[r]
	}
	return reasonDescriptions[ReasonNone]
}

// Error is a rejected token. Reason is safe to show; Cause is for logs only.
type Error struct {
	Reason Reason
	Cause  error
}

func (e *Error) Error() string {
	if e.Cause == nil {
		return "token: " + e.Reason.String()
	}
	return "token: " + e.Reason.String() + ": " + e.Cause.Error()
}

func (e *Error) Unwrap() error { return e.Cause }

// Is makes errors.Is(err, ErrExpired) and friends match on the reason.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Cause == nil && t.Reason == e.Reason
}

// Sentinels for errors.Is. Every *Error with the same Reason matches.
var (
	ErrMalformed         = &Error{Reason: ReasonMalformed}
	ErrTooLarge          = &Error{Reason: ReasonTooLarge}
	ErrUnsupportedAlg    = &Error{Reason: ReasonUnsupportedAlg}
	ErrUnknownKey        = &Error{Reason: ReasonUnknownKey}
	ErrBadSignature      = &Error{Reason: ReasonBadSignature}
	ErrCrit              = &Error{Reason: ReasonCrit}
	ErrExpired           = &Error{Reason: ReasonExpired}
	ErrNotYetValid       = &Error{Reason: ReasonNotYetValid}
	ErrMissingClaim      = &Error{Reason: ReasonMissingClaim}
	ErrBadIssuer         = &Error{Reason: ReasonBadIssuer}
	ErrBadAudience       = &Error{Reason: ReasonBadAudience}
	ErrBadType           = &Error{Reason: ReasonBadType}
	ErrRevoked           = &Error{Reason: ReasonRevoked}
	ErrInactive          = &Error{Reason: ReasonInactive}
	ErrIssuerNotAllowed  = &Error{Reason: ReasonIssuerNotAllowed}
	ErrDPoPRequired      = &Error{Reason: ReasonDPoPRequired}
	ErrDPoPInvalid       = &Error{Reason: ReasonDPoPInvalid}
	ErrDPoPReplay        = &Error{Reason: ReasonDPoPReplay}
	ErrInsufficientScope = &Error{Reason: ReasonInsufficientScope}
	ErrUnavailable       = &Error{Reason: ReasonUnavailable}
	ErrNotBound          = &Error{Reason: ReasonNotBound}
)

func reject(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Cause: fmt.Errorf(format, args...)}
}

// ReasonOf returns the reason of err, ReasonUnavailable for errors that are
// not an *Error (technical failures fail closed).
func ReasonOf(err error) Reason {
	if err == nil {
		return ReasonNone
	}
	var te *Error
	if errors.As(err, &te) {
		return te.Reason
	}
	return ReasonUnavailable
}
