package risk

import (
	"math"
	"testing"
	"time"

	"github.com/edgeauth/edgeauth/middleware/reqstate"
	"github.com/edgeauth/edgeauth/middleware/risk/device"
	"github.com/google/go-cmp/cmp"
)

// Locations as in MaxMind's City test database (STANDARDS §4.2).
var (
	london    = reqstate.Location{Country: "GB", City: "London", Latitude: 51.5142, Longitude: -0.0931, AccuracyKM: 10, HasCoordinates: true, ASN: 2856}
	boxford   = reqstate.Location{Country: "GB", City: "Boxford", Latitude: 51.75, Longitude: -1.25, AccuracyKM: 100, HasCoordinates: true, ASN: 2856}
	linkoping = reqstate.Location{Country: "SE", City: "Linköping", Latitude: 58.4167, Longitude: 15.6167, AccuracyKM: 76, HasCoordinates: true, ASN: 3301}
	changchun = reqstate.Location{Country: "CN", City: "Changchun", Latitude: 43.88, Longitude: 125.3228, AccuracyKM: 100, HasCoordinates: true, ASN: 4837}
	milton    = reqstate.Location{Country: "US", City: "Milton", Latitude: 47.2513, Longitude: -122.3149, AccuracyKM: 22, HasCoordinates: true, ASN: 7018}
	tokyo6    = reqstate.Location{Country: "JP", Latitude: 35.68536, Longitude: 139.75309, AccuracyKM: 100, HasCoordinates: true}
	bhutan    = reqstate.Location{Country: "BT", Latitude: 27.5, Longitude: 90.5, AccuracyKM: 534, HasCoordinates: true}
)

var t0 = time.Date(2026, 8, 17, 9, 0, 0, 0, time.UTC)

const laptopFP = 0x1234

var laptop = device.ID{1}

// sarah signed in from London on her laptop at t0.
func sarah() *History {
	h := &History{}
	h.RecordSuccess(london, laptop, laptopFP, t0, Limits{})
	return h
}

func TestHaversineFixtures(t *testing.T) {
	t.Parallel()
	// STANDARDS §3.5 worked fixtures.
	tests := []struct {
		a, b reqstate.Location
		km   float64
	}{
		{london, boxford, 84.0},
		{london, linkoping, 1257.7},
		{london, milton, 7732.3},
		{london, changchun, 8182.1},
		{linkoping, tokyo6, 8343.6},
	}
	for _, tc := range tests {
		got := HaversineKM(tc.a.Latitude, tc.a.Longitude, tc.b.Latitude, tc.b.Longitude)
		if math.Abs(got-tc.km) > 0.1 {
			t.Errorf("%s→%s = %.1f km, want %.1f", tc.a.City, tc.b.City, got, tc.km)
		}
	}
}

func TestEvaluateRules(t *testing.T) {
	t.Parallel()
	eng, err := NewEngine(Options{CountryDeny: []string{"KP"}, ASNDeny: []uint32{666}})
	if err != nil {
		t.Fatal(err)
	}
	strict, err := NewEngine(Options{CountryAllow: []string{"GB", "SE"}, DenyTor: true})
	if err != nil {
		t.Fatal(err)
	}
	evicted := &History{}
	lim := Limits{MaxDevices: 2}
	evicted.RecordSuccess(london, laptop, laptopFP, t0, lim)
	evicted.RecordSuccess(london, device.ID{2}, 2, t0.Add(time.Hour), lim)
	evicted.RecordSuccess(london, device.ID{3}, 3, t0.Add(2*time.Hour), lim)
	tests := []struct {
		name     string
		eng      *Engine
		in       Input
		hist     *History
		at       time.Duration
		want     []Reason
		score    int
		hardDeny bool
	}{
		{name: "returning user, known device, same city", in: Input{Location: london, DeviceID: laptop, Fingerprint: laptopFP}, hist: sarah(), at: 10 * time.Minute},
		{name: "Sarah: cookie used from Changchun ten minutes later", in: Input{Location: changchun, DeviceID: device.ID{9}, Fingerprint: 99}, hist: sarah(), at: 10 * time.Minute,
			want: []Reason{ReasonNewDevice, ReasonNewCountry, ReasonNewASN, ReasonImpossibleTravel}, score: 160},
		{name: "first login: nothing to compare", in: Input{Location: changchun}, hist: nil, want: []Reason{ReasonInitialLogin}},
		{name: "new laptop at home", in: Input{Location: london, DeviceID: device.ID{7}, Fingerprint: 7}, hist: sarah(), at: 24 * time.Hour, want: []Reason{ReasonNewDevice}, score: 30},
		{name: "no device cookie", in: Input{Location: london, Fingerprint: laptopFP}, hist: sarah(), at: time.Hour, want: []Reason{ReasonNewDevice}, score: 30},
		{name: "device cookie moved to another browser", in: Input{Location: london, DeviceID: laptop, Fingerprint: 4242}, hist: sarah(), at: time.Hour, want: []Reason{ReasonFingerprintChanged}, score: 50},
		{name: "session fingerprint differs", in: Input{Location: london, DeviceID: laptop, Fingerprint: laptopFP, SessionFingerprint: 77}, hist: sarah(), at: time.Hour, want: []Reason{ReasonFingerprintChanged}, score: 50},
		{name: "same city twice, one minute apart", in: Input{Location: london, DeviceID: laptop, Fingerprint: laptopFP}, hist: sarah(), at: time.Minute},
		{name: "London to Boxford in 5 min: within accuracy radii", in: Input{Location: boxford, DeviceID: laptop, Fingerprint: laptopFP}, hist: sarah(), at: 5 * time.Minute},
		{name: "slow travel that is possible: London to Linköping in 3 h", in: Input{Location: linkoping, DeviceID: laptop, Fingerprint: laptopFP}, hist: sarah(), at: 3 * time.Hour,
			want: []Reason{ReasonNewCountry, ReasonNewASN}, score: 50},
		{name: "London to Linköping in 30 min is impossible", in: Input{Location: linkoping, DeviceID: laptop, Fingerprint: laptopFP}, hist: sarah(), at: 30 * time.Minute,
			want: []Reason{ReasonNewCountry, ReasonNewASN, ReasonImpossibleTravel}, score: 130},
		{name: "London to Milton at 8.5 h is a flight", in: Input{Location: milton, DeviceID: laptop, Fingerprint: laptopFP}, hist: sarah(), at: 8*time.Hour + 30*time.Minute,
			want: []Reason{ReasonNewCountry, ReasonNewASN}, score: 50},
		{name: "accuracy radius larger than the distance", in: Input{Location: bhutan, DeviceID: laptop, Fingerprint: laptopFP},
			hist: func() *History {
				h := &History{}
				h.RecordSuccess(reqstate.Location{Country: "BT", Latitude: 27.9, Longitude: 90.1, AccuracyKM: 534, HasCoordinates: true}, laptop, laptopFP, t0, Limits{})
				return h
			}(), at: time.Minute},
		{name: "clock going backwards: far away is impossible", in: Input{Location: changchun, DeviceID: laptop, Fingerprint: laptopFP}, hist: sarah(), at: -time.Hour,
			want: []Reason{ReasonNewCountry, ReasonNewASN, ReasonImpossibleTravel}, score: 130},
		{name: "clock going backwards: same place is fine", in: Input{Location: london, DeviceID: laptop, Fingerprint: laptopFP}, hist: sarah(), at: -time.Hour},
		{name: "IPv6 Tokyo from London in 1 h", in: Input{Location: tokyo6, DeviceID: laptop, Fingerprint: laptopFP}, hist: sarah(), at: time.Hour,
			want: []Reason{ReasonNewCountry, ReasonImpossibleTravel}, score: 120},
		{name: "unknown location is neutral", in: Input{DeviceID: laptop, Fingerprint: laptopFP}, hist: sarah(), at: time.Minute, want: []Reason{ReasonUnknownLocation}},
		{name: "last location expired: no travel", in: Input{Location: changchun, DeviceID: laptop, Fingerprint: laptopFP},
			hist: func() *History { h := sarah(); h.Devices[0].LastSeen = t0.Add(9 * 24 * time.Hour).Unix(); return h }(), at: 9 * 24 * time.Hour,
			want: []Reason{ReasonNewCountry, ReasonNewASN}, score: 50},
		{name: "device expired after 30 days", in: Input{Location: london, DeviceID: laptop, Fingerprint: laptopFP}, hist: sarah(), at: 31 * 24 * time.Hour,
			want: []Reason{ReasonNewDevice, ReasonNewCountry, ReasonNewASN}, score: 80},
		{name: "history eviction: oldest device forgotten", in: Input{Location: london, DeviceID: laptop, Fingerprint: laptopFP}, hist: evicted, at: 3 * time.Hour,
			want: []Reason{ReasonNewDevice}, score: 30},
		{name: "history eviction: newer device kept", in: Input{Location: london, DeviceID: device.ID{2}, Fingerprint: 2}, hist: evicted, at: 3 * time.Hour},
		{name: "anonymous VPN", in: Input{Location: func() reqstate.Location { l := london; l.Anonymous, l.AnonymousVPN = true, true; return l }(), DeviceID: laptop, Fingerprint: laptopFP}, hist: sarah(), at: time.Hour,
			want: []Reason{ReasonAnonymousIP}, score: 60},
		{name: "Tor is behavioural by default", in: Input{Location: reqstate.Location{Anonymous: true, TorExit: true}, DeviceID: laptop, Fingerprint: laptopFP}, hist: sarah(), at: time.Hour,
			want: []Reason{ReasonTor, ReasonUnknownLocation}, score: 80},
		{name: "Tor is a hard deny where forbidden", eng: strict, in: Input{Location: reqstate.Location{Anonymous: true, TorExit: true}, DeviceID: laptop, Fingerprint: laptopFP}, hist: sarah(), at: time.Hour,
			want: []Reason{ReasonTor, ReasonUnknownLocation}, score: 80, hardDeny: true},
		{name: "VPN address the session stepped up from is not asked about again", in: Input{Location: func() reqstate.Location { l := london; l.Anonymous, l.AnonymousVPN = true, true; return l }(), DeviceID: laptop, Fingerprint: laptopFP, AcceptedNetwork: true}, hist: sarah(), at: time.Hour},
		{name: "accepted network does not lift a hard deny", eng: strict, in: Input{Location: reqstate.Location{Anonymous: true, TorExit: true}, DeviceID: laptop, Fingerprint: laptopFP, AcceptedNetwork: true}, hist: sarah(), at: time.Hour,
			want: []Reason{ReasonTor, ReasonUnknownLocation}, score: 80, hardDeny: true},
		{name: "hosting network", in: Input{Location: func() reqstate.Location { l := london; l.Hosting = true; return l }(), DeviceID: laptop, Fingerprint: laptopFP}, hist: sarah(), at: time.Hour,
			want: []Reason{ReasonHosting}, score: 40},
		{name: "denied country", in: Input{Location: reqstate.Location{Country: "KP"}, DeviceID: laptop, Fingerprint: laptopFP}, hist: sarah(), at: time.Hour,
			want: []Reason{ReasonCountryDenied, ReasonNewCountry}, score: 140, hardDeny: true},
		{name: "outside allow list", eng: strict, in: Input{Location: milton, DeviceID: laptop, Fingerprint: laptopFP}, hist: sarah(), at: 24 * time.Hour,
			want: []Reason{ReasonCountryNotAllowed, ReasonNewCountry, ReasonNewASN}, score: 150, hardDeny: true},
		{name: "allow list ignores unknown location", eng: strict, in: Input{DeviceID: laptop, Fingerprint: laptopFP}, hist: sarah(), at: time.Hour, want: []Reason{ReasonUnknownLocation}},
		{name: "denied ASN", in: Input{Location: func() reqstate.Location { l := london; l.ASN = 666; return l }(), DeviceID: laptop, Fingerprint: laptopFP}, hist: sarah(), at: time.Hour,
			want: []Reason{ReasonASNDenied, ReasonNewASN}, score: 110, hardDeny: true},
		{name: "client hints mismatch", in: Input{Location: london, DeviceID: laptop, Fingerprint: laptopFP, HintsMismatch: true}, hist: sarah(), at: time.Hour,
			want: []Reason{ReasonClientHintsMismatch}, score: 10},
		{name: "store unavailable fails closed to step-up", in: Input{Location: london, DeviceID: laptop, Fingerprint: laptopFP, Unavailable: true}, hist: nil,
			want: []Reason{ReasonAssessmentUnavailable, ReasonInitialLogin}, score: 50},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := tc.eng
			if e == nil {
				e = eng
			}
			var r Result
			e.Evaluate(tc.in, tc.hist, t0.Add(tc.at), &r)
			if diff := cmp.Diff(tc.want, r.List(), cmp.Comparer(func(a, b []Reason) bool { return len(a) == len(b) && (len(a) == 0 || cmp.Equal(a, b)) })); diff != "" {
				t.Errorf("reasons (-want +got):\n%s", diff)
			}
			if r.Score != tc.score || r.HardDeny != tc.hardDeny {
				t.Errorf("score %d hard %v, want %d %v", r.Score, r.HardDeny, tc.score, tc.hardDeny)
			}
		})
	}
}

func TestSpeedConfigurable(t *testing.T) {
	t.Parallel()
	slow, err := NewEngine(Options{MaxSpeedKMH: 250}) // Curity's default
	if err != nil {
		t.Fatal(err)
	}
	var r Result
	// London→Linköping (1,257.7 km minus 86 km radii) in 3 h = 390 km/h.
	slow.Evaluate(Input{Location: linkoping, DeviceID: laptop, Fingerprint: laptopFP}, sarah(), t0.Add(3*time.Hour), &r)
	if !r.Has(ReasonImpossibleTravel) || math.Abs(r.TravelKMH-390.6) > 1 {
		t.Fatalf("got %v at %.1f km/h", r.List(), r.TravelKMH)
	}
}

func TestNewEngineErrors(t *testing.T) {
	t.Parallel()
	_, err := NewEngine(Options{Weights: map[string]int{"new_devcie": 10, "tor": -1}, CountryDeny: []string{"gb"}, CountryAllow: []string{"GBR"}, MaxSpeedKMH: -5})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"rules.new_devcie", "rules.tor", "country_deny[0]", "country_allow[0]", "impossible_travel_kmh"} {
		if !contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
	e, err := NewEngine(Options{Weights: map[string]int{"new_device": 0}})
	if err != nil {
		t.Fatal(err)
	}
	var r Result
	e.Evaluate(Input{Location: london}, sarah(), t0, &r)
	if r.Score != 0 || !r.Has(ReasonNewDevice) {
		t.Fatalf("weight 0 must disable the score but keep the reason: %+v", r)
	}
	if !e.IsHardDeny(ReasonCountryDenied) || e.IsHardDeny(ReasonImpossibleTravel) || e.IsHardDeny(ReasonTor) {
		t.Fatal("hard/behavioural classification wrong")
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestThresholds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		th   Thresholds
		r    Result
		want reqstate.Decision
	}{
		{Thresholds{}, Result{Score: 39}, reqstate.DecisionAllow},
		{Thresholds{}, Result{Score: 40}, reqstate.DecisionStepUp},
		{Thresholds{}, Result{Score: 500}, reqstate.DecisionStepUp}, // behaviour never locks out by default
		{Thresholds{StepUpAt: 60, DenyAt: 90}, Result{Score: 90}, reqstate.DecisionDeny},
		{Thresholds{}, Result{Score: 0, HardDeny: true}, reqstate.DecisionDeny},
	}
	for i, tc := range tests {
		if got := tc.th.Decide(&tc.r); got != tc.want {
			t.Errorf("%d: %v want %v", i, got, tc.want)
		}
	}
}

func TestEvaluateAllocs(t *testing.T) {
	eng, _ := NewEngine(Options{CountryDeny: []string{"KP"}})
	h := sarah()
	in := Input{Location: changchun, DeviceID: device.ID{9}, Fingerprint: 9}
	var r Result
	if n := testing.AllocsPerRun(500, func() { eng.Evaluate(in, h, t0.Add(time.Minute), &r) }); n != 0 {
		t.Fatalf("Evaluate allocates %v", n)
	}
}

func BenchmarkEvaluate(b *testing.B) {
	eng, _ := NewEngine(Options{})
	h := sarah()
	in := Input{Location: london, DeviceID: laptop, Fingerprint: laptopFP}
	now := t0.Add(time.Hour)
	var r Result
	b.ReportAllocs()
	for b.Loop() {
		eng.Evaluate(in, h, now, &r)
	}
}
