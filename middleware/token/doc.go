// Package token authenticates API requests that carry an access token in
// the Authorization header: JWTs verified against each trusted issuer's
// JWKS (RFC 7519, RFC 8725, RFC 9068), opaque tokens checked by RFC 7662
// introspection, and sender-constrained tokens checked against their DPoP
// proof (RFC 9449).
//
// Trust boundary: everything in the Authorization and DPoP headers is
// attacker-controlled until the signature has been verified with a key that
// came from the issuer's own configured JWKS (or shared secret). Header
// parameters that point at keys (jku, x5u, jwk, x5c) are never used to find
// keys for access tokens; kid is only ever a map key. Parsing is strict and
// bounded before any cryptography runs: size limit, compact serialization,
// canonical base64url, UTF-8, unique JSON member names, bounded nesting.
//
// Contract: Verifier.Verify returns the verified claims or an *Error whose
// Reason is a fixed, client-safe code; ErrUnavailable marks technical
// failures (JWKS or introspection unreachable) and callers fail closed.
// Verified tokens are cached by the SHA-256 of the token (the token itself
// is never stored) until their exp at the latest; subject revocation is
// checked on every request, cached or not.
//
// The package has two layers: the Verifier core (no fasthttp) and the
// fasthttp adapter in middleware.go, which writes RFC 6750 challenges and
// fills reqstate. It must not import middleware/sso or middleware/session.
package token
