package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrBadRoute is wrapped by every route-table build error.
var ErrBadRoute = errors.New("proxy: bad route")

// maxHostLen bounds host names (RFC 1035 §2.3.4: 255 octets); longer hosts
// never match a named route, which also keeps Match allocation-free.
const maxHostLen = 255

// TableEntry is one (host, path prefix) pair; its index in the slice passed
// to CompileTable is what Match returns.
type TableEntry struct {
	// Host is an exact host ("app.example.com"), a wildcard ("*.example.com",
	// matching exactly one extra label, like TLS certificates), or "" / "*"
	// for any host. Case-insensitive, no port.
	Host string
	// PathPrefix is matched on path-segment boundaries: "/api" matches "/api"
	// and "/api/x" but not "/apix"; a prefix ending in "/" matches anything
	// below it. "" means "/".
	PathPrefix string
}

type prefixEntry struct {
	prefix string
	idx    int
}

type hostRoutes struct {
	// prefixes sorted by length, longest first, so the first hit is the
	// longest matching prefix.
	prefixes []prefixEntry
}

// Table maps (host, path) to a route index. It is immutable once compiled
// and safe for concurrent use; Match does not allocate.
//
// Host selection works like nginx server blocks: the exact host wins over a
// wildcard, which wins over the catch-all; within the chosen host only that
// host's prefixes are considered. A host no entry names gets the default.
type Table struct {
	exact map[string]*hostRoutes
	wild  map[string]*hostRoutes // keyed by the suffix after "*."
	any   *hostRoutes
	def   int
}

// CompileTable validates entries and builds the table. defaultIdx is the
// index returned for unknown hosts, -1 for none (404).
func CompileTable(entries []TableEntry, defaultIdx int) (*Table, error) {
	if defaultIdx < -1 || defaultIdx >= len(entries) {
		return nil, fmt.Errorf("%w: default route index %d out of range", ErrBadRoute, defaultIdx)
	}
	t := &Table{exact: map[string]*hostRoutes{}, wild: map[string]*hostRoutes{}, def: defaultIdx}
	seen := map[[2]string]int{}
	var errs []error
	for i, e := range entries {
		host := strings.ToLower(strings.TrimSuffix(e.Host, "."))
		prefix := e.PathPrefix
		if prefix == "" {
			prefix = "/"
		}
		if !strings.HasPrefix(prefix, "/") {
			errs = append(errs, fmt.Errorf("%w: route %d: path prefix %q must start with /", ErrBadRoute, i, e.PathPrefix))
			continue
		}
		var hr **hostRoutes
		switch {
		case host == "" || host == "*":
			hr = &t.any
		case strings.HasPrefix(host, "*."):
			suffix := host[2:]
			if err := checkHostName(suffix); err != nil {
				errs = append(errs, fmt.Errorf("%w: route %d: host %q: %w", ErrBadRoute, i, e.Host, err))
				continue
			}
			h := t.wild[suffix]
			if h == nil {
				h = &hostRoutes{}
				t.wild[suffix] = h
			}
			hr = &h
		default:
			if err := checkHostName(host); err != nil {
				errs = append(errs, fmt.Errorf("%w: route %d: host %q: %w", ErrBadRoute, i, e.Host, err))
				continue
			}
			h := t.exact[host]
			if h == nil {
				h = &hostRoutes{}
				t.exact[host] = h
			}
			hr = &h
		}
		if *hr == nil {
			*hr = &hostRoutes{}
		}
		key := [2]string{host, prefix}
		if j, dup := seen[key]; dup {
			errs = append(errs, fmt.Errorf("%w: route %d: host %q path %q duplicates route %d", ErrBadRoute, i, e.Host, prefix, j))
			continue
		}
		seen[key] = i
		(*hr).prefixes = append((*hr).prefixes, prefixEntry{prefix: prefix, idx: i})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	sortRoutes := func(h *hostRoutes) {
		if h == nil {
			return
		}
		sort.SliceStable(h.prefixes, func(a, b int) bool { return len(h.prefixes[a].prefix) > len(h.prefixes[b].prefix) })
	}
	for _, h := range t.exact {
		sortRoutes(h)
	}
	for _, h := range t.wild {
		sortRoutes(h)
	}
	sortRoutes(t.any)
	return t, nil
}

func checkHostName(h string) error {
	if h == "" || len(h) > maxHostLen {
		return errors.New("empty or too long")
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return fmt.Errorf("invalid character %q (no port, no scheme, no wildcard inside)", c)
		}
	}
	return nil
}

// Match returns the route index for host (as sent: any case, optional port,
// optional trailing dot) and the normalised path, or -1.
func (t *Table) Match(host, path []byte) int {
	var buf [maxHostLen]byte
	h, ok := normalizeHost(buf[:0], host)
	if !ok {
		return t.def
	}
	if hr := t.exact[string(h)]; hr != nil { // map index with string(b) does not allocate
		return hr.match(path)
	}
	if i := bytes.IndexByte(h, '.'); i > 0 && len(t.wild) > 0 {
		if hr := t.wild[string(h[i+1:])]; hr != nil {
			return hr.match(path)
		}
	}
	if t.any != nil {
		return t.any.match(path)
	}
	return t.def
}

func (hr *hostRoutes) match(path []byte) int {
	for _, p := range hr.prefixes {
		if prefixMatch(path, p.prefix) {
			return p.idx
		}
	}
	return -1
}

// prefixMatch matches on segment boundaries so "/admin" does not cover
// "/administrator" by accident.
func prefixMatch(path []byte, prefix string) bool {
	if len(path) < len(prefix) || string(path[:len(prefix)]) != prefix {
		return false
	}
	return len(path) == len(prefix) || prefix[len(prefix)-1] == '/' || path[len(prefix)] == '/'
}

// normalizeHost lowercases host into dst, strips the port and one trailing
// dot. It reports false for hosts that cannot name a route.
func normalizeHost(dst, host []byte) ([]byte, bool) {
	if len(host) > 0 && host[0] == '[' { // IPv6 literal
		end := bytes.IndexByte(host, ']')
		if end < 0 {
			return nil, false
		}
		host = host[:end+1]
	} else if i := bytes.IndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	if n := len(host); n > 0 && host[n-1] == '.' {
		host = host[:n-1]
	}
	if len(host) == 0 || len(host) > cap(dst) {
		return nil, false
	}
	for _, c := range host {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst, true
}
