// Package risk scores authenticated requests from where they come from and
// which device sends them, against what edgeauth remembers about the user.
//
// Layers: Engine.Evaluate is pure (no I/O, no clock, no allocation);
// Service adds GeoIP, the device cookie, and history loading/saving through
// a HistoryStore with an in-process L1; middleware.go is the fasthttp
// adapter; risk/replay runs recorded events through the same Service.
//
// Contract: a risk score is advice to policy, never a decision by itself.
// Reasons are either "hard" (the operator named them: denied countries or
// ASNs, Tor when forbidden) or behavioural (new device, new country,
// impossible travel, ...). Policy must never hard-deny on behavioural
// reasons alone by default: a user who can prove who they are with a
// step-up must not be locked out by a heuristic. Technical failures
// (history store down, corrupt GeoIP record) fail closed to step-up via the
// assessment_unavailable reason, as Auth0 does.
//
// Trust boundary: the client IP must come from middleware/clientip; device
// traits and the device cookie come from the client and are only weak
// evidence (see package device).
package risk

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/edgeauth/edgeauth/middleware/reqstate"
	"github.com/edgeauth/edgeauth/middleware/risk/device"
)

// Reason is why the score moved. The order never changes (metrics).
type Reason uint8

const (
	ReasonNewDevice Reason = iota
	ReasonNewCountry
	ReasonNewASN
	ReasonImpossibleTravel
	ReasonAnonymousIP
	ReasonTor
	ReasonHosting
	ReasonCountryDenied
	ReasonCountryNotAllowed
	ReasonASNDenied
	ReasonFingerprintChanged
	ReasonClientHintsMismatch
	ReasonUnknownLocation
	ReasonAssessmentUnavailable
	ReasonInitialLogin
	numReasons
)

var reasonNames = [numReasons]string{
	"new_device", "new_country", "new_asn", "impossible_travel", "anonymous_ip", "tor", "hosting",
	"country_denied", "country_not_allowed", "asn_denied", "fingerprint_changed",
	"client_hints_mismatch", "unknown_location", "assessment_unavailable", "initial_login",
}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// ReasonNames lists every reason in order (for metrics pre-registration and
// config validation).
func ReasonNames() []string { return slices.Clone(reasonNames[:]) }

// DefaultWeights are the score contributions used when Options.Weights does
// not name a reason. Behavioural weights are sized against a step-up
// threshold of 40: a new device alone (a new laptop at home) stays below,
// a new country plus a new network, or any impossible travel, reaches it.
var DefaultWeights = map[string]int{
	"new_device": 30, "new_country": 40, "new_asn": 10, "impossible_travel": 80,
	"anonymous_ip": 60, "tor": 80, "hosting": 40,
	"country_denied": 100, "country_not_allowed": 100, "asn_denied": 100,
	"fingerprint_changed": 50, "client_hints_mismatch": 10,
	"unknown_location": 0, "assessment_unavailable": 50, "initial_login": 0,
}

// Options configure an Engine. The zero value is usable.
type Options struct {
	// Weights maps reason names to score weights. A missing name takes its
	// DefaultWeights value; 0 disables the reason's score (it is still
	// reported); an unknown name is an error.
	Weights map[string]int
	// MaxSpeedKMH is the impossible-travel speed. Zero means 1000 km/h.
	MaxSpeedKMH float64
	// MinTravelKM is the floor under which no travel is computed, whatever
	// the accuracy radii. Zero means 100 km (STANDARDS §3.5).
	MinTravelKM float64
	// CountryDeny and CountryAllow are ISO 3166-1 alpha-2 codes. An empty
	// allow list allows every country; an unknown location is neither
	// denied nor outside the allow list (it is reported as unknown_location).
	CountryDeny, CountryAllow []string
	// ASNDeny lists denied autonomous systems.
	ASNDeny []uint32
	// DenyTor makes a Tor exit a hard deny instead of a behavioural signal.
	DenyTor bool
	// Limits bound histories (and define what "expired" means here).
	Limits Limits
}

// Engine evaluates rules. Build it once with NewEngine; it is immutable and
// safe for concurrent use.
type Engine struct {
	weights     [numReasons]int
	hard        [numReasons]bool
	speed       float64
	minKM       float64
	countryDeny [][2]byte
	countryOK   [][2]byte
	asnDeny     []uint32
	lim         Limits
}

// NewEngine validates o and compiles it. Every problem is reported.
func NewEngine(o Options) (*Engine, error) {
	e := &Engine{speed: o.MaxSpeedKMH, minKM: o.MinTravelKM, lim: o.Limits.withDefaults(), asnDeny: slices.Clone(o.ASNDeny)}
	var errs []error
	for i, n := range reasonNames {
		e.weights[i] = DefaultWeights[n]
	}
	for n, w := range o.Weights {
		i := slices.Index(reasonNames[:], n)
		if i < 0 {
			errs = append(errs, fmt.Errorf("risk: rules.%s: unknown rule", n))
			continue
		}
		if w < 0 {
			errs = append(errs, fmt.Errorf("risk: rules.%s: weight %d is negative", n, w))
		}
		e.weights[i] = w
	}
	if e.speed == 0 {
		e.speed = 1000
	}
	if e.minKM == 0 {
		e.minKM = 100
	}
	if e.speed < 0 || math.IsNaN(e.speed) {
		errs = append(errs, fmt.Errorf("risk: impossible_travel_kmh: %v must be positive", o.MaxSpeedKMH))
	}
	parse := func(key string, in []string) [][2]byte {
		var out [][2]byte
		for i, c := range in {
			cc, ok := countryCode(c)
			if !ok || !validCode(cc) {
				errs = append(errs, fmt.Errorf("risk: %s[%d]: %q is not an upper-case ISO 3166-1 alpha-2 code", key, i, c))
				continue
			}
			out = append(out, cc)
		}
		return out
	}
	e.countryDeny = parse("country_deny", o.CountryDeny)
	e.countryOK = parse("country_allow", o.CountryAllow)
	e.hard[ReasonCountryDenied] = true
	e.hard[ReasonCountryNotAllowed] = true
	e.hard[ReasonASNDenied] = true
	e.hard[ReasonTor] = o.DenyTor
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return e, nil
}

// Limits returns the history limits the engine was built with.
func (e *Engine) Limits() Limits { return e.lim }

// IsHardDeny reports whether r is an operator-named deny (deny lists, Tor
// when DenyTor) rather than a behavioural signal.
func (e *Engine) IsHardDeny(r Reason) bool { return r < numReasons && e.hard[r] }

// Input is one request's signals.
type Input struct {
	Location reqstate.Location
	// DeviceID is from a valid device cookie; zero means none.
	DeviceID device.ID
	// Fingerprint is device.Compute of this request; 0 means unknown.
	Fingerprint uint64
	// SessionFingerprint is the fingerprint recorded when the session was
	// created or stepped up; 0 means unknown.
	SessionFingerprint uint64
	// HintsMismatch is device.HintsMismatch of this request.
	HintsMismatch bool
	// Unavailable says a signal could not be assessed (history store or
	// GeoIP failed): fail closed to step-up.
	Unavailable bool
	// AcceptedNetwork says this request comes from the address the session
	// passed a login or step-up from. Properties of that address
	// (anonymous network, hosting, Tor where not denied) were judged then;
	// raising them again would ask a VPN user to step up on every request.
	// Hard-deny reasons still apply.
	AcceptedNetwork bool
	// NoDevice says the client is not a browser with a device cookie (a
	// bearer-token API client): device rules do not apply to it.
	NoDevice bool
}

// MaxReasons bounds Result.Reasons.
const MaxReasons = reqstate.MaxReasons

// Result is an evaluation. It is a value type so Evaluate never allocates.
type Result struct {
	Score    int
	Reasons  [MaxReasons]Reason
	N        int
	HardDeny bool // at least one hard-deny reason fired
	// TravelKMH is the computed speed (0 when not computed), for audit.
	TravelKMH float64
}

// List returns the reasons that fired.
func (r *Result) List() []Reason { return r.Reasons[:r.N] }

// Has reports whether reason fired.
func (r *Result) Has(reason Reason) bool { return slices.Contains(r.Reasons[:r.N], reason) }

func (e *Engine) add(out *Result, r Reason) {
	out.Score += e.weights[r]
	if e.hard[r] {
		out.HardDeny = true
	}
	if out.N < MaxReasons {
		out.Reasons[out.N] = r
		out.N++
	}
}

// EarthRadiusKM is the IUGG mean radius.
const EarthRadiusKM = 6371.0088

// HaversineKM is the great-circle distance between two points in degrees.
func HaversineKM(lat1, lon1, lat2, lon2 float64) float64 {
	const rad = math.Pi / 180
	dLat := (lat2 - lat1) * rad
	dLon := (lon2 - lon1) * rad
	a := math.Sin(dLat/2)*math.Sin(dLat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dLon/2)*math.Sin(dLon/2)
	return 2 * EarthRadiusKM * math.Asin(math.Sqrt(math.Min(1, a)))
}

// Evaluate scores in against hist (nil = no history) at now into out. It
// does not allocate. Hard-deny reasons are evaluated first so they are
// never the ones dropped when more than MaxReasons fire.
//
// Rules and their edge cases:
//   - Empty history (first login, or everything expired) reports
//     initial_login and skips the "new ..." and travel rules: there is
//     nothing to compare with, and the login itself just authenticated.
//   - An unknown location (private IP, no database, not listed) reports
//     unknown_location (neutral by default) and skips country, ASN and
//     travel rules; it is never treated as home.
//   - Impossible travel: distance d between the last location and this one;
//     if d <= max(radius_last + radius_now, MinTravelKM) nothing is
//     computed (city-level noise, London→Boxford). Otherwise the speed is
//     (d − radius_last − radius_now) / max(Δt, 1 min).
//   - Clock going backwards (Δt ≤ 0: events out of order, skewed replicas)
//     is treated as Δt = 1 minute, the most suspicious case: a distance
//     beyond the floor at "no time" is impossible. It fails towards step-up,
//     never towards trusting the request.
//   - A device cookie whose id is known but with another fingerprint is
//     fingerprint_changed (the cookie moved to another device), not
//     new_device; so is a session used from a fingerprint other than the
//     one it was created on.
func (e *Engine) Evaluate(in Input, hist *History, now time.Time, out *Result) {
	*out = Result{}
	loc := &in.Location
	known := loc.Country != "" || loc.HasCoordinates
	cc, hasCC := countryCode(loc.Country)

	// Hard, operator-named rules first.
	if hasCC {
		if slices.Contains(e.countryDeny, cc) {
			e.add(out, ReasonCountryDenied)
		}
		if len(e.countryOK) > 0 && !slices.Contains(e.countryOK, cc) {
			e.add(out, ReasonCountryNotAllowed)
		}
	}
	if loc.ASN != 0 && slices.Contains(e.asnDeny, loc.ASN) {
		e.add(out, ReasonASNDenied)
	}
	network := numReasons
	switch {
	case loc.TorExit:
		network = ReasonTor
	case loc.Anonymous || loc.AnonymousVPN || loc.PublicProxy:
		network = ReasonAnonymousIP
	case loc.Hosting:
		network = ReasonHosting
	}
	if network != numReasons && (!in.AcceptedNetwork || e.hard[network]) {
		e.add(out, network)
	}
	if in.Unavailable {
		e.add(out, ReasonAssessmentUnavailable)
	}
	if in.HintsMismatch {
		e.add(out, ReasonClientHintsMismatch)
	}
	if in.SessionFingerprint != 0 && in.Fingerprint != 0 && in.SessionFingerprint != in.Fingerprint {
		e.add(out, ReasonFingerprintChanged)
	}
	if !known {
		e.add(out, ReasonUnknownLocation)
	}
	t := now.Unix()
	cut := t - int64(e.lim.TTL/time.Second)
	if hist.Empty() {
		e.add(out, ReasonInitialLogin)
		return
	}

	// Device.
	deviceKnown, moved := false, false
	if !in.DeviceID.IsZero() {
		for i := range hist.Devices {
			d := &hist.Devices[i]
			if d.ID != in.DeviceID || d.LastSeen < cut {
				continue
			}
			if d.Fingerprint == in.Fingerprint || d.Fingerprint == 0 || in.Fingerprint == 0 {
				deviceKnown = true
			} else {
				moved = true
			}
		}
	}
	switch {
	case deviceKnown, in.NoDevice:
	case moved:
		if !out.Has(ReasonFingerprintChanged) {
			e.add(out, ReasonFingerprintChanged)
		}
	default:
		e.add(out, ReasonNewDevice)
	}

	if hasCC {
		seen := false
		for i := range hist.Countries {
			if hist.Countries[i].Code == cc && hist.Countries[i].LastSeen >= cut {
				seen = true
				break
			}
		}
		if !seen {
			e.add(out, ReasonNewCountry)
		}
	}
	if loc.ASN != 0 {
		seen := false
		for i := range hist.ASNs {
			if hist.ASNs[i].ASN == loc.ASN && hist.ASNs[i].LastSeen >= cut {
				seen = true
				break
			}
		}
		if !seen {
			e.add(out, ReasonNewASN)
		}
	}

	// Travel from the last location.
	last := &hist.Last
	if hist.HasLast && last.HasCoordinates && loc.HasCoordinates && last.Time >= t-int64(e.lim.LocationTTL/time.Second)-60 {
		d := HaversineKM(last.Latitude, last.Longitude, loc.Latitude, loc.Longitude)
		radii := float64(last.AccuracyKM) + float64(loc.AccuracyKM)
		if d > math.Max(radii, e.minKM) {
			dt := float64(t-last.Time) / 3600
			if dt < 1.0/60 {
				dt = 1.0 / 60
			}
			out.TravelKMH = (d - radii) / dt
			if out.TravelKMH > e.speed {
				e.add(out, ReasonImpossibleTravel)
			}
		}
	}
}
