package session

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
)

// IDBytes is the entropy of a session id: 256 bits, far beyond guessing
// (OWASP asks for at least 64).
const IDBytes = 32

// IDLen is the length of an encoded session id (unpadded base64url).
const IDLen = 43 // base64.RawURLEncoding.EncodedLen(IDBytes)

// NewID returns a fresh session id: 32 bytes from crypto/rand, base64url
// without padding. Every login gets a new one, so an id planted before login
// (session fixation, RFC 6265bis §8.4) is never promoted.
func NewID() string {
	var b [IDBytes]byte
	// crypto/rand.Read never returns an error since Go 1.24; it crashes the
	// program irrecoverably instead of handing out a weak id.
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// HashID returns a short, non-reversible tag of a session id for logs:
// enough to correlate log lines, useless to hijack the session.
func HashID(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:8])
}
