package sso

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// txnTTL is the life of a login transaction: RFC 6749 §4.1.2 recommends at
// most 10 minutes for the code it waits for.
const txnTTL = 10 * time.Minute

// transaction is the server-side record of one login attempt, keyed by the
// hash of its state. Keeping nonce, PKCE verifier and return_to here means
// none of them travels through the browser (RFC 9700 §4.7.1).
type transaction struct {
	Nonce       string        `json:"n"`
	Verifier    string        `json:"v"`
	Issuer      string        `json:"i"`
	ReturnTo    string        `json:"r"`
	RedirectURI string        `json:"u"`
	Created     time.Time     `json:"c"`
	StepUp      bool          `json:"s,omitempty"`
	ACR         []string      `json:"a,omitempty"`
	MaxAge      time.Duration `json:"m,omitempty"`
}

func (t *transaction) marshal() ([]byte, error) { return json.Marshal(t) }

func unmarshalTxn(b []byte) (*transaction, error) {
	var t transaction
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("sso: decode transaction: %w", err)
	}
	return &t, nil
}

// randomToken returns 32 random bytes, base64url: 256 bits, above the 160
// RFC 6749 §10.10 asks for.
func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// stateHash names the transaction record and its cookie; the store never
// sees the state itself.
func stateHash(state string) string {
	h := sha256.Sum256([]byte(state))
	return hex.EncodeToString(h[:])
}

// txnCookieSuffix is the per-state part of the pre-auth cookie name, so that
// several tabs can log in at once without overwriting each other's cookie.
func txnCookieSuffix(state string) string { return stateHash(state)[:16] }

func txnStoreKey(state string) string { return "sso:txn:" + stateHash(state) }

// keyring holds the MAC keys derived from the configured secrets: the first
// signs, all verify, so secrets rotate without breaking logins in flight.
// Each purpose gets its own derived key so a MAC made for one can never be
// replayed as another.
type keyring struct{ keys [][]byte }

func newKeyring(secrets [][]byte, purpose string) keyring {
	k := keyring{keys: make([][]byte, len(secrets))}
	for i, s := range secrets {
		m := hmac.New(sha256.New, s)
		m.Write([]byte("edgeauth/sso/" + purpose))
		k.keys[i] = m.Sum(nil)
	}
	return k
}

func (k keyring) mac(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// sign returns base64url(HMAC(first key, msg)).
func (k keyring) sign(msg string) string {
	return base64.RawURLEncoding.EncodeToString(k.mac(k.keys[0], msg))
}

// verify reports whether sig is a valid MAC of msg under any key.
func (k keyring) verify(msg, sig string) bool {
	raw, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || len(raw) != sha256.Size {
		return false
	}
	ok := false
	for _, key := range k.keys {
		// hmac.Equal is constant time; no early exit so the time does not
		// reveal which key matched.
		if hmac.Equal(raw, k.mac(key, msg)) {
			ok = true
		}
	}
	return ok
}

// txnCookieValue is "<state>.<created unix>.<mac>". The MAC binds the state
// to this browser: a state value taken from someone else's callback URL is
// useless without the cookie (RFC 6749 §10.12, login CSRF).
func (k keyring) txnCookieValue(state string, created time.Time) string {
	body := state + "." + strconv.FormatInt(created.Unix(), 10)
	return body + "." + k.sign(body)
}

// parseTxnCookie verifies a pre-auth cookie value and returns its state and
// creation time.
func (k keyring) parseTxnCookie(v string) (state string, created time.Time, ok bool) {
	i := strings.LastIndexByte(v, '.')
	if i < 0 || !k.verify(v[:i], v[i+1:]) {
		return "", time.Time{}, false
	}
	body := v[:i]
	j := strings.LastIndexByte(body, '.')
	if j < 0 {
		return "", time.Time{}, false
	}
	sec, err := strconv.ParseInt(body[j+1:], 10, 64)
	if err != nil {
		return "", time.Time{}, false
	}
	return body[:j], time.Unix(sec, 0), true
}
