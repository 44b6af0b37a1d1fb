package device

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"slices"
)

// isGREASE reports RFC 8701 values (0x0A0A, 0x1A1A, ... 0xFAFA), which
// clients insert at random and JA4 ignores.
func isGREASE(v uint16) bool { return v&0x0f0f == 0x0a0a && v>>8 == v&0xff }

// JA4 returns the JA4 TLS client fingerprint (FoxIO JA4, BSD-3-Clause) of a
// ClientHello: "t" + version + SNI flag + cipher and extension counts +
// ALPN ends, "_" truncated SHA-256 of the sorted ciphers, "_" truncated
// SHA-256 of the sorted extensions (without SNI and ALPN) and the signature
// algorithms in wire order. See the package doc for what Go exposes.
// It returns "" for a nil hello.
func JA4(h *tls.ClientHelloInfo) string {
	if h == nil {
		return ""
	}
	var buf [128]byte
	out := buf[:0]
	out = append(out, 't')
	var maxV uint16
	for _, v := range h.SupportedVersions {
		if !isGREASE(v) && v > maxV && !isDTLS(v) {
			maxV = v
		}
	}
	for _, v := range h.SupportedVersions {
		if maxV == 0 && isDTLS(v) {
			maxV = v // DTLS numbers count down; take the first
		}
	}
	out = append(out, versionCode(maxV)...)
	sni := h.ServerName != ""
	ciphers := make([]uint16, 0, len(h.CipherSuites))
	for _, c := range h.CipherSuites {
		if !isGREASE(c) {
			ciphers = append(ciphers, c)
		}
	}
	exts := make([]uint16, 0, len(h.Extensions))
	nExt := 0
	for _, e := range h.Extensions {
		if isGREASE(e) {
			continue
		}
		nExt++
		if e == 0x0000 {
			sni = true
			continue
		}
		if e == 0x0010 {
			continue
		}
		exts = append(exts, e)
	}
	if sni {
		out = append(out, 'd')
	} else {
		out = append(out, 'i')
	}
	out = appendCount(out, len(ciphers))
	out = appendCount(out, nExt)
	out = appendALPN(out, h.SupportedProtos)
	out = append(out, '_')

	slices.Sort(ciphers)
	s := make([]byte, 0, 5*len(ciphers)+5*len(exts)+5*len(h.SignatureSchemes)+1)
	for i, c := range ciphers {
		if i > 0 {
			s = append(s, ',')
		}
		s = appendHex4(s, c)
	}
	out = appendHash12(out, s)
	out = append(out, '_')

	slices.Sort(exts)
	s = s[:0]
	for i, e := range exts {
		if i > 0 {
			s = append(s, ',')
		}
		s = appendHex4(s, e)
	}
	first := true
	for _, a := range h.SignatureSchemes {
		if isGREASE(uint16(a)) {
			continue
		}
		if first {
			s = append(s, '_')
			first = false
		} else {
			s = append(s, ',')
		}
		s = appendHex4(s, uint16(a))
	}
	if len(exts) == 0 {
		s = s[:0] // JA4: no extensions → zeros, whatever the sigalgs
	}
	out = appendHash12(out, s)
	return string(out)
}

func isDTLS(v uint16) bool { return v >= 0xfefc && v <= 0xfeff }

func versionCode(v uint16) string {
	switch v {
	case 0x0304:
		return "13"
	case 0x0303:
		return "12"
	case 0x0302:
		return "11"
	case 0x0301:
		return "10"
	case 0x0300:
		return "s3"
	case 0x0002:
		return "s2"
	case 0xfeff:
		return "d1"
	case 0xfefd:
		return "d2"
	case 0xfefc:
		return "d3"
	default:
		return "00"
	}
}

func appendCount(b []byte, n int) []byte {
	if n > 99 {
		n = 99
	}
	return append(b, byte('0'+n/10), byte('0'+n%10))
}

func alnum(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
}

const hexdigits = "0123456789abcdef"

func appendALPN(b []byte, protos []string) []byte {
	if len(protos) == 0 || protos[0] == "" {
		return append(b, '0', '0')
	}
	p := protos[0]
	f, l := p[0], p[len(p)-1]
	if alnum(f) && alnum(l) {
		return append(b, f, l)
	}
	// JA4: non-alphanumeric ALPN → first and last character of its hex form.
	return append(b, hexdigits[f>>4], hexdigits[l&0x0f])
}

func appendHex4(b []byte, v uint16) []byte {
	return append(b, hexdigits[v>>12], hexdigits[v>>8&0xf], hexdigits[v>>4&0xf], hexdigits[v&0xf])
}

func appendHash12(b, s []byte) []byte {
	if len(s) == 0 {
		return append(b, "000000000000"...)
	}
	sum := sha256.Sum256(s)
	var h [64]byte
	hex.Encode(h[:], sum[:])
	return append(b, h[:12]...)
}
