package session

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"sync"
)

// MinKeySize is the shortest accepted signing key: HMAC-SHA256 with a key
// shorter than its output weakens it to the key's entropy.
const MinKeySize = 32

// MaxSignedPayload bounds what a Signer verifies so that a hostile cookie
// cannot make us hash or decode megabytes.
const MaxSignedPayload = 1024

const macSize = sha256.Size

var b64 = base64.RawURLEncoding.Strict()

// Signer signs and verifies small payloads with HMAC-SHA256 under an
// ordered key list: the first key signs, every key verifies, so keys rotate
// without invalidating what is already out there (add the new key first,
// drop the old one after the longest cookie lifetime).
//
// The purpose string is mixed into every MAC (domain separation), so a value
// signed for one cookie kind (the session cookie, the sso pre-auth cookie,
// the risk device cookie) never verifies as another even when operators
// reuse one key list for all of them. Use a distinct, versioned purpose per
// kind, e.g. "edgeauth-device-v1".
//
// Signed values are base64url (no padding) of payload || MAC. They are
// integrity protected, not encrypted: never sign secrets.
type Signer struct {
	prefix []byte // purpose + NUL
	// pools[i] hands out HMAC states for keys[i]; hmac.New allocates, a
	// pooled state with its buffers does not.
	pools []sync.Pool
}

type macState struct {
	h   hash.Hash
	sum [macSize]byte
	raw [MaxSignedPayload + macSize]byte
}

// NewSigner returns a Signer for purpose. keys must hold at least one key of
// at least MinKeySize bytes; they are copied.
func NewSigner(purpose string, keys [][]byte) (*Signer, error) {
	if purpose == "" {
		return nil, errors.New("session: signer: empty purpose")
	}
	if len(keys) == 0 {
		return nil, errors.New("session: signer: no keys")
	}
	s := &Signer{prefix: append([]byte(purpose), 0), pools: make([]sync.Pool, len(keys))}
	for i, k := range keys {
		if len(k) < MinKeySize {
			return nil, fmt.Errorf("session: signer: key %d is %d bytes, want at least %d", i, len(k), MinKeySize)
		}
		key := append([]byte(nil), k...)
		s.pools[i].New = func() any { return &macState{h: hmac.New(sha256.New, key)} }
	}
	return s, nil
}

// mac computes the MAC of payload under key i into st.sum.
func (s *Signer) mac(st *macState, payload []byte) []byte {
	st.h.Reset()
	st.h.Write(s.prefix)
	st.h.Write(payload)
	return st.h.Sum(st.sum[:0])
}

// Sign returns the signed encoding of payload under the first key. It
// panics if payload is longer than MaxSignedPayload: that is a programming
// error, never input-driven.
func (s *Signer) Sign(payload []byte) string {
	if len(payload) > MaxSignedPayload {
		panic("session: Sign: payload exceeds MaxSignedPayload")
	}
	st := s.pools[0].Get().(*macState)
	defer s.pools[0].Put(st)
	buf := make([]byte, 0, len(payload)+macSize)
	buf = append(buf, payload...)
	buf = append(buf, s.mac(st, payload)...)
	return b64.EncodeToString(buf)
}

// Verify checks value and returns its payload appended to dst. It accepts
// only strict base64url of exactly payloadLen+32 bytes (payloadLen < 0: any
// length up to MaxSignedPayload) whose MAC matches under any key, compared
// in constant time.
func (s *Signer) Verify(dst, value []byte, payloadLen int) ([]byte, bool) {
	st, n, ok := s.verify(value, payloadLen)
	if !ok {
		return dst, false
	}
	dst = append(dst, st.raw[:n]...)
	s.pools[0].Put(st)
	return dst, true
}

// verify returns a pooled state (from pools[0]) holding the decoded payload
// in raw[:n]; the caller puts it back.
func (s *Signer) verify(value []byte, payloadLen int) (*macState, int, bool) {
	maxRaw := MaxSignedPayload + macSize
	if payloadLen >= 0 {
		if payloadLen > MaxSignedPayload {
			return nil, 0, false
		}
		// Exact length first: no decoding work for anything else.
		if len(value) != base64.RawURLEncoding.EncodedLen(payloadLen+macSize) {
			return nil, 0, false
		}
	} else if len(value) > base64.RawURLEncoding.EncodedLen(maxRaw) || len(value) == 0 {
		return nil, 0, false
	}
	st := s.pools[0].Get().(*macState)
	n, err := b64.Decode(st.raw[:], value)
	if err != nil || n < macSize || (payloadLen >= 0 && n != payloadLen+macSize) {
		s.pools[0].Put(st)
		return nil, 0, false
	}
	payload, tag := st.raw[:n-macSize], st.raw[n-macSize:n]
	if hmac.Equal(s.mac(st, payload), tag) {
		return st, len(payload), true
	}
	// Older keys: during rotation most cookies still carry them.
	for i := 1; i < len(s.pools); i++ {
		o := s.pools[i].Get().(*macState)
		good := hmac.Equal(s.mac(o, payload), tag)
		s.pools[i].Put(o)
		if good {
			return st, len(payload), true
		}
	}
	s.pools[0].Put(st)
	return nil, 0, false
}

// CookiePurpose is the MAC domain of session cookies.
const CookiePurpose = "edgeauth-session-v1"

// CookieValueLen is the length of an encoded session cookie value:
// base64url of the 32 id bytes and the 32 MAC bytes.
const CookieValueLen = 86

// Codec turns session ids into signed cookie values and back.
type Codec struct {
	signer *Signer
	ids    sync.Pool // *[IDLen]byte scratch for Decode
}

// NewCodec returns a Codec for the ordered key list (first signs, all
// verify; each at least MinKeySize bytes).
func NewCodec(keys [][]byte) (*Codec, error) {
	s, err := NewSigner(CookiePurpose, keys)
	if err != nil {
		return nil, fmt.Errorf("session: codec: %w", err)
	}
	c := &Codec{signer: s}
	c.ids.New = func() any { return new([IDLen]byte) }
	return c, nil
}

// Encode returns the cookie value for a session id made by NewID. The
// cookie carries the raw id bytes, not their text, to stay short; an id
// that is not 43 characters of base64url yields "".
func (c *Codec) Encode(id string) string {
	var raw [IDBytes]byte
	if len(id) != IDLen {
		return ""
	}
	if n, err := b64.Decode(raw[:], []byte(id)); err != nil || n != IDBytes {
		return ""
	}
	return c.signer.Sign(raw[:])
}

// Decode verifies a cookie value and returns the session id. It rejects
// anything but exactly CookieValueLen bytes of strict base64url with a valid
// MAC under one of the keys. The only allocation is the returned id.
func (c *Codec) Decode(value []byte) (id string, ok bool) {
	st, n, ok := c.signer.verify(value, IDBytes)
	if !ok {
		return "", false
	}
	buf := c.ids.Get().(*[IDLen]byte)
	base64.RawURLEncoding.Encode(buf[:], st.raw[:n])
	id = string(buf[:])
	c.ids.Put(buf)
	c.signer.pools[0].Put(st)
	return id, true
}
