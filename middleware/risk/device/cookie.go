package device

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"
)

// ID is a random 128-bit device id.
type ID [16]byte

// IsZero reports whether the id is unset.
func (id ID) IsZero() bool { return id == ID{} }

// String is the base64url form used in the cookie, history and logs (it is
// a random id, not a secret, but audit hashes it anyway).
func (id ID) String() string { return base64.RawURLEncoding.EncodeToString(id[:]) }

// IDFromString accepts the base64url form; any other non-empty string (ids
// from foreign access logs fed to replay) is hashed into an ID so it still
// identifies one device consistently.
func IDFromString(s string) ID {
	var id ID
	if s == "" {
		return id
	}
	if len(s) == idLen {
		if _, err := b64.Decode(id[:], []byte(s)); err == nil {
			return id
		}
	}
	sum := sha256.Sum256([]byte("edgeauth-device-id-v1\x00" + s))
	copy(id[:], sum[:])
	return id
}

// NewID returns a fresh random id from r (crypto/rand.Reader when nil).
func NewID(r io.Reader) (ID, error) {
	if r == nil {
		r = rand.Reader
	}
	var id ID
	if _, err := io.ReadFull(r, id[:]); err != nil {
		return ID{}, fmt.Errorf("device: random id: %w", err)
	}
	return id, nil
}

// Cookie value layout: "v1." + base64url(id) (22) + "." + base64url(mac) (43).
const (
	cookiePrefix = "v1."
	idLen        = 22
	macLen       = 43
	// CookieValueLen is the exact length of a valid cookie value.
	CookieValueLen = len(cookiePrefix) + idLen + 1 + macLen
	// domain separates these MACs from every other use of the same key.
	domain = "edgeauth-device-v1"
)

var b64 = base64.RawURLEncoding.Strict()

// ErrInvalidCookie is returned for any value that is not a cookie we issued
// with one of the configured keys. Callers treat it as "no device cookie".
var ErrInvalidCookie = errors.New("device: invalid device cookie")

// CookieCodec signs and verifies device cookies. Keys are ordered: the
// first signs, all verify, so keys rotate without forgetting devices.
type CookieCodec struct {
	keys []*sync.Pool // of hash.Hash (HMAC-SHA256 keyed), one per key
}

// NewCookieCodec requires at least one key of at least 32 bytes.
func NewCookieCodec(keys [][]byte) (*CookieCodec, error) {
	if len(keys) == 0 {
		return nil, errors.New("device: no cookie keys")
	}
	c := &CookieCodec{}
	for i, k := range keys {
		if len(k) < 32 {
			return nil, fmt.Errorf("device: cookie key %d is %d bytes, need at least 32", i, len(k))
		}
		k := append([]byte(nil), k...)
		c.keys = append(c.keys, &sync.Pool{New: func() any {
			m := &macState{h: hmac.New(sha256.New, k)}
			copy(m.msg[:], domain) // msg[len(domain)] stays 0: the separator
			return m
		}})
	}
	return c, nil
}

// macState is pooled whole so that the buffers handed to the hash.Hash
// interface are already on the heap: Decode stays allocation-free.
type macState struct {
	h   hash.Hash
	msg [len(domain) + 1 + len(ID{})]byte
	sum [sha256.Size]byte
}

func mac(p *sync.Pool, id *ID, out *[sha256.Size]byte) {
	m := p.Get().(*macState)
	copy(m.msg[len(domain)+1:], id[:])
	m.h.Reset()
	m.h.Write(m.msg[:])
	m.h.Sum(m.sum[:0])
	*out = m.sum
	p.Put(m)
}

// Encode returns the cookie value for id, signed with the first key.
func (c *CookieCodec) Encode(id ID) string {
	var m [sha256.Size]byte
	mac(c.keys[0], &id, &m)
	var b [CookieValueLen]byte
	n := copy(b[:], cookiePrefix)
	b64.Encode(b[n:], id[:])
	n += idLen
	b[n] = '.'
	b64.Encode(b[n+1:], m[:])
	return string(b[:])
}

// Decode verifies a cookie value and returns its id. Parsing is strict:
// exact length, version prefix, canonical base64url; the MAC is compared in
// constant time against every key. Allocation-free.
func (c *CookieCodec) Decode(v []byte) (ID, error) {
	var id ID
	if len(v) != CookieValueLen || string(v[:len(cookiePrefix)]) != cookiePrefix || v[len(cookiePrefix)+idLen] != '.' {
		return ID{}, ErrInvalidCookie
	}
	if n, err := b64.Decode(id[:], v[len(cookiePrefix):len(cookiePrefix)+idLen]); err != nil || n != len(id) {
		return ID{}, ErrInvalidCookie
	}
	var got [sha256.Size + 1]byte // base64 of 43 chars decodes to 32 bytes; +1 guards the bound
	if n, err := b64.Decode(got[:], v[len(cookiePrefix)+idLen+1:]); err != nil || n != sha256.Size {
		return ID{}, ErrInvalidCookie
	}
	var want [sha256.Size]byte
	ok := 0
	for _, k := range c.keys {
		mac(k, &id, &want)
		ok |= boolInt(hmac.Equal(want[:], got[:sha256.Size]))
	}
	if ok == 0 {
		return ID{}, ErrInvalidCookie
	}
	return id, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
