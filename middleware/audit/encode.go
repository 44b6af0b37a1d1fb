package audit

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendJSON appends ev as one JSON object, byte for byte what
// encoding/json writes for Event (a test and a fuzz target hold the two
// together). It exists because every request's decision is encoded, and
// reflection-based encoding was the largest part of the audit writer's
// CPU; this costs a fraction and allocates nothing when dst has room.
func (ev *Event) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"time":"`...)
	dst = ev.Time.AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","type":`...)
	dst = appendString(dst, ev.Type)
	dst = appendField(dst, "request_id", ev.RequestID)
	dst = appendField(dst, "route", ev.Route)
	dst = appendField(dst, "sub", ev.Subject)
	dst = appendField(dst, "iss", ev.Issuer)
	dst = appendField(dst, "session", ev.SessionID)
	dst = appendField(dst, "method", ev.Method)
	if ev.ClientIP.IsValid() {
		dst = append(dst, `,"client_ip":"`...)
		dst = ev.ClientIP.AppendTo(dst)
		dst = append(dst, '"')
	}
	dst = appendField(dst, "country", ev.Country)
	dst = appendField(dst, "city", ev.City)
	if ev.ASN != 0 {
		dst = append(dst, `,"asn":`...)
		dst = strconv.AppendUint(dst, uint64(ev.ASN), 10)
	}
	dst = appendField(dst, "device", ev.DeviceID)
	dst = append(dst, `,"score":`...)
	dst = strconv.AppendInt(dst, int64(ev.Score), 10)
	if len(ev.Reasons) > 0 {
		dst = append(dst, `,"reasons":[`...)
		for i, r := range ev.Reasons {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, r)
		}
		dst = append(dst, ']')
	}
	dst = append(dst, `,"decision":`...)
	dst = appendString(dst, ev.Decision)
	dst = appendField(dst, "shadow_decision", ev.Shadow)
	dst = appendField(dst, "reason", ev.DenyReason)
	if ev.Status != 0 {
		dst = append(dst, `,"status":`...)
		dst = strconv.AppendInt(dst, int64(ev.Status), 10)
	}
	dst = appendField(dst, "detail", ev.Detail)
	return append(dst, '}')
}

// appendField writes ,"name":"value" unless value is empty (omitempty).
func appendField(dst []byte, name, value string) []byte {
	if value == "" {
		return dst
	}
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':')
	return appendString(dst, value)
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string the way encoding/json does: HTML
// characters and U+2028/U+2029 escaped, invalid UTF-8 replaced by U+FFFD,
// so an audit line can be embedded anywhere without surprises.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
