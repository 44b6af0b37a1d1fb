// Package clientip finds the real client address of a request for GeoIP,
// risk scoring and audit.
//
// Contract (STANDARDS §1.14): the TCP peer is the client unless the peer is a
// configured trusted proxy. Only then is the one configured forwarding header
// (X-Forwarded-For or RFC 7239 Forwarded, never both) read: all of its field
// lines are treated as one list, walked right to left, trusted entries are
// skipped and the first untrusted valid address is the client. The leftmost
// entries are whatever the client sent and are never believed on their own.
//
// Trust boundary: header content is attacker-controlled up to the first hop
// we trust. When an entry cannot be parsed (garbage, "unknown", an
// obfuscated node, a zone), or the list exceeds the configured bounds, the
// walk stops and the last trusted hop is the answer: failing closed gives a
// proxy address (an unknown location for GeoIP) rather than an address the
// attacker chose.
//
// The core (Resolver) does not import fasthttp and does not allocate.
package clientip

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unsafe"
)

// Header says which forwarding header a Resolver reads.
type Header uint8

// The order of these constants never changes.
const (
	HeaderXForwardedFor Header = iota // X-Forwarded-For
	HeaderForwarded                   // RFC 7239 Forwarded
	HeaderNone                        // no header: the TCP peer is the client
)

func (h Header) String() string {
	switch h {
	case HeaderXForwardedFor:
		return "x-forwarded-for"
	case HeaderForwarded:
		return "forwarded"
	default:
		return "none"
	}
}

// Name returns the canonical HTTP header name, "" for HeaderNone.
func (h Header) Name() string {
	switch h {
	case HeaderXForwardedFor:
		return "X-Forwarded-For"
	case HeaderForwarded:
		return "Forwarded"
	default:
		return ""
	}
}

// ParseHeader maps the config value (client_ip_header) to a Header. The empty
// string is the config default, x-forwarded-for.
func ParseHeader(s string) (Header, error) {
	switch strings.ToLower(s) {
	case "", "x-forwarded-for":
		return HeaderXForwardedFor, nil
	case "forwarded":
		return HeaderForwarded, nil
	case "none":
		return HeaderNone, nil
	}
	return HeaderNone, fmt.Errorf("clientip: unknown header %q (want x-forwarded-for, forwarded or none)", s)
}

// Limits on Options.MaxEntries: the walk keeps the rightmost entries in a
// fixed array on the stack so that it never allocates.
const (
	DefaultMaxEntries = 32
	DefaultMaxBytes   = 4096
	maxEntriesLimit   = 64
)

// Options configures a Resolver.
type Options struct {
	// Trusted lists the proxies whose forwarding headers are believed.
	// Empty (the zero value) trusts nobody: the TCP peer is always the client.
	Trusted []netip.Prefix
	// Header is "x-forwarded-for", "forwarded" or "none". "" means
	// x-forwarded-for (the config default); it only matters for trusted peers.
	Header string
	// MaxEntries bounds how many list entries are examined, counted from the
	// right. 0 means 32; at most 64.
	MaxEntries int
	// MaxBytes bounds the total size of all field lines of the header. A
	// longer header is not parsed at all and the trusted peer is the answer.
	// 0 means 4096.
	MaxBytes int
}

// Resolver resolves client addresses. It is immutable and safe for
// concurrent use.
type Resolver struct {
	trusted    []netip.Prefix
	header     Header
	maxEntries int
	maxBytes   int
}

// New validates o and builds a Resolver.
func New(o Options) (*Resolver, error) {
	h, err := ParseHeader(o.Header)
	if err != nil {
		return nil, err
	}
	r := &Resolver{header: h, maxEntries: o.MaxEntries, maxBytes: o.MaxBytes}
	if r.maxEntries == 0 {
		r.maxEntries = DefaultMaxEntries
	}
	if r.maxEntries < 0 || r.maxEntries > maxEntriesLimit {
		return nil, fmt.Errorf("clientip: max entries %d out of range 1..%d", o.MaxEntries, maxEntriesLimit)
	}
	if r.maxBytes == 0 {
		r.maxBytes = DefaultMaxBytes
	}
	if r.maxBytes < 0 || r.maxBytes > 65535 {
		return nil, errors.New("clientip: max bytes out of range 1..65535")
	}
	for _, p := range o.Trusted {
		if !p.IsValid() {
			return nil, fmt.Errorf("clientip: invalid trusted prefix %v", p)
		}
		// An IPv4 prefix also covers the IPv4-mapped form of its addresses
		// because every address is unmapped before matching.
		r.trusted = append(r.trusted, p.Masked())
	}
	return r, nil
}

// Header returns the forwarding header this resolver reads.
func (r *Resolver) Header() Header { return r.header }

// Trusted reports whether a is a configured trusted proxy.
func (r *Resolver) Trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// span locates one list entry: field line index and byte range.
type span struct {
	line       uint16
	start, end uint16
}

// Resolve returns the client address for a request that arrived from peer
// carrying headerValues, all field lines of the configured header in the
// order received (fasthttp RequestHeader.PeekAll). IPv4-mapped IPv6
// addresses are returned unmapped.
func (r *Resolver) Resolve(peer netip.Addr, headerValues [][]byte) netip.Addr {
	peer = peer.Unmap().WithZone("")
	if r.header == HeaderNone || len(headerValues) == 0 || !r.Trusted(peer) {
		// An untrusted peer's headers are the client's own words:
		// a spoofed X-Forwarded-For must not move a request to another city.
		return peer
	}
	total := 0
	for _, v := range headerValues {
		total += len(v)
	}
	if total > r.maxBytes || len(headerValues) > r.maxBytes {
		return peer
	}

	// Split every line into entries left to right, keeping only the
	// rightmost maxEntries in a ring; the walk below goes right to left.
	var ring [maxEntriesLimit]span
	n := 0 // entries seen
	for li, v := range headerValues {
		start := 0
		inQuote := false
		for i := 0; i <= len(v); i++ {
			if i < len(v) {
				c := v[i]
				if r.header == HeaderForwarded {
					// A quoted-string may contain commas (RFC 7230
					// §3.2.6); only unquoted commas separate elements.
					if c == '\\' && inQuote {
						// Skip the escaped byte, but never past the
						// end: the last entry must still be emitted
						// (and rejected), or a trailing backslash
						// would hide the rightmost hop.
						if i+1 < len(v) {
							i++
						}
						continue
					}
					if c == '"' {
						inQuote = !inQuote
						continue
					}
				}
				if c != ',' || inQuote {
					continue
				}
			}
			end := i
			if end > len(v) {
				end = len(v)
			}
			s, e := trimOWS(v, start, end)
			// Empty list elements are allowed by the list syntax
			// (RFC 9110 §5.6.1) and carry nothing.
			if s < e {
				ring[n%r.maxEntries] = span{line: uint16(li), start: uint16(s), end: uint16(e)}
				n++
			}
			start = i + 1
		}
	}

	last := peer
	kept := min(n, r.maxEntries)
	for k := 0; k < kept; k++ {
		sp := ring[(n-1-k)%r.maxEntries]
		raw := headerValues[sp.line][sp.start:sp.end]
		var a netip.Addr
		var ok bool
		if r.header == HeaderForwarded {
			a, ok = ParseForwardedElement(raw)
		} else {
			a, ok = ParseXFFEntry(raw)
		}
		if !ok {
			return last
		}
		if !r.Trusted(a) {
			return a
		}
		last = a
	}
	// Every examined entry was a trusted proxy (or the list was longer than
	// the bound): the leftmost trusted hop is the best we can vouch for.
	return last
}

func trimOWS(v []byte, s, e int) (int, int) {
	for s < e && (v[s] == ' ' || v[s] == '\t') {
		s++
	}
	for e > s && (v[e-1] == ' ' || v[e-1] == '\t') {
		e--
	}
	return s, e
}

// parseAddr parses a textual IP without allocating. Zones are rejected: a
// scoped address names no place and would defeat prefix matching.
func parseAddr(b []byte) (netip.Addr, bool) {
	if len(b) == 0 || len(b) > 45 {
		return netip.Addr{}, false
	}
	for _, c := range b {
		if c == '%' {
			return netip.Addr{}, false
		}
	}
	// netip.ParseAddr only retains its argument for zones, which are
	// rejected above, so viewing the bytes as a string is safe here and
	// keeps the hot path free of allocations.
	a, err := netip.ParseAddr(unsafe.String(unsafe.SliceData(b), len(b)))
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func validPort(b []byte) bool {
	if len(b) == 0 || len(b) > 5 {
		return false
	}
	p := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
		p = p*10 + int(c-'0')
	}
	return p <= 65535
}

// ParseXFFEntry parses one X-Forwarded-For entry: an IPv4 or IPv6 address,
// optionally bracketed, optionally with a port ("1.2.3.4:80",
// "[2001:db8::1]:443"), as some proxies write them.
func ParseXFFEntry(b []byte) (netip.Addr, bool) {
	return parseNode(b, false)
}

// parseNode parses an address with optional port. strictV6 requires IPv6 to
// be bracketed (RFC 7239 §6).
func parseNode(b []byte, strictV6 bool) (netip.Addr, bool) {
	if len(b) == 0 {
		return netip.Addr{}, false
	}
	if b[0] == '[' {
		i := 1
		for i < len(b) && b[i] != ']' {
			i++
		}
		if i == len(b) {
			return netip.Addr{}, false
		}
		a, ok := parseAddr(b[1:i])
		if !ok || !a.Is6() {
			return netip.Addr{}, false
		}
		rest := b[i+1:]
		if len(rest) > 0 && (rest[0] != ':' || !validNodePort(rest[1:], strictV6)) {
			return netip.Addr{}, false
		}
		return a, true
	}
	colons, last := 0, -1
	for i, c := range b {
		if c == ':' {
			colons++
			last = i
		}
	}
	if colons == 1 {
		a, ok := parseAddr(b[:last])
		if !ok || !a.Is4() || !validNodePort(b[last+1:], strictV6) {
			return netip.Addr{}, false
		}
		return a, true
	}
	if colons > 1 && strictV6 {
		return netip.Addr{}, false
	}
	return parseAddr(b)
}

// validNodePort accepts a decimal port, and in Forwarded also an obfuscated
// port ("_abc", RFC 7239 §6.3), which names no address and is harmless.
func validNodePort(b []byte, forwarded bool) bool {
	if forwarded && len(b) > 1 && b[0] == '_' {
		for _, c := range b[1:] {
			if !isObfChar(c) {
				return false
			}
		}
		return true
	}
	return validPort(b)
}

func isObfChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

// ParseForwardedElement returns the address of the for= parameter of one
// RFC 7239 forwarded-element ("for=192.0.2.60;proto=http;by=203.0.113.43",
// `for="[2001:db8:cafe::17]:4711"`). It fails for a missing or repeated
// for=, "unknown", obfuscated identifiers (RFC 7239 §6.2–6.3), unbracketed
// IPv6 and malformed pairs: each is a hop we cannot place.
func ParseForwardedElement(b []byte) (netip.Addr, bool) {
	var val []byte
	found := false
	i := 0
	for i < len(b) {
		// pair: token "=" ( token / quoted-string ), separated by ";"
		s := i
		for i < len(b) && b[i] != '=' && b[i] != ';' {
			i++
		}
		if i == len(b) || b[i] != '=' {
			return netip.Addr{}, false
		}
		ks, ke := trimOWS(b, s, i)
		name := b[ks:ke]
		i++ // '='
		for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
			i++
		}
		var v []byte
		if i < len(b) && b[i] == '"' {
			i++
			vs := i
			for i < len(b) && b[i] != '"' {
				if b[i] == '\\' {
					// No valid node needs escaping; an escape is an
					// attempt to smuggle something past a parser.
					return netip.Addr{}, false
				}
				i++
			}
			if i == len(b) {
				return netip.Addr{}, false
			}
			v = b[vs:i]
			i++
		} else {
			vs := i
			for i < len(b) && b[i] != ';' {
				i++
			}
			_, ve := trimOWS(b, vs, i)
			v = b[vs:ve]
		}
		for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
			i++
		}
		if i < len(b) {
			if b[i] != ';' {
				return netip.Addr{}, false
			}
			i++
		}
		if len(name) == 0 {
			return netip.Addr{}, false
		}
		if len(name) == 3 && (name[0]|0x20) == 'f' && (name[1]|0x20) == 'o' && (name[2]|0x20) == 'r' {
			if found {
				// RFC 7239 §4: a parameter MUST NOT occur more than once.
				return netip.Addr{}, false
			}
			found = true
			val = v
		}
	}
	if !found {
		return netip.Addr{}, false
	}
	return parseNode(val, true)
}
