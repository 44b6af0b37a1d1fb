package token

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// maxJSONDepth bounds nesting in headers and claims. Real tokens nest two or
// three levels (cnf.jkt, realm_access.roles); deep nesting only serves to
// exhaust a parser's stack or CPU.
const maxJSONDepth = 16

// b64 is RFC 7515 §2 base64url: no padding, no whitespace, and (Strict)
// canonical trailing bits, so one token has exactly one encoding and a
// cache key or replay key cannot be dodged by flipping pad bits
// (RFC 8725 §2.6 multiplicity of encodings).
var b64 = base64.RawURLEncoding.Strict()

// splitCompact splits a compact JWS into its three segments. Anything that
// is not exactly three non-empty-header segments of base64url characters is
// rejected here, before any decoding: JSON serialization (starts with '{'),
// JWE (five segments), whitespace, padding.
func splitCompact(raw []byte) (hdr, payload, sig []byte, err error) {
	for _, c := range raw {
		if !isB64URLChar(c) && c != '.' {
			return nil, nil, nil, errors.New("character outside the base64url alphabet")
		}
	}
	i := bytes.IndexByte(raw, '.')
	if i <= 0 {
		return nil, nil, nil, errors.New("not a compact JWS")
	}
	j := bytes.IndexByte(raw[i+1:], '.')
	if j < 0 {
		return nil, nil, nil, errors.New("not a compact JWS")
	}
	j += i + 1
	if bytes.IndexByte(raw[j+1:], '.') >= 0 {
		return nil, nil, nil, errors.New("more than three segments (JWE or garbage)")
	}
	return raw[:i], raw[i+1 : j], raw[j+1:], nil
}

func isB64URLChar(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// decodeSegment decodes one base64url segment strictly.
func decodeSegment(seg []byte) ([]byte, error) {
	out := make([]byte, b64.DecodedLen(len(seg)))
	n, err := b64.Decode(out, seg)
	if err != nil {
		return nil, fmt.Errorf("base64url: %w", err)
	}
	return out[:n], nil
}

// checkJSON enforces what encoding/json does not: the document is UTF-8, a
// single JSON object, with unique member names at every level (RFC 7515 §4,
// RFC 7519 §4: we reject rather than take the last, so an upstream with a
// first-wins parser cannot be shown a different identity) and nesting of at
// most maxJSONDepth.
func checkJSON(doc []byte) error {
	if !utf8.Valid(doc) {
		return errors.New("json: not UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	type frame struct {
		obj   bool
		keys  map[string]struct{}
		atKey bool // object: next token is a member name
	}
	var stack []frame
	first := true
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			if len(stack) != 0 || first {
				return errors.New("json: truncated")
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("json: %w", err)
		}
		if first {
			if d, ok := tok.(json.Delim); !ok || d != '{' {
				return errors.New("json: not an object")
			}
			first = false
			stack = append(stack, frame{obj: true, keys: map[string]struct{}{}, atKey: true})
			continue
		}
		if len(stack) == 0 {
			return errors.New("json: trailing data")
		}
		top := &stack[len(stack)-1]
		if top.obj && top.atKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && stack[len(stack)-1].obj {
					stack[len(stack)-1].atKey = true
				}
				continue
			}
			name, ok := tok.(string)
			if !ok {
				return errors.New("json: bad member name")
			}
			if _, dup := top.keys[name]; dup {
				return fmt.Errorf("json: duplicate member name")
			}
			top.keys[name] = struct{}{}
			top.atKey = false
			continue
		}
		// A value (or the end of an array).
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				if len(stack) >= maxJSONDepth {
					return errors.New("json: nested too deeply")
				}
				f := frame{obj: d == '{', atKey: d == '{'}
				if f.obj {
					f.keys = map[string]struct{}{}
				}
				stack = append(stack, f)
				continue
			case ']':
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && stack[len(stack)-1].obj {
					stack[len(stack)-1].atKey = true
				}
				continue
			}
		}
		if top.obj {
			top.atKey = true
		}
	}
}

// decodeJSONSegment decodes a base64url segment and checks it with
// checkJSON, returning the raw JSON.
func decodeJSONSegment(seg []byte) ([]byte, error) {
	doc, err := decodeSegment(seg)
	if err != nil {
		return nil, err
	}
	if err := checkJSON(doc); err != nil {
		return nil, err
	}
	return doc, nil
}
