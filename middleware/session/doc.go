// Package session keeps browser sessions: the server-side Session record and
// its binary encoding, the signed session cookie, the Store interface with
// the embedded memory store (ristretto, bounded by a byte budget, encrypted
// snapshots across restarts), and the lookup middleware that turns a cookie
// into the request's principal.
//
// Trust boundary: the cookie value and the Cookie header are attacker
// controlled. A cookie is accepted only when it is exactly one cookie of the
// configured name, of the exact expected length, strict base64url, and its
// HMAC (domain-separated, any configured key) verifies; only then is the
// store consulted. The cookie carries a random 256-bit id and nothing else:
// identity stays server-side. Records read back from a store or a snapshot
// are parsed defensively (they may come from a shared Redis or a file on
// disk) and a snapshot is authenticated before it is parsed.
//
// Layers: record.go, codec.go, id.go, memory.go and snapshot.go are the
// core and do not import fasthttp; cookie.go and middleware.go are the thin
// fasthttp adapter. A bad, expired or revoked cookie is "no session", never
// an error: policy decides what an anonymous request gets.
package session
