// Package rawhead reads field names from a request head exactly as the
// client sent it (fasthttp's RequestHeader.RawHeaders). Steps that only
// need to know which names were sent use it instead of iterating the
// parsed headers: RequestHeader.All parses the Cookie lines, which fasthttp
// then sends upstream re-serialised (merged, quotes dropped), and walks
// every header besides.
package rawhead

import (
	"bytes"
	"iter"
)

// Names yields the name of every field line of raw, with trailing blanks
// trimmed; lines without a colon or with an empty name are skipped. The
// slices alias raw.
func Names(raw []byte) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for len(raw) > 0 {
			line := raw
			if i := bytes.IndexByte(raw, '\n'); i >= 0 {
				line, raw = raw[:i], raw[i+1:]
			} else {
				raw = nil
			}
			i := bytes.IndexByte(line, ':')
			if i <= 0 {
				continue
			}
			if name := bytes.TrimRight(line[:i], " \t"); len(name) > 0 && !yield(name) {
				return
			}
		}
	}
}

// Count returns how many field lines of raw are named name, in any case.
func Count(raw, name []byte) int {
	n := 0
	for k := range Names(raw) {
		if bytes.EqualFold(k, name) {
			n++
		}
	}
	return n
}
