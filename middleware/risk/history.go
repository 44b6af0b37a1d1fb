package risk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/edgeauth/edgeauth/middleware/reqstate"
	"github.com/edgeauth/edgeauth/middleware/risk/device"
)

// DeviceRecord is one device bound to the user by a successful login or
// step-up.
type DeviceRecord struct {
	ID          device.ID
	Fingerprint uint64
	LastSeen    int64 // unix seconds
}

// CountryRecord is a country the user signed in from.
type CountryRecord struct {
	Code     [2]byte
	LastSeen int64
}

// ASNRecord is a network the user signed in from.
type ASNRecord struct {
	ASN      uint32
	LastSeen int64
}

// LastLocation is where the user was last seen on an allowed request or a
// successful login; impossible travel is measured from here.
type LastLocation struct {
	Time           int64 // unix seconds
	Latitude       float64
	Longitude      float64
	AccuracyKM     uint16
	Country        [2]byte
	HasCoordinates bool
}

// History is what edgeauth remembers about one subject. Values held in the
// L1 cache are shared and read-only: modify a Clone.
type History struct {
	Devices   []DeviceRecord
	Countries []CountryRecord
	ASNs      []ASNRecord
	Last      LastLocation
	HasLast   bool
}

// Limits bound a History.
type Limits struct {
	// MaxDevices, MaxCountries, MaxASNs cap each list; the least recently
	// seen entry is evicted first. Zero means 20 each (Okta's lookback).
	MaxDevices, MaxCountries, MaxASNs int
	// TTL is how long an unseen entry is remembered. Zero means 30 days
	// (Auth0 NewDevice).
	TTL time.Duration
	// LocationTTL is how long the last location counts for impossible
	// travel. Zero means 7 days (STANDARDS §3.5: 2–7 days).
	LocationTTL time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.MaxDevices <= 0 {
		l.MaxDevices = 20
	}
	if l.MaxCountries <= 0 {
		l.MaxCountries = 20
	}
	if l.MaxASNs <= 0 {
		l.MaxASNs = 20
	}
	if l.TTL <= 0 {
		l.TTL = 30 * 24 * time.Hour
	}
	if l.LocationTTL <= 0 {
		l.LocationTTL = 7 * 24 * time.Hour
	}
	return l
}

// Empty reports whether nothing is remembered (first login, or everything
// expired).
func (h *History) Empty() bool {
	return h == nil || (len(h.Devices) == 0 && len(h.Countries) == 0 && len(h.ASNs) == 0 && !h.HasLast)
}

// Clone returns a deep copy safe to modify.
func (h *History) Clone() *History {
	if h == nil {
		return &History{}
	}
	c := *h
	c.Devices = slices.Clone(h.Devices)
	c.Countries = slices.Clone(h.Countries)
	c.ASNs = slices.Clone(h.ASNs)
	return &c
}

func countryCode(s string) ([2]byte, bool) {
	if len(s) != 2 {
		return [2]byte{}, false
	}
	return [2]byte{s[0], s[1]}, true
}

// RecordSuccess records a successful login or step-up: binds the device
// (id with this fingerprint), remembers the country and ASN, and sets the
// last location. The proxy's login hook and replay both call exactly this.
// An unknown location keeps the previous last location: nothing to measure
// travel from is better than a false "home".
func (h *History) RecordSuccess(loc reqstate.Location, id device.ID, fp uint64, now time.Time, lim Limits) {
	lim = lim.withDefaults()
	t := now.Unix()
	h.expire(t, lim)
	if !id.IsZero() {
		i := slices.IndexFunc(h.Devices, func(d DeviceRecord) bool { return d.ID == id })
		if i >= 0 {
			h.Devices[i].Fingerprint, h.Devices[i].LastSeen = fp, t
		} else {
			h.Devices = append(h.Devices, DeviceRecord{ID: id, Fingerprint: fp, LastSeen: t})
		}
	}
	if cc, ok := countryCode(loc.Country); ok {
		i := slices.IndexFunc(h.Countries, func(c CountryRecord) bool { return c.Code == cc })
		if i >= 0 {
			h.Countries[i].LastSeen = t
		} else {
			h.Countries = append(h.Countries, CountryRecord{Code: cc, LastSeen: t})
		}
	}
	if loc.ASN != 0 {
		i := slices.IndexFunc(h.ASNs, func(a ASNRecord) bool { return a.ASN == loc.ASN })
		if i >= 0 {
			h.ASNs[i].LastSeen = t
		} else {
			h.ASNs = append(h.ASNs, ASNRecord{ASN: loc.ASN, LastSeen: t})
		}
	}
	h.setLast(loc, t)
	h.evict(lim)
}

// Touch records an allowed request: the last location and time, and the
// last-seen time of the device when it is known with this fingerprint. It
// never adds devices, countries or ASNs: a behaviour stays "new" until a
// successful login or step-up records it (Okta's rule), so an attacker's
// allowed requests cannot launder a new place into a known one.
func (h *History) Touch(loc reqstate.Location, id device.ID, fp uint64, now time.Time, lim Limits) {
	lim = lim.withDefaults()
	t := now.Unix()
	h.expire(t, lim)
	if !id.IsZero() {
		for i := range h.Devices {
			if h.Devices[i].ID == id && h.Devices[i].Fingerprint == fp {
				h.Devices[i].LastSeen = t
			}
		}
	}
	if cc, ok := countryCode(loc.Country); ok {
		for i := range h.Countries {
			if h.Countries[i].Code == cc {
				h.Countries[i].LastSeen = t
			}
		}
	}
	for i := range h.ASNs {
		if loc.ASN != 0 && h.ASNs[i].ASN == loc.ASN {
			h.ASNs[i].LastSeen = t
		}
	}
	h.setLast(loc, t)
}

func (h *History) setLast(loc reqstate.Location, t int64) {
	if !loc.HasCoordinates && loc.Country == "" {
		return
	}
	cc, _ := countryCode(loc.Country)
	h.Last = LastLocation{Time: t, Latitude: loc.Latitude, Longitude: loc.Longitude, AccuracyKM: loc.AccuracyKM, Country: cc, HasCoordinates: loc.HasCoordinates}
	h.HasLast = true
}

// NeedsTouch reports whether an allowed request should be written back:
// the location moved, or the last write is older than interval. It bounds
// the store write rate to one per interval per subject for a user who
// stays put.
func (h *History) NeedsTouch(loc reqstate.Location, now time.Time, interval time.Duration) bool {
	if h == nil || !h.HasLast {
		return loc.HasCoordinates || loc.Country != ""
	}
	if loc.HasCoordinates && (loc.Latitude != h.Last.Latitude || loc.Longitude != h.Last.Longitude) {
		return true
	}
	if cc, ok := countryCode(loc.Country); ok && cc != h.Last.Country {
		return true
	}
	return now.Unix()-h.Last.Time >= int64(interval/time.Second)
}

func (h *History) expire(t int64, lim Limits) {
	cut := t - int64(lim.TTL/time.Second)
	h.Devices = slices.DeleteFunc(h.Devices, func(d DeviceRecord) bool { return d.LastSeen < cut })
	h.Countries = slices.DeleteFunc(h.Countries, func(c CountryRecord) bool { return c.LastSeen < cut })
	h.ASNs = slices.DeleteFunc(h.ASNs, func(a ASNRecord) bool { return a.LastSeen < cut })
	if h.HasLast && h.Last.Time < t-int64(lim.LocationTTL/time.Second) {
		h.Last, h.HasLast = LastLocation{}, false
	}
}

// evict drops the least recently seen entries beyond the limits.
func (h *History) evict(lim Limits) {
	if len(h.Devices) > lim.MaxDevices {
		slices.SortStableFunc(h.Devices, func(a, b DeviceRecord) int { return int(b.LastSeen - a.LastSeen) })
		h.Devices = h.Devices[:lim.MaxDevices]
	}
	if len(h.Countries) > lim.MaxCountries {
		slices.SortStableFunc(h.Countries, func(a, b CountryRecord) int { return int(b.LastSeen - a.LastSeen) })
		h.Countries = h.Countries[:lim.MaxCountries]
	}
	if len(h.ASNs) > lim.MaxASNs {
		slices.SortStableFunc(h.ASNs, func(a, b ASNRecord) int { return int(b.LastSeen - a.LastSeen) })
		h.ASNs = h.ASNs[:lim.MaxASNs]
	}
}

// Binary format, version 1 (all integers varint unless noted):
//
//	'R' 1 | nDev {id[16] fp u64le lastSeen} | nCountry {code[2] lastSeen}
//	| nASN {asn lastSeen} | flags (bit0 last, bit1 coords)
//	| [last: time code[2] (coords: lat f64le lon f64le acc)]
const (
	histMagic   = 'R'
	histVersion = 1
	// maxEntries bounds decoding whatever the configured limits: a blob
	// from a misbehaving store must not make us allocate without limit.
	maxEntries = 1024
)

var errHistory = errors.New("risk: malformed history")

// MarshalBinary implements encoding.BinaryMarshaler.
func (h *History) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 4+len(h.Devices)*34+len(h.Countries)*8+len(h.ASNs)*10+40)
	b = append(b, histMagic, histVersion)
	b = binary.AppendUvarint(b, uint64(len(h.Devices)))
	for _, d := range h.Devices {
		b = append(b, d.ID[:]...)
		b = binary.LittleEndian.AppendUint64(b, d.Fingerprint)
		b = binary.AppendVarint(b, d.LastSeen)
	}
	b = binary.AppendUvarint(b, uint64(len(h.Countries)))
	for _, c := range h.Countries {
		b = append(b, c.Code[:]...)
		b = binary.AppendVarint(b, c.LastSeen)
	}
	b = binary.AppendUvarint(b, uint64(len(h.ASNs)))
	for _, a := range h.ASNs {
		b = binary.AppendUvarint(b, uint64(a.ASN))
		b = binary.AppendVarint(b, a.LastSeen)
	}
	var flags byte
	if h.HasLast {
		flags |= 1
		if h.Last.HasCoordinates {
			flags |= 2
		}
	}
	b = append(b, flags)
	if h.HasLast {
		b = binary.AppendVarint(b, h.Last.Time)
		b = append(b, h.Last.Country[:]...)
		if h.Last.HasCoordinates {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(h.Last.Latitude))
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(h.Last.Longitude))
			b = binary.AppendUvarint(b, uint64(h.Last.AccuracyKM))
		}
	}
	return b, nil
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = errHistory
	}
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil || len(r.b) < n {
		r.fail()
		return make([]byte, n)
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) uvarint(max uint64) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 || v > max {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) f64() float64 {
	v := math.Float64frombits(binary.LittleEndian.Uint64(r.bytes(8)))
	if math.IsNaN(v) || math.IsInf(v, 0) {
		r.fail()
	}
	return v
}

func validCode(c [2]byte) bool {
	return c == [2]byte{} || (c[0] >= 'A' && c[0] <= 'Z' && c[1] >= 'A' && c[1] <= 'Z')
}

// UnmarshalBinary implements encoding.BinaryUnmarshaler. It is strict:
// unknown versions, out-of-range values and trailing bytes are errors.
func (h *History) UnmarshalBinary(data []byte) error {
	r := reader{b: data}
	hdr := r.bytes(2)
	if r.err != nil || hdr[0] != histMagic || hdr[1] != histVersion {
		return fmt.Errorf("risk: history header: %w", errHistory)
	}
	var out History
	if n := r.uvarint(maxEntries); n > 0 {
		out.Devices = make([]DeviceRecord, n)
		for i := range out.Devices {
			copy(out.Devices[i].ID[:], r.bytes(16))
			out.Devices[i].Fingerprint = binary.LittleEndian.Uint64(r.bytes(8))
			out.Devices[i].LastSeen = r.varint()
		}
	}
	if n := r.uvarint(maxEntries); n > 0 {
		out.Countries = make([]CountryRecord, n)
		for i := range out.Countries {
			copy(out.Countries[i].Code[:], r.bytes(2))
			if !validCode(out.Countries[i].Code) || out.Countries[i].Code == [2]byte{} {
				r.fail()
			}
			out.Countries[i].LastSeen = r.varint()
		}
	}
	if n := r.uvarint(maxEntries); n > 0 {
		out.ASNs = make([]ASNRecord, n)
		for i := range out.ASNs {
			out.ASNs[i].ASN = uint32(r.uvarint(math.MaxUint32))
			out.ASNs[i].LastSeen = r.varint()
		}
	}
	flags := r.bytes(1)[0]
	if flags&^3 != 0 || flags == 2 {
		r.fail()
	}
	if flags&1 != 0 {
		out.HasLast = true
		out.Last.Time = r.varint()
		copy(out.Last.Country[:], r.bytes(2))
		if !validCode(out.Last.Country) {
			r.fail()
		}
		if flags&2 != 0 {
			out.Last.HasCoordinates = true
			out.Last.Latitude = r.f64()
			out.Last.Longitude = r.f64()
			out.Last.AccuracyKM = uint16(r.uvarint(math.MaxUint16))
			if math.Abs(out.Last.Latitude) > 90 || math.Abs(out.Last.Longitude) > 180 {
				r.fail()
			}
		}
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail()
	}
	if r.err != nil {
		return fmt.Errorf("risk: decode history: %w", r.err)
	}
	*h = out
	return nil
}
