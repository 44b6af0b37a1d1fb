// Package device computes the signals that say "is this the same browser as
// last time": a stable fingerprint of request traits, the JA4 fingerprint of
// the TLS ClientHello, a User-Agent/client-hints consistency check, and the
// signed long-lived device cookie.
//
// Contract and trust boundary: everything here comes from the client and is
// spoofable. The fingerprint identifies client software and configuration,
// not a person; it is a weak "same client stack as last time" signal. The
// device cookie is authentic (HMAC) but can be copied to another machine,
// which is why a known device means "this id AND a matching fingerprint".
// Nothing in this package is an identity key, and nothing here ever denies
// on its own.
//
// Fingerprint inputs (Compute): browser family and major version and OS
// parsed coarsely from User-Agent, Accept-Language, Sec-CH-UA,
// Sec-CH-UA-Platform, Sec-CH-UA-Mobile (when sent), and the JA4 string when
// TLS ends at edgeauth. Left out on purpose: the full UA string (minor
// versions change every week), IP-derived data (that is the geo signal),
// and anything a browser changes between requests.
//
// JA4 coverage (Go's tls.ClientHelloInfo, Go >= 1.24): cipher suites,
// extension list (wire order), SNI presence, ALPN, supported_versions,
// signature algorithms — everything JA4's TCP client fingerprint needs. Not
// covered: the legacy ClientHello version (not exposed; when the client
// sends no supported_versions extension Go extrapolates the list from it,
// which gives JA4 the right version), compression methods (not exposed; not
// part of JA4), QUIC and DTLS (always "t"), and the ClientHello after a
// HelloRetryRequest (callers fingerprint the first hello only). JA3 needs
// the legacy version and is not provided.
package device

import (
	"bytes"
)

// Traits are the request properties the fingerprint is built from. Byte
// slices may alias request headers; Compute does not keep them.
type Traits struct {
	UserAgent       []byte
	AcceptLanguage  []byte
	SecCHUA         []byte
	SecCHUAPlatform []byte
	SecCHUAMobile   []byte
	// JA4 is the TLS fingerprint, "" when TLS did not end here.
	JA4 string
}

// Family is a coarse browser family. The order never changes: the value is
// hashed into stored fingerprints.
type Family uint8

const (
	FamilyOther Family = iota
	FamilyChrome
	FamilyEdge
	FamilyOpera
	FamilySamsung
	FamilyFirefox
	FamilySafari
	FamilyCurl
)

var familyNames = [...]string{"other", "chrome", "edge", "opera", "samsung", "firefox", "safari", "curl"}

func (f Family) String() string {
	if int(f) < len(familyNames) {
		return familyNames[f]
	}
	return "other"
}

// Chromium reports whether the family is built on Chromium (sends UA-CH).
func (f Family) Chromium() bool {
	return f == FamilyChrome || f == FamilyEdge || f == FamilyOpera || f == FamilySamsung
}

// OS is a coarse operating system. The order never changes.
type OS uint8

const (
	OSOther OS = iota
	OSWindows
	OSMacOS
	OSIOS
	OSAndroid
	OSLinux
	OSChromeOS
)

var osNames = [...]string{"other", "windows", "macos", "ios", "android", "linux", "chromeos"}

func (o OS) String() string {
	if int(o) < len(osNames) {
		return osNames[o]
	}
	return "other"
}

// UA is what ParseUserAgent extracts.
type UA struct {
	Family Family
	Major  int // 0 if unknown
	// ChromiumMajor is the Chrome/ token's major for Chromium browsers,
	// which is what Sec-CH-UA's "Chromium" brand carries.
	ChromiumMajor int
	OS            OS
}

type token struct {
	marker []byte
	family Family
}

// Order matters: Edge, Opera and Samsung also carry "Chrome/", and Chrome
// carries "Safari/".
var familyTokens = []token{
	{[]byte("Edg/"), FamilyEdge},
	{[]byte("EdgA/"), FamilyEdge},
	{[]byte("EdgiOS/"), FamilyEdge},
	{[]byte("OPR/"), FamilyOpera},
	{[]byte("SamsungBrowser/"), FamilySamsung},
	{[]byte("CriOS/"), FamilyChrome},
	{[]byte("Chrome/"), FamilyChrome},
	{[]byte("FxiOS/"), FamilyFirefox},
	{[]byte("Firefox/"), FamilyFirefox},
	{[]byte("curl/"), FamilyCurl},
}

var (
	chromeTok  = []byte("Chrome/")
	versionTok = []byte("Version/")
	safariTok  = []byte("Safari/")
)

type osToken struct {
	marker []byte
	os     OS
}

var osTokens = []osToken{
	{[]byte("Windows"), OSWindows},
	{[]byte("iPhone"), OSIOS},
	{[]byte("iPad"), OSIOS},
	{[]byte("iPod"), OSIOS},
	{[]byte("Android"), OSAndroid},
	{[]byte("CrOS"), OSChromeOS},
	{[]byte("Mac OS X"), OSMacOS},
	{[]byte("Macintosh"), OSMacOS},
	{[]byte("Linux"), OSLinux},
}

// majorAfter returns the decimal number that follows marker in s, 0 if none.
// At most 5 digits are read so hostile input cannot overflow.
func majorAfter(s, marker []byte) int {
	i := bytes.Index(s, marker)
	if i < 0 {
		return 0
	}
	n := 0
	for j, k := i+len(marker), 0; j < len(s) && k < 5; j, k = j+1, k+1 {
		c := s[j]
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// ParseUserAgent extracts family, major version and OS with a handful of
// substring checks: coarse on purpose (no regex database to keep current),
// and allocation-free.
func ParseUserAgent(ua []byte) UA {
	var u UA
	for _, t := range familyTokens {
		if bytes.Contains(ua, t.marker) {
			u.Family = t.family
			u.Major = majorAfter(ua, t.marker)
			break
		}
	}
	if u.Family == FamilyOther && bytes.Contains(ua, safariTok) && bytes.Contains(ua, versionTok) {
		u.Family = FamilySafari
		u.Major = majorAfter(ua, versionTok)
	}
	if u.Family.Chromium() {
		u.ChromiumMajor = majorAfter(ua, chromeTok)
	}
	for _, t := range osTokens {
		if bytes.Contains(ua, t.marker) {
			u.OS = t.os
			break
		}
	}
	return u
}

// FNV-1a 64: stable across processes and versions (fingerprints are stored
// in user history), allocation-free. Not a MAC: fingerprints are not
// secrets, an attacker who knows the traits can reproduce them anyway.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

type hasher uint64

func (h *hasher) byte(b byte) { *h = (*h ^ hasher(b)) * fnvPrime }

func (h *hasher) bytes(b []byte) {
	for _, c := range b {
		h.byte(c)
	}
	h.byte(0xff) // field separator: ("ab","c") != ("a","bc")
}

func (h *hasher) string(s string) {
	for i := 0; i < len(s); i++ {
		h.byte(s[i])
	}
	h.byte(0xff)
}

func (h *hasher) uint(v int) {
	for i := 0; i < 4; i++ {
		h.byte(byte(v >> (8 * i)))
	}
}

// trimOWS removes HTTP optional whitespace, which proxies may normalise.
func trimOWS(b []byte) []byte { return bytes.Trim(b, " \t") }

// Compute returns the device fingerprint of t; it is never 0 so that 0 can
// mean "unknown" in stored records.
func Compute(t Traits) uint64 {
	u := ParseUserAgent(t.UserAgent)
	h := hasher(fnvOffset)
	// Version 2 leaves out the browser's major version and the versioned
	// Sec-CH-UA brand list: browsers update themselves about monthly, and a
	// fingerprint that changes with every update would ask every user on a
	// known device to step up each time. Version consistency is still
	// checked, by HintsMismatch.
	h.byte(2) // fingerprint format version
	h.byte(byte(u.Family))
	h.byte(byte(u.OS))
	h.bytes(trimOWS(t.AcceptLanguage))
	h.bytes(trimOWS(t.SecCHUAPlatform))
	h.bytes(trimOWS(t.SecCHUAMobile))
	h.string(t.JA4)
	if h == 0 {
		h = 1
	}
	return uint64(h)
}

// ChromiumBrandMajor returns the major version of the "Chromium" brand in a
// Sec-CH-UA header (RFC 8941 list of strings with a "v" parameter), or 0
// and false when absent or malformed. Allocation-free.
func ChromiumBrandMajor(h []byte) (int, bool) {
	const brand = `"Chromium"`
	for len(h) > 0 {
		var item []byte
		if i := bytes.IndexByte(h, ','); i >= 0 {
			item, h = h[:i], h[i+1:]
		} else {
			item, h = h, nil
		}
		item = trimOWS(item)
		if !bytes.HasPrefix(item, []byte(brand)) {
			continue
		}
		rest := trimOWS(item[len(brand):])
		if !bytes.HasPrefix(rest, []byte(`;v="`)) {
			return 0, false
		}
		rest = rest[len(`;v="`):]
		n, k := 0, 0
		for k < len(rest) && k < 5 && rest[k] >= '0' && rest[k] <= '9' {
			n = n*10 + int(rest[k]-'0')
			k++
		}
		if k == 0 || k >= len(rest) || (rest[k] != '"' && rest[k] != '.') {
			return 0, false
		}
		return n, true
	}
	return 0, false
}

var platforms = []struct {
	v  []byte
	os OS
}{
	{[]byte(`"Windows"`), OSWindows},
	{[]byte(`"macOS"`), OSMacOS},
	{[]byte(`"Linux"`), OSLinux},
	{[]byte(`"Android"`), OSAndroid},
	{[]byte(`"Chrome OS"`), OSChromeOS},
	{[]byte(`"iOS"`), OSIOS},
}

// HintsMismatch reports whether the client hints contradict the
// User-Agent: hints sent by a non-Chromium UA, a Chromium major version
// that differs from the UA's, or a platform that differs from the UA's OS.
// Absent hints are never a mismatch (Firefox and Safari do not send them).
// Spoofed UAs from automation often keep the real hints, which is the case
// this catches (WICG/ua-client-hints#366).
func HintsMismatch(t Traits) bool {
	if len(t.SecCHUA) == 0 && len(t.SecCHUAPlatform) == 0 {
		return false
	}
	u := ParseUserAgent(t.UserAgent)
	if len(t.SecCHUA) > 0 {
		if !u.Family.Chromium() {
			return true
		}
		if m, ok := ChromiumBrandMajor(t.SecCHUA); ok && u.ChromiumMajor != 0 && m != u.ChromiumMajor {
			return true
		}
	}
	if p := trimOWS(t.SecCHUAPlatform); len(p) > 0 {
		for _, pl := range platforms {
			if bytes.Equal(p, pl.v) {
				return u.OS != pl.os && u.OS != OSOther
			}
		}
	}
	return false
}
