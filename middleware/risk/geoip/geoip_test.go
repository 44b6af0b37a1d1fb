package geoip_test

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/edgeauth/edgeauth/middleware/reqstate"
	"github.com/edgeauth/edgeauth/middleware/risk/geoip"
	"github.com/edgeauth/edgeauth/middleware/risk/geoip/geoiptest"
	"github.com/google/go-cmp/cmp"
)

// sharedDir is MaxMind's official test data, present only on the team's
// machines (../shared next to the repository root).
const sharedDir = "../../../../shared/testdata/geoip"

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func writeFixtures(t testing.TB) geoip.Options {
	t.Helper()
	dir := t.TempDir()
	o := geoip.Options{
		CityPath:        filepath.Join(dir, "city.mmdb"),
		ASNPath:         filepath.Join(dir, "asn.mmdb"),
		AnonymousIPPath: filepath.Join(dir, "anon.mmdb"),
		PollInterval:    -1,
		Logger:          quiet(),
	}
	if err := geoiptest.WriteCity(o.CityPath, "", geoiptest.StandardCity); err != nil {
		t.Fatal(err)
	}
	if err := geoiptest.WriteASN(o.ASNPath, geoiptest.StandardASN); err != nil {
		t.Fatal(err)
	}
	if err := geoiptest.WriteAnon(o.AnonymousIPPath, geoiptest.StandardAnon); err != nil {
		t.Fatal(err)
	}
	return o
}

func official(t *testing.T) geoip.Options {
	t.Helper()
	if _, err := os.Stat(filepath.Join(sharedDir, "GeoIP2-City-Test.mmdb")); err != nil {
		t.Skip("official MaxMind test data not present (plain clone)")
	}
	return geoip.Options{
		CityPath:        filepath.Join(sharedDir, "GeoIP2-City-Test.mmdb"),
		ASNPath:         filepath.Join(sharedDir, "GeoLite2-ASN-Test.mmdb"),
		AnonymousIPPath: filepath.Join(sharedDir, "GeoIP2-Anonymous-IP-Test.mmdb"),
		PollInterval:    -1,
		Logger:          quiet(),
	}
}

// conformance is the one table every Locator runs. Only the fields listed
// are compared, so the official databases' extra data does not matter.
func conformance(t *testing.T, l geoip.Locator) {
	london := reqstate.Location{Country: "GB", Subdivision: "ENG", City: "London", Latitude: 51.5142, Longitude: -0.0931, AccuracyKM: 10, HasCoordinates: true}
	londonAnon := london
	londonAnon.Anonymous, londonAnon.AnonymousVPN, londonAnon.Hosting, londonAnon.PublicProxy, londonAnon.TorExit = true, true, true, true, true
	tests := []struct {
		name string
		ip   string
		want reqstate.Location
	}{
		{"London is also fully flagged anonymous", "81.2.69.142", londonAnon},
		{"IPv4-mapped IPv6 is the IPv4 record", "::ffff:81.2.69.142", londonAnon},
		{"Changchun", "175.16.199.0", reqstate.Location{Country: "CN", Subdivision: "22", City: "Changchun", Latitude: 43.88, Longitude: 125.3228, AccuracyKM: 100, HasCoordinates: true}},
		{"Linköping", "89.160.20.112", reqstate.Location{Country: "SE", Subdivision: "E", City: "Linköping", Latitude: 58.4167, Longitude: 15.6167, AccuracyKM: 76, HasCoordinates: true}},
		{"Milton", "216.160.83.56", reqstate.Location{Country: "US", Subdivision: "WA", City: "Milton", Latitude: 47.2513, Longitude: -122.3149, AccuracyKM: 22, HasCoordinates: true}},
		{"Boxford", "2.125.160.216", reqstate.Location{Country: "GB", Subdivision: "ENG", City: "Boxford", Latitude: 51.75, Longitude: -1.25, AccuracyKM: 100, HasCoordinates: true}},
		{"IPv6 country-level Tokyo", "2001:218::1", reqstate.Location{Country: "JP", Latitude: 35.68536, Longitude: 139.75309, AccuracyKM: 100, HasCoordinates: true}},
		{"ASN Telstra", "1.128.0.1", reqstate.Location{ASN: 1221, ASOrg: "Telstra Pty Ltd"}},
		{"ASN AT&T", "12.81.92.1", reqstate.Location{ASN: 7018, ASOrg: "AT&T Services"}},
		{"anonymous VPN", "1.2.0.1", reqstate.Location{Anonymous: true, AnonymousVPN: true}},
		{"VPN and Tor", "1.124.213.1", reqstate.Location{Anonymous: true, AnonymousVPN: true, TorExit: true}},
		{"public proxy", "186.30.236.1", reqstate.Location{Anonymous: true, PublicProxy: true}},
		{"Tor exit", "65.0.0.1", reqstate.Location{Anonymous: true, TorExit: true}},
		{"just outside London /31", "81.2.69.141", reqstate.Location{Anonymous: true, AnonymousVPN: true, Hosting: true, PublicProxy: true, TorExit: true}},
		{"loopback is unknown", "127.0.0.1", reqstate.Location{}},
		{"private is unknown", "10.0.0.1", reqstate.Location{}},
		{"IPv6 loopback is unknown", "::1", reqstate.Location{}},
		{"IPv6 ULA is unknown", "fd00::1", reqstate.Location{}},
		{"not in any database", "8.8.8.8", reqstate.Location{}},
		{"IPv6 not in database", "2001:480::1", reqstate.Location{}},
	}
	for _, tc := range tests {
		got, err := l.Locate(netip.MustParseAddr(tc.ip))
		if err != nil {
			t.Errorf("%s: Locate(%s): %v", tc.name, tc.ip, err)
			continue
		}
		// The official ASN DB may list networks our rows do not care about.
		if tc.want.ASN == 0 {
			got.ASN, got.ASOrg = 0, ""
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s: Locate(%s) (-want +got):\n%s", tc.name, tc.ip, diff)
		}
	}
	if got, err := l.Locate(netip.Addr{}); err != nil || got != (reqstate.Location{}) {
		t.Errorf("zero address: %+v, %v", got, err)
	}
}

func TestConformanceFixtures(t *testing.T) {
	t.Parallel()
	r, err := geoip.New(writeFixtures(t))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	conformance(t, r)
}

func TestConformanceOfficialMaxMind(t *testing.T) {
	t.Parallel()
	r, err := geoip.New(official(t))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	conformance(t, r)
}

func TestNoDatabasesIsUnknown(t *testing.T) {
	t.Parallel()
	r, err := geoip.New(geoip.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Locate(netip.MustParseAddr("81.2.69.142"))
	if err != nil || got != (reqstate.Location{}) {
		t.Fatalf("got %+v, %v", got, err)
	}
}

func TestStartupErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := writeFixtures(t)
	garbage := filepath.Join(dir, "garbage.mmdb")
	if err := os.WriteFile(garbage, bytes.Repeat([]byte("not a maxmind db "), 100), 0o600); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(good.CityPath)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.mmdb")
	if err := os.WriteFile(truncated, raw[:len(raw)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	// Metadata intact, search tree overwritten: only Verify catches this.
	scrambled := filepath.Join(dir, "scrambled.mmdb")
	bad := append([]byte(nil), raw...)
	for i := 0; i < len(bad)/3; i++ {
		bad[i] = 0xff
	}
	if err := os.WriteFile(scrambled, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.mmdb")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		opts   geoip.Options
		target error
	}{
		{"missing file", geoip.Options{CityPath: filepath.Join(dir, "nope.mmdb")}, os.ErrNotExist},
		{"garbage", geoip.Options{CityPath: garbage}, geoip.ErrCorrupt},
		{"truncated", geoip.Options{CityPath: truncated}, geoip.ErrCorrupt},
		{"scrambled search tree", geoip.Options{CityPath: scrambled}, geoip.ErrCorrupt},
		{"empty", geoip.Options{CityPath: empty}, geoip.ErrCorrupt},
		{"ASN file configured as city", geoip.Options{CityPath: good.ASNPath}, geoip.ErrWrongType},
		{"city file configured as ASN", geoip.Options{ASNPath: good.CityPath}, geoip.ErrWrongType},
		{"city file configured as anonymous", geoip.Options{AnonymousIPPath: good.CityPath}, geoip.ErrWrongType},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.PollInterval = -1
			r, err := geoip.New(tc.opts)
			if err == nil {
				r.Close()
				t.Fatal("New succeeded")
			}
			if !errors.Is(err, tc.target) {
				t.Fatalf("error %v is not %v", err, tc.target)
			}
		})
	}
}

func TestStartupErrorsOfficialBroken(t *testing.T) {
	t.Parallel()
	official(t)
	for _, name := range []string{"GeoIP2-City-Test-Broken-Double-Format.mmdb", "GeoIP2-City-Test-Invalid-Node-Count.mmdb"} {
		r, err := geoip.New(geoip.Options{CityPath: filepath.Join(sharedDir, name), PollInterval: -1})
		if err == nil {
			r.Close()
			t.Errorf("%s: New succeeded", name)
		}
	}
	r, err := geoip.New(geoip.Options{CityPath: filepath.Join(sharedDir, "GeoLite2-ASN-Test.mmdb"), PollInterval: -1})
	if !errors.Is(err, geoip.ErrWrongType) {
		r.Close()
		t.Errorf("ASN as city: %v", err)
	}
}

// TestReloadWhileServing replaces the city file atomically while lookups
// run on other goroutines (meaningful under -race), then checks that a
// corrupt replacement is refused and the previous database keeps serving.
func TestReloadWhileServing(t *testing.T) {
	t.Parallel()
	o := writeFixtures(t)
	var logs bytes.Buffer
	var logMu sync.Mutex
	o.Logger = slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, nil))
	r, err := geoip.New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ip := netip.MustParseAddr("175.16.199.0")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				loc, err := r.Locate(ip)
				if err != nil || (loc.City != "Changchun" && loc.City != "Harbin") {
					t.Errorf("during reload: %+v, %v", loc, err)
					return
				}
			}
		}()
	}
	// Harbin replaces Changchun for the same network.
	rows := append([]geoiptest.City(nil), geoiptest.StandardCity...)
	for i := range rows {
		if rows[i].City == "Changchun" {
			rows[i].City = "Harbin"
		}
	}
	if err := geoiptest.WriteCity(o.CityPath, "", rows); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if loc, _ := r.Locate(ip); loc.City != "Harbin" {
		t.Fatalf("after reload: %q", loc.City)
	}
	// A corrupt update must not replace the serving database.
	tmp := o.CityPath + ".tmp"
	if err := os.WriteFile(tmp, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, o.CityPath); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); !errors.Is(err, geoip.ErrCorrupt) {
		t.Fatalf("corrupt reload: %v", err)
	}
	close(stop)
	wg.Wait()
	if loc, _ := r.Locate(ip); loc.City != "Harbin" {
		t.Fatalf("old database not serving after failed reload: %q", loc.City)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !bytes.Contains(logs.Bytes(), []byte("previous database keeps serving")) {
		t.Fatalf("failed reload not logged: %s", logs.String())
	}
}

// TestPollPicksUpChange checks the background poll without sleeping: it
// polls the result with a deadline.
func TestPollPicksUpChange(t *testing.T) {
	t.Parallel()
	o := writeFixtures(t)
	o.PollInterval = 10 * time.Millisecond
	r, err := geoip.New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := geoiptest.WriteCity(o.CityPath, "", []geoiptest.City{{Network: "175.16.199.0/24", Country: "CN", City: "Jilin", Lat: 43.8, Lon: 126.5, AccuracyKM: 50}}); err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("175.16.199.0")
	deadline := time.Now().Add(10 * time.Second)
	for {
		loc, _ := r.Locate(ip)
		if loc.City == "Jilin" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("poll did not reload: %q", loc.City)
		}
		time.Sleep(5 * time.Millisecond) // poll interval of the check itself, not a wait for a condition
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestLocateAllocs(t *testing.T) {
	r, err := geoip.New(writeFixtures(t))
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("81.2.69.142")
	_, _ = r.Locate(ip) // fill the record cache
	if n := testing.AllocsPerRun(200, func() { _, _ = r.Locate(ip) }); n != 0 {
		t.Fatalf("Locate allocates %v per run", n)
	}
}

func BenchmarkLocate(b *testing.B) {
	r, err := geoip.New(writeFixtures(b))
	if err != nil {
		b.Fatal(err)
	}
	ips := []netip.Addr{netip.MustParseAddr("81.2.69.142"), netip.MustParseAddr("175.16.199.0"), netip.MustParseAddr("2001:218::1"), netip.MustParseAddr("8.8.8.8")}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_, _ = r.Locate(ips[i&3])
	}
}
