// Package riskeval generates a synthetic but realistic, labelled evaluation
// set of access events and scores it through the risk replay engine, per
// rule set: the share of attacks stepped up or blocked (target >= 99%) and
// the share of legitimate requests asked to step up (target <= 1%).
//
// Everything is deterministic from the seed. The GeoIP databases the events
// need are written with mmdbwriter into a temporary directory: a
// residential and a mobile network per city, plus hosting, VPN and Tor
// ranges. No MaxMind file is used or copied.
//
// The population: users live in one of 40 world cities, sign in on their
// laptop every 7 days, make requests on working days from their home ISP
// and sometimes from the mobile network while commuting; some fly abroad at
// airliner speed (and complete a step-up on arrival), some fly within their
// country, some buy a new laptop. Attacks: a stolen session cookie used
// from another continent hours after the victim's last request, a password
// login from a new device in a new country, Tor, and hosting networks.
package riskeval

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/edgeauth/edgeauth/middleware/risk"
	"github.com/edgeauth/edgeauth/middleware/risk/geoip"
	"github.com/edgeauth/edgeauth/middleware/risk/geoip/geoiptest"
	"github.com/edgeauth/edgeauth/middleware/risk/replay"
)

type city struct {
	name, country string
	lat, lon      float64
	continent     byte
}

var cities = []city{
	{"London", "GB", 51.507, -0.128, 'E'}, {"Manchester", "GB", 53.48, -2.24, 'E'}, {"Paris", "FR", 48.857, 2.352, 'E'},
	{"Lyon", "FR", 45.76, 4.84, 'E'}, {"Berlin", "DE", 52.52, 13.405, 'E'}, {"Munich", "DE", 48.137, 11.575, 'E'},
	{"Madrid", "ES", 40.417, -3.704, 'E'}, {"Rome", "IT", 41.9, 12.5, 'E'}, {"Stockholm", "SE", 59.33, 18.07, 'E'},
	{"Warsaw", "PL", 52.23, 21.01, 'E'}, {"Amsterdam", "NL", 52.37, 4.9, 'E'}, {"Dublin", "IE", 53.35, -6.26, 'E'},
	{"New York", "US", 40.713, -74.006, 'A'}, {"Chicago", "US", 41.88, -87.63, 'A'}, {"San Francisco", "US", 37.77, -122.42, 'A'},
	{"Seattle", "US", 47.61, -122.33, 'A'}, {"Austin", "US", 30.27, -97.74, 'A'}, {"Toronto", "CA", 43.65, -79.38, 'A'},
	{"Vancouver", "CA", 49.28, -123.12, 'A'}, {"Mexico City", "MX", 19.43, -99.13, 'A'}, {"São Paulo", "BR", -23.55, -46.63, 'S'},
	{"Buenos Aires", "AR", -34.6, -58.38, 'S'}, {"Bogotá", "CO", 4.71, -74.07, 'S'}, {"Tokyo", "JP", 35.68, 139.69, 'P'},
	{"Osaka", "JP", 34.69, 135.5, 'P'}, {"Seoul", "KR", 37.57, 126.98, 'P'}, {"Beijing", "CN", 39.9, 116.4, 'P'},
	{"Changchun", "CN", 43.88, 125.32, 'P'}, {"Singapore", "SG", 1.35, 103.82, 'P'}, {"Sydney", "AU", -33.87, 151.21, 'P'},
	{"Melbourne", "AU", -37.81, 144.96, 'P'}, {"Mumbai", "IN", 19.08, 72.88, 'P'}, {"Bangalore", "IN", 12.97, 77.59, 'P'},
	{"Jakarta", "ID", -6.2, 106.85, 'P'}, {"Lagos", "NG", 6.52, 3.38, 'F'}, {"Nairobi", "KE", -1.29, 36.82, 'F'},
	{"Johannesburg", "ZA", -26.2, 28.05, 'F'}, {"Cairo", "EG", 30.04, 31.24, 'F'}, {"Istanbul", "TR", 41.01, 28.98, 'E'},
	{"Moscow", "RU", 55.76, 37.62, 'E'},
}

// Address plan (all public, none private): 30.c.x.y residential ISP of city
// c, 31.c.x.y its mobile network; 40/16 hosting (AWS-like), 41/16 Tor
// exits, 42/16 commercial VPN.
func homeIP(r *rand.Rand, c int) string {
	return fmt.Sprintf("30.%d.%d.%d", c, r.IntN(256), 1+r.IntN(254))
}
func mobileIP(r *rand.Rand, c int) string {
	return fmt.Sprintf("31.%d.%d.%d", c, r.IntN(256), 1+r.IntN(254))
}

// WriteGeoIP writes the City, ASN and Anonymous-IP databases for the
// address plan into dir.
func WriteGeoIP(dir string) (geoip.Options, error) {
	o := geoip.Options{CityPath: filepath.Join(dir, "city.mmdb"), ASNPath: filepath.Join(dir, "asn.mmdb"), AnonymousIPPath: filepath.Join(dir, "anon.mmdb"), PollInterval: -1}
	var cs []geoiptest.City
	var as []geoiptest.ASN
	for i, c := range cities {
		for _, p := range []string{"30", "31"} {
			cs = append(cs, geoiptest.City{Network: fmt.Sprintf("%s.%d.0.0/16", p, i), Country: c.country, City: c.name, Lat: c.lat, Lon: c.lon, AccuracyKM: 20})
		}
		as = append(as, geoiptest.ASN{Network: fmt.Sprintf("30.%d.0.0/16", i), Number: uint32(64600 + i), Org: c.country + " Broadband"},
			geoiptest.ASN{Network: fmt.Sprintf("31.%d.0.0/16", i), Number: uint32(64800 + i), Org: c.country + " Mobile"})
	}
	cs = append(cs, geoiptest.City{Network: "40.0.0.0/16", Country: "US", City: "Ashburn", Lat: 39.04, Lon: -77.49, AccuracyKM: 1000},
		geoiptest.City{Network: "41.0.0.0/16", Country: "DE", Lat: 51.3, Lon: 9.5, AccuracyKM: 200},
		geoiptest.City{Network: "42.0.0.0/16", Country: "NL", City: "Amsterdam", Lat: 52.37, Lon: 4.9, AccuracyKM: 100})
	as = append(as, geoiptest.ASN{Network: "40.0.0.0/16", Number: 16509, Org: "Amazon.com"},
		geoiptest.ASN{Network: "41.0.0.0/16", Number: 60729, Org: "Tor exit hoster"},
		geoiptest.ASN{Network: "42.0.0.0/16", Number: 9009, Org: "M247"})
	anon := []geoiptest.Anon{
		{Network: "40.0.0.0/16", Hosting: true},
		{Network: "41.0.0.0/16", Anonymous: true, Tor: true},
		{Network: "42.0.0.0/16", Anonymous: true, VPN: true, Hosting: true},
	}
	if err := geoiptest.WriteCity(o.CityPath, "", cs); err != nil {
		return o, err
	}
	if err := geoiptest.WriteASN(o.ASNPath, as); err != nil {
		return o, err
	}
	return o, geoiptest.WriteAnon(o.AnonymousIPPath, anon)
}

// Event is one generated line (the replay input schema).
type Event struct {
	Time           string `json:"time"`
	Sub            string `json:"sub"`
	IP             string `json:"ip"`
	UserAgent      string `json:"user_agent,omitempty"`
	AcceptLanguage string `json:"accept_language,omitempty"`
	DeviceID       string `json:"device_id,omitempty"`
	Event          string `json:"event,omitempty"`
	Label          string `json:"label"`
	t              time.Time
}

var uas = []string{
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
	"Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51",
}

const attackerUA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36"

// Generate writes the evaluation set for users users to w, sorted by time.
func Generate(w io.Writer, users int, seed uint64) (legit, attacks int, err error) {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	start := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	const days = 30
	var evs []Event
	add := func(e Event, t time.Time) {
		e.t = t
		e.Time = t.Format(time.RFC3339)
		evs = append(evs, e)
	}
	for u := range users {
		sub := fmt.Sprintf("user%05d", u)
		home := r.IntN(len(cities))
		ua := uas[r.IntN(len(uas))]
		lang := []string{"en-GB,en;q=0.9", "en-US,en;q=0.9", "de-DE,de;q=0.9", "fr-FR", "ja-JP"}[r.IntN(5)]
		dev := fmt.Sprintf("%s-laptop-1", sub)
		homeISP := homeIP(r, home)
		base := Event{Sub: sub, UserAgent: ua, AcceptLanguage: lang, DeviceID: dev, Label: "legit"}
		// Scenario switches.
		travelDay, travelTo := -1, -1
		if r.Float64() < 0.06 {
			travelDay = 3 + r.IntN(20)
			travelTo = r.IntN(len(cities))
		}
		newLaptopDay := -1
		if r.Float64() < 0.03 {
			newLaptopDay = 2 + r.IntN(25)
		}
		// Timezone-ish offset so users are not all active at once.
		off := time.Duration(r.IntN(24)) * time.Hour
		loc, ip := home, homeISP
		away := false
		for d := range days {
			day := start.Add(time.Duration(d)*24*time.Hour + off)
			if d == newLaptopDay {
				base.DeviceID = fmt.Sprintf("%s-laptop-2", sub)
				base.UserAgent = uas[r.IntN(len(uas))]
				e := base
				e.IP, e.Event = ip, "login"
				add(e, day.Add(8*time.Hour))
			}
			if d == travelDay && travelTo != home {
				// Fly: depart at 08:00, airliner 800 km/h plus 2 h of airports.
				c1, c2 := cities[home], cities[travelTo]
				km := risk.HaversineKM(c1.lat, c1.lon, c2.lat, c2.lon)
				arrive := day.Add(8*time.Hour + time.Duration((km/800+2)*float64(time.Hour)))
				loc, ip, away = travelTo, homeIP(r, travelTo), true
				e := base
				e.IP = ip
				add(e, arrive) // first request abroad: a legit step-up
				e.Event = "step_up"
				add(e, arrive.Add(2*time.Minute))
				day = arrive.Truncate(24 * time.Hour).Add(off)
			}
			if away && d == travelDay+4 {
				c1, c2 := cities[travelTo], cities[home]
				km := risk.HaversineKM(c1.lat, c1.lon, c2.lat, c2.lon)
				loc, ip, away = home, homeISP, false
				day = day.Add(time.Duration((km/800 + 2) * float64(time.Hour)))
			}
			if d%7 == 0 {
				e := base
				e.IP, e.Event = ip, "login"
				add(e, day.Add(8*time.Hour))
			}
			if wd := day.Weekday(); (wd == time.Saturday || wd == time.Sunday) && r.Float64() < 0.7 {
				continue
			}
			n := 1 + r.IntN(4)
			for k := range n {
				at := day.Add(8*time.Hour + time.Duration(k)*2*time.Hour + time.Duration(r.IntN(3600))*time.Second)
				e := base
				e.IP = ip
				if !away && r.Float64() < 0.25 {
					e.IP = mobileIP(r, loc) // commute on the phone network
				}
				add(e, at)
			}
		}
		// Attacks on 2% of users, after at least a week of history.
		if r.Float64() < 0.02 {
			at := start.Add(time.Duration(8+r.IntN(20))*24*time.Hour + off + 12*time.Hour)
			far := r.IntN(len(cities))
			for cities[far].continent == cities[home].continent {
				far = r.IntN(len(cities))
			}
			a := Event{Sub: sub, UserAgent: attackerUA, AcceptLanguage: "en-US,en;q=0.9"}
			switch r.IntN(4) {
			case 0: // stolen session cookie used from another continent
				a.Label, a.IP = "attack:stolen_cookie", homeIP(r, far)
				add(a, at)
				add(a, at.Add(time.Minute))
			case 1: // phished password: login on a new device in a new country
				a.Label, a.IP, a.Event, a.DeviceID = "attack:new_device_new_country", homeIP(r, far), "login", sub+"-attacker"
				add(a, at)
			case 2:
				a.Label, a.IP = "attack:tor", fmt.Sprintf("41.0.%d.%d", r.IntN(256), 1+r.IntN(254))
				add(a, at)
			default:
				a.Label, a.IP = "attack:hosting", fmt.Sprintf("40.0.%d.%d", r.IntN(256), 1+r.IntN(254))
				add(a, at)
			}
		}
	}
	slices.SortStableFunc(evs, func(a, b Event) int { return a.t.Compare(b.t) })
	bw := bufio.NewWriterSize(w, 1<<20)
	enc := json.NewEncoder(bw)
	for i := range evs {
		if evs[i].Label == "legit" {
			legit++
		} else {
			attacks++
		}
		if err := enc.Encode(&evs[i]); err != nil {
			return 0, 0, err
		}
	}
	return legit, attacks, bw.Flush()
}

// RuleSet is one configuration to evaluate.
type RuleSet struct {
	Name       string
	Engine     risk.Options
	Thresholds risk.Thresholds
}

// RuleSets are the configurations the report compares.
var RuleSets = []RuleSet{
	{Name: "default (1000 km/h, step-up at 40)", Engine: risk.Options{}},
	{Name: "okta-like (805 km/h)", Engine: risk.Options{MaxSpeedKMH: 805}},
	{Name: "no travel rule", Engine: risk.Options{Weights: map[string]int{"impossible_travel": 0}}},
	{Name: "deny Tor", Engine: risk.Options{DenyTor: true}},
}

// Report is one rule set's outcome.
type Report struct {
	Name                                  string
	Attacks, AttacksCaught, AttacksDenied int
	ByKind                                map[string][2]int // caught, total
	LegitRequests, LegitStepUps           int
	Events                                int
	Elapsed                               time.Duration
}

// AttackCatchRate is the share of attack events stepped up or denied.
func (r Report) AttackCatchRate() float64 { return ratio(r.AttacksCaught, r.Attacks) }

// LegitStepUpRate is the share of legitimate requests asked to step up or
// denied.
func (r Report) LegitStepUpRate() float64 { return ratio(r.LegitStepUps, r.LegitRequests) }

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// Evaluate replays data (generated JSONL) under rs with the databases in geo.
func Evaluate(ctx context.Context, data []byte, geo geoip.Options, rs RuleSet) (Report, error) {
	rep := Report{Name: rs.Name, ByKind: map[string][2]int{}}
	loc, err := geoip.New(geo)
	if err != nil {
		return rep, err
	}
	defer loc.Close()
	eng, err := risk.NewEngine(rs.Engine)
	if err != nil {
		return rep, err
	}
	svc, err := risk.NewService(risk.ServiceOptions{Engine: eng, Locator: loc, Store: replay.NewMemoryStore(), NotFound: replay.ErrNotFound,
		L1MaxBytes: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return rep, err
	}
	defer svc.Close()
	var out bytes.Buffer
	st, err := replay.Run(ctx, replay.Options{Service: svc, Default: rs.Thresholds, ProgressEvery: -1}, bytes.NewReader(data), &out, os.Stderr)
	if err != nil {
		return rep, err
	}
	rep.Events, rep.Elapsed = st.Events, st.Elapsed
	sc := bufio.NewScanner(&out)
	sc.Buffer(nil, 1<<20)
	var row struct {
		Label, Decision, Event string
	}
	for sc.Scan() {
		row.Event = ""
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			return rep, fmt.Errorf("riskeval: output: %w", err)
		}
		caught := row.Decision == "step_up" || row.Decision == "deny"
		if row.Label == "legit" {
			if row.Event == "" || row.Event == "request" {
				rep.LegitRequests++
				if caught {
					rep.LegitStepUps++
				}
			}
			continue
		}
		rep.Attacks++
		k := rep.ByKind[row.Label]
		k[1]++
		if caught {
			rep.AttacksCaught++
			k[0]++
		}
		if row.Decision == "deny" {
			rep.AttacksDenied++
		}
		rep.ByKind[row.Label] = k
	}
	return rep, sc.Err()
}

// Markdown renders reports as a table.
func Markdown(w io.Writer, users int, reps []Report) {
	fmt.Fprintf(w, "| rule set (%d users) | events | attacks stepped up or denied | of which denied | legit requests stepped up | replay time |\n|---|---|---|---|---|---|\n", users)
	for _, r := range reps {
		fmt.Fprintf(w, "| %s | %d | %.2f%% (%d/%d) | %d | %.3f%% (%d/%d) | %s |\n", r.Name, r.Events, 100*r.AttackCatchRate(), r.AttacksCaught, r.Attacks,
			r.AttacksDenied, 100*r.LegitStepUpRate(), r.LegitStepUps, r.LegitRequests, r.Elapsed.Round(time.Millisecond))
	}
	if len(reps) > 0 {
		kinds := make([]string, 0, len(reps[0].ByKind))
		for k := range reps[0].ByKind {
			kinds = append(kinds, k)
		}
		slices.SortFunc(kinds, cmp.Compare)
		fmt.Fprintf(w, "\nPer attack kind (%s):\n\n", reps[0].Name)
		for _, k := range kinds {
			v := reps[0].ByKind[k]
			fmt.Fprintf(w, "- %s: %d/%d\n", k, v[0], v[1])
		}
	}
}
