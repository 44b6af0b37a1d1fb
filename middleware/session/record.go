package session

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"
)

// RecordVersion is the first byte of every encoded Session. A reader that
// sees another value refuses the record instead of guessing: a rolling
// deploy that changes the layout must bump it and keep decoding the old one.
const RecordVersion byte = 1

// Limits on encoded records. They bound what a hostile or corrupted record
// (Redis written by someone else, a tampered snapshot) can make us allocate:
// every length is checked against them and against the bytes actually left
// before anything is allocated.
const (
	// MaxRecordSize bounds a whole encoded session.
	MaxRecordSize = 1 << 20
	// MaxFieldSize bounds one string field (an ID token is the largest,
	// typically 1-4 KiB).
	MaxFieldSize = 64 << 10
	// MaxListLen bounds Groups, AMR, the number of Claims and the values of
	// one claim.
	MaxListLen = 4096
)

// Ranges outside of which a record is refused rather than silently wrapped.
const (
	minUnix           = -62135596800 // 0001-01-01T00:00:00Z
	maxUnix           = 253402300799 // 9999-12-31T23:59:59Z
	maxStepUpFailures = 1<<31 - 1
)

// ErrRecord is wrapped by every UnmarshalBinary failure so callers can tell
// a corrupt record (treat as no session) from other errors.
var ErrRecord = errors.New("session: malformed record")

// MarshalBinary encodes s in the compact, versioned record format:
//
//	version byte (RecordVersion)
//	strings:  uvarint length, bytes
//	bools:    one byte, 0 or 1
//	times:    one byte 0 (zero time) or 1 followed by varint Unix seconds
//	          and uvarint nanoseconds (< 1e9); the location is not kept,
//	          decoded times are UTC
//	lists:    uvarint count, then the strings
//	claims:   uvarint count, then key and value list, keys strictly ascending
//	integers: uvarint (Fingerprint, Version), varint (StepUpFailures)
//
// Fields appear in the order of the Session struct. Empty and nil lists both
// decode as nil. It fails when a field exceeds the limits above, so that we
// never write a record we would refuse to read.
func (s *Session) MarshalBinary() ([]byte, error) {
	n := s.encodedSizeHint()
	if n > MaxRecordSize {
		return nil, fmt.Errorf("session: marshal: record of about %d bytes exceeds %d", n, MaxRecordSize)
	}
	w := recordWriter{b: make([]byte, 0, n)}
	w.b = append(w.b, RecordVersion)
	w.str(s.ID)
	w.str(s.Issuer)
	w.str(s.Subject)
	w.str(s.SID)
	w.str(s.Email)
	w.bool(s.EmailVerified)
	w.str(s.PreferredUsername)
	w.str(s.Name)
	w.list(s.Groups)
	w.claims(s.Claims)
	w.str(s.ACR)
	w.list(s.AMR)
	w.time(s.AuthTime)
	w.str(s.IDToken)
	w.str(s.RefreshToken)
	w.time(s.TokenExpiry)
	w.time(s.CreatedAt)
	w.time(s.LastSeen)
	w.time(s.ExpiresAt)
	w.str(s.IP)
	w.str(s.Country)
	w.str(s.DeviceID)
	w.b = binary.AppendUvarint(w.b, s.Fingerprint)
	if s.StepUpFailures < 0 || s.StepUpFailures > maxStepUpFailures {
		w.fail(fmt.Errorf("step-up failures %d out of range", s.StepUpFailures))
	}
	w.b = binary.AppendVarint(w.b, int64(s.StepUpFailures))
	w.b = binary.AppendUvarint(w.b, s.Version)
	if w.err != nil {
		return nil, fmt.Errorf("session: marshal: %w", w.err)
	}
	if len(w.b) > MaxRecordSize {
		return nil, fmt.Errorf("session: marshal: record of %d bytes exceeds %d", len(w.b), MaxRecordSize)
	}
	return w.b, nil
}

// UnmarshalBinary decodes a record written by MarshalBinary into s,
// replacing all of its fields. It never panics on hostile input: it rejects
// an unknown version, lengths beyond the limits or beyond the input,
// non-canonical booleans and times, unsorted or duplicate claim keys,
// invalid UTF-8 and trailing bytes. On error s is left unchanged.
//
// All string fields share one copy of data (one allocation for the strings
// instead of one per field), so data may be reused by the caller afterwards.
func (s *Session) UnmarshalBinary(data []byte) error {
	if len(data) == 0 {
		return fmt.Errorf("%w: empty", ErrRecord)
	}
	if len(data) > MaxRecordSize {
		return fmt.Errorf("%w: %d bytes exceeds %d", ErrRecord, len(data), MaxRecordSize)
	}
	if data[0] != RecordVersion {
		return fmt.Errorf("%w: unknown version %d", ErrRecord, data[0])
	}
	r := recordReader{src: string(data[1:])}
	var out Session
	out.ID = r.str()
	out.Issuer = r.str()
	out.Subject = r.str()
	out.SID = r.str()
	out.Email = r.str()
	out.EmailVerified = r.bool()
	out.PreferredUsername = r.str()
	out.Name = r.str()
	out.Groups = r.list()
	out.Claims = r.claims()
	out.ACR = r.str()
	out.AMR = r.list()
	out.AuthTime = r.time()
	out.IDToken = r.str()
	out.RefreshToken = r.str()
	out.TokenExpiry = r.time()
	out.CreatedAt = r.time()
	out.LastSeen = r.time()
	out.ExpiresAt = r.time()
	out.IP = r.str()
	out.Country = r.str()
	out.DeviceID = r.str()
	out.Fingerprint = r.uvarint()
	sf := r.varint()
	out.Version = r.uvarint()
	if r.err == nil && (sf < 0 || sf > maxStepUpFailures) {
		r.err = fmt.Errorf("step-up failures %d out of range", sf)
	}
	if r.err == nil && r.off != len(r.src) {
		r.err = fmt.Errorf("%d trailing bytes", len(r.src)-r.off)
	}
	if r.err != nil {
		return fmt.Errorf("%w: %w", ErrRecord, r.err)
	}
	out.StepUpFailures = int(sf)
	*s = out
	return nil
}

// encodedSizeHint returns an upper bound of the encoded size, used to size
// the buffer once.
func (s *Session) encodedSizeHint() int {
	const v = binary.MaxVarintLen64
	n := 1 + 3*v + 6*(1+2*v)
	for _, f := range [...]string{s.ID, s.Issuer, s.Subject, s.SID, s.Email, s.PreferredUsername,
		s.Name, s.ACR, s.IDToken, s.RefreshToken, s.IP, s.Country, s.DeviceID} {
		n += v + len(f)
	}
	n += v
	for _, g := range s.Groups {
		n += v + len(g)
	}
	n += v
	for _, a := range s.AMR {
		n += v + len(a)
	}
	n += v
	for k, vals := range s.Claims {
		n += 2*v + len(k)
		for _, x := range vals {
			n += v + len(x)
		}
	}
	return n + 1
}

type recordWriter struct {
	b   []byte
	err error
}

func (w *recordWriter) str(s string) {
	if len(s) > MaxFieldSize {
		w.fail(fmt.Errorf("field of %d bytes exceeds %d", len(s), MaxFieldSize))
		return
	}
	if !utf8.ValidString(s) {
		w.fail(errors.New("field is not valid UTF-8"))
		return
	}
	w.b = binary.AppendUvarint(w.b, uint64(len(s)))
	w.b = append(w.b, s...)
}

func (w *recordWriter) bool(v bool) {
	if v {
		w.b = append(w.b, 1)
	} else {
		w.b = append(w.b, 0)
	}
}

func (w *recordWriter) time(t time.Time) {
	if t.IsZero() {
		w.b = append(w.b, 0)
		return
	}
	if sec := t.Unix(); sec < minUnix || sec > maxUnix {
		w.fail(fmt.Errorf("time %v outside years 1-9999", t))
		return
	}
	w.b = append(w.b, 1)
	w.b = binary.AppendVarint(w.b, t.Unix())
	w.b = binary.AppendUvarint(w.b, uint64(t.Nanosecond()))
}

func (w *recordWriter) list(l []string) {
	if len(l) > MaxListLen {
		w.fail(fmt.Errorf("list of %d entries exceeds %d", len(l), MaxListLen))
		return
	}
	w.b = binary.AppendUvarint(w.b, uint64(len(l)))
	for _, s := range l {
		w.str(s)
	}
}

func (w *recordWriter) claims(m map[string][]string) {
	if len(m) > MaxListLen {
		w.fail(fmt.Errorf("%d claims exceed %d", len(m), MaxListLen))
		return
	}
	// Sorted keys make the encoding deterministic, and the reader can reject
	// duplicates by requiring strict order.
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	w.b = binary.AppendUvarint(w.b, uint64(len(keys)))
	for _, k := range keys {
		w.str(k)
		w.list(m[k])
	}
}

func (w *recordWriter) fail(err error) {
	if w.err == nil {
		w.err = err
	}
}

// recordReader reads from one string so that decoded fields are substrings
// of it. After the first error every method returns zero values.
type recordReader struct {
	src string
	off int
	err error
}

func (r *recordReader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *recordReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	var x uint64
	var shift uint
	for i := 0; ; i++ {
		if r.off >= len(r.src) {
			r.fail(errors.New("truncated integer"))
			return 0
		}
		c := r.src[r.off]
		r.off++
		if i == binary.MaxVarintLen64-1 && c > 1 {
			r.fail(errors.New("integer overflows 64 bits"))
			return 0
		}
		if c < 0x80 {
			// Reject non-minimal encodings (a trailing 0x00 group) so
			// every value has exactly one encoding.
			if c == 0 && i > 0 {
				r.fail(errors.New("non-minimal integer"))
				return 0
			}
			return x | uint64(c)<<shift
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
}

func (r *recordReader) varint() int64 {
	ux := r.uvarint()
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x
}

// length reads a length and checks it against max and the bytes left, each
// element needing at least minElem bytes, before anyone allocates for it.
func (r *recordReader) length(max, minElem int) int {
	n := r.uvarint()
	if r.err != nil {
		return 0
	}
	if n > uint64(max) {
		r.fail(fmt.Errorf("length %d exceeds %d", n, max))
		return 0
	}
	if n*uint64(minElem) > uint64(len(r.src)-r.off) {
		r.fail(fmt.Errorf("length %d exceeds the %d bytes left", n, len(r.src)-r.off))
		return 0
	}
	return int(n)
}

func (r *recordReader) str() string {
	n := r.length(MaxFieldSize, 1)
	if r.err != nil {
		return ""
	}
	s := r.src[r.off : r.off+n]
	r.off += n
	if !utf8.ValidString(s) {
		r.fail(errors.New("invalid UTF-8"))
		return ""
	}
	return s
}

func (r *recordReader) bool() bool {
	if r.err != nil {
		return false
	}
	if r.off >= len(r.src) {
		r.fail(errors.New("truncated bool"))
		return false
	}
	c := r.src[r.off]
	r.off++
	if c > 1 {
		r.fail(fmt.Errorf("bool byte %d", c))
	}
	return c == 1
}

func (r *recordReader) time() time.Time {
	if r.err != nil {
		return time.Time{}
	}
	if r.off >= len(r.src) {
		r.fail(errors.New("truncated time"))
		return time.Time{}
	}
	tag := r.src[r.off]
	r.off++
	switch tag {
	case 0:
		return time.Time{}
	case 1:
	default:
		r.fail(fmt.Errorf("time tag %d", tag))
		return time.Time{}
	}
	sec := r.varint()
	nsec := r.uvarint()
	if r.err != nil {
		return time.Time{}
	}
	if sec < minUnix || sec > maxUnix {
		r.fail(fmt.Errorf("time %d outside years 1-9999", sec))
		return time.Time{}
	}
	if nsec >= 1e9 {
		r.fail(fmt.Errorf("nanoseconds %d out of range", nsec))
		return time.Time{}
	}
	t := time.Unix(sec, int64(nsec)).UTC()
	if t.IsZero() {
		// The zero time has its own tag; a second spelling of it would
		// make the encoding ambiguous.
		r.fail(errors.New("zero time with a non-zero tag"))
		return time.Time{}
	}
	return t
}

func (r *recordReader) list() []string {
	n := r.length(MaxListLen, 1)
	if r.err != nil || n == 0 {
		return nil
	}
	l := make([]string, n)
	for i := range l {
		l[i] = r.str()
	}
	if r.err != nil {
		return nil
	}
	return l
}

func (r *recordReader) claims() map[string][]string {
	// A claim takes at least two bytes: key length and value count.
	n := r.length(MaxListLen, 2)
	if r.err != nil || n == 0 {
		return nil
	}
	m := make(map[string][]string, n)
	prev := ""
	for i := range n {
		k := r.str()
		v := r.list()
		if r.err != nil {
			return nil
		}
		if i > 0 && k <= prev {
			r.fail(errors.New("claim keys not strictly ascending"))
			return nil
		}
		prev = k
		m[k] = v
	}
	return m
}
