package sso

import (
	"net/url"
	"strings"
)

// maxRedirectLen bounds a return_to target; longer values are not worth the
// parsing risk and fall back to "/".
const maxRedirectLen = 4096

// SafeRedirectTarget returns raw if it is a same-origin path reference and
// "/" otherwise. Only paths that start with exactly one "/" survive; the
// result never starts with "//" or "/\".
//
// Browsers parse URLs per the WHATWG URL Standard, not RFC 3986: they drop
// tab/CR/LF anywhere, strip leading C0 controls and spaces, treat "\" as "/"
// for http(s), and skip any run of slashes after a scheme, so "/\evil.com",
// "/\t/evil.com" and "https:evil.com" all leave the origin (STANDARDS §1.12,
// oauth2-proxy GHSA-qqxw-m5fj-f7gv, GHSA-j7px-6hwj-hpjg). Rather than model
// that parser we accept a narrow, unambiguous subset: printable ASCII
// without "\" or space, no dot segments, and the same after one
// percent-decoding (which defeats "%2F%2Fevil.com" and "%5C").
func SafeRedirectTarget(raw string) string {
	return safeTarget(raw, nil)
}

// safeTarget is SafeRedirectTarget that also accepts absolute http(s) URLs
// whose host (with port, lower-cased) is in allowed.
func safeTarget(raw string, allowed map[string]struct{}) string {
	if raw == "" || len(raw) > maxRedirectLen || !plainASCII(raw) {
		return "/"
	}
	dec, err := url.PathUnescape(raw)
	if err != nil || !cleanDecoded(dec) {
		return "/"
	}
	u, err := url.Parse(raw)
	if err != nil || u.User != nil || u.Opaque != "" {
		// Opaque catches "https:evil.com" and "javascript:...".
		return "/"
	}
	if u.Scheme == "" && u.Host == "" {
		if !strings.HasPrefix(raw, "/") || strings.HasPrefix(raw, "//") ||
			strings.HasPrefix(dec, "//") || hasDotSegment(u.Path) {
			return "/"
		}
		out := u.EscapedPath()
		if u.RawQuery != "" {
			out += "?" + u.RawQuery
		}
		if !strings.HasPrefix(out, "/") || strings.HasPrefix(out, "//") {
			return "/"
		}
		return out
	}
	// url.Parse lower-cases the scheme, so "HTTPS://" and "JavaScript:" are
	// handled by the same comparison.
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || allowed == nil {
		return "/"
	}
	if _, ok := allowed[strings.ToLower(u.Host)]; !ok || hasDotSegment(u.Path) {
		return "/"
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}

// plainASCII reports whether s has only printable ASCII and no "\" or space:
// the characters WHATWG parsing strips or reinterprets.
func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c >= 0x7f || c == '\\' {
			return false
		}
	}
	return true
}

// cleanDecoded reports whether the percent-decoded target is free of the
// control characters and backslashes that encoded payloads smuggle
// ("%09", "%5C"); decoded spaces and UTF-8 are ordinary path content.
func cleanDecoded(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return false
		}
	}
	return true
}

// hasDotSegment reports whether p has a "." or ".." segment, which browsers
// resolve and which can turn "/a/..//evil.com" into a network-path after a
// second normalisation.
func hasDotSegment(p string) bool {
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}
