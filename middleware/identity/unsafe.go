package identity

import "unsafe"

// s2b views an immutable string as bytes for fasthttp setters, which copy;
// the bytes are never written.
func s2b(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
