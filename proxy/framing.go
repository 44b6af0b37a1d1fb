package proxy

import (
	"bytes"
	"errors"
)

// Framing errors. fasthttp already rejects duplicate Content-Length and
// repeated Transfer-Encoding lines; these cover what it lets through.
var (
	// ErrAmbiguousFraming: Content-Length and Transfer-Encoding together.
	// fasthttp lets TE win silently; a front end and a back end that disagree
	// on which wins is the classic CL.TE / TE.CL smuggling setup, so the
	// request is refused outright (RFC 9112 §6.3 item 3 allows it; we require it).
	ErrAmbiguousFraming = errors.New("proxy: both Content-Length and Transfer-Encoding")
	// ErrObsoleteFolding: a header line continued with leading whitespace.
	// RFC 9112 §5.2 lets a server reject obs-fold with 400; fasthttp joins the
	// lines instead, and an upstream that does not would see other headers.
	ErrObsoleteFolding = errors.New("proxy: obsolete header line folding")
)

// CheckFraming inspects the raw header block (field lines exactly as
// received, without the request line) for framing a proxy must not forward.
// It does not allocate.
func CheckFraming(raw []byte) error {
	_, err := scanFields(raw)
	return err
}

// scanFields is CheckFraming plus, in the same pass, which of fieldNames
// the client sent (bit i for fieldNames[i]), so the hygiene that follows
// deletes only what is there instead of searching for every name.
func scanFields(raw []byte) (fieldMask, error) {
	var cl, te bool
	var m fieldMask
	for len(raw) > 0 {
		end := bytes.IndexByte(raw, '\n')
		line := raw
		if end >= 0 {
			line = raw[:end]
			raw = raw[end+1:]
		} else {
			raw = nil
		}
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if len(line) == 0 {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			return 0, ErrObsoleteFolding
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			continue
		}
		name := line[:colon]
		for len(name) > 0 && (name[len(name)-1] == ' ' || name[len(name)-1] == '\t') {
			name = name[:len(name)-1]
		}
		switch {
		case asciiEqualFold(name, "content-length"):
			cl = true
		case asciiEqualFold(name, "transfer-encoding"):
			te = true
		default:
			m |= fieldBit(name, fieldNames)
		}
	}
	if cl && te {
		return 0, ErrAmbiguousFraming
	}
	return m, nil
}

func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range b {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// TargetHost returns the authority a request addresses. RFC 9112 §3.2.2: for
// an absolute-form target the server MUST ignore the Host header and use the
// target's authority; otherwise Host. requestURI is the raw request-target.
// This is the one rule routing, the body-limit hook and the upstream Host
// header all use, so they can never disagree (STANDARDS §1.15).
func TargetHost(requestURI, hostHeader []byte) []byte {
	if len(requestURI) == 0 || requestURI[0] == '/' || requestURI[0] == '*' {
		return hostHeader
	}
	i := 0
	for i+2 < len(requestURI) {
		if requestURI[i] == ':' && requestURI[i+1] == '/' && requestURI[i+2] == '/' {
			break
		}
		i++
	}
	if i+2 >= len(requestURI) {
		return hostHeader
	}
	rest := requestURI[i+3:]
	end := len(rest)
	for j, c := range rest {
		if c == '/' || c == '?' || c == '#' {
			end = j
			break
		}
	}
	auth := rest[:end]
	if at := lastIndexByte(auth, '@'); at >= 0 { // userinfo is not part of the host
		auth = auth[at+1:]
	}
	return auth
}

// RawPath returns the path part of a raw request-target (origin or absolute
// form), without query. It is not normalised, so it must not pick a route:
// routing and the body-limit hook both use fasthttp's normalised path.
func RawPath(requestURI []byte) []byte {
	p := requestURI
	if len(p) > 0 && p[0] != '/' {
		if i := indexSeq(p, "://"); i >= 0 {
			p = p[i+3:]
			if j := bytes.IndexByte(p, '/'); j >= 0 {
				p = p[j:]
			} else {
				return slash
			}
		}
	}
	if q := bytes.IndexByte(p, '?'); q >= 0 {
		p = p[:q]
	}
	return p
}

func lastIndexByte(b []byte, c byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == c {
			return i
		}
	}
	return -1
}

func indexSeq(b []byte, s string) int {
	for i := 0; i+len(s) <= len(b); i++ {
		if string(b[i:i+len(s)]) == s {
			return i
		}
	}
	return -1
}

var slash = []byte("/")
