// Package geoiptest writes small MaxMind databases with mmdbwriter so that
// tests, the replay engine's tests and the bench evaluation set can run
// against real .mmdb files without shipping MaxMind's files in the repo.
//
// The records mirror the rows of MaxMind's own test databases that our
// conformance table uses (STANDARDS §4.2/§4.3), so one table of assertions
// runs against both these fixtures and the official test files.
package geoiptest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// City is one network of a City database.
type City struct {
	Network     string // CIDR
	Country     string
	Subdivision string
	City        string
	Lat, Lon    float64
	AccuracyKM  uint16
	NoLocation  bool // leave out the location map
}

// ASN is one network of an ASN database.
type ASN struct {
	Network string
	Number  uint32
	Org     string
}

// Anon is one network of an Anonymous-IP database.
type Anon struct {
	Network                             string
	Anonymous, VPN, Hosting, Proxy, Tor bool
}

// StandardCity, StandardASN and StandardAnon are the MaxMind test-database
// rows our conformance table asserts on.
var (
	StandardCity = []City{
		{Network: "81.2.69.142/31", Country: "GB", Subdivision: "ENG", City: "London", Lat: 51.5142, Lon: -0.0931, AccuracyKM: 10},
		{Network: "81.2.69.160/27", Country: "GB", Subdivision: "ENG", City: "London", Lat: 51.5142, Lon: -0.0931, AccuracyKM: 100},
		{Network: "2.125.160.216/29", Country: "GB", Subdivision: "ENG", City: "Boxford", Lat: 51.75, Lon: -1.25, AccuracyKM: 100},
		{Network: "216.160.83.56/29", Country: "US", Subdivision: "WA", City: "Milton", Lat: 47.2513, Lon: -122.3149, AccuracyKM: 22},
		{Network: "89.160.20.112/28", Country: "SE", Subdivision: "E", City: "Linköping", Lat: 58.4167, Lon: 15.6167, AccuracyKM: 76},
		{Network: "175.16.199.0/24", Country: "CN", Subdivision: "22", City: "Changchun", Lat: 43.88, Lon: 125.3228, AccuracyKM: 100},
		{Network: "214.78.120.0/22", Country: "US", Subdivision: "CA", City: "San Diego", Lat: 32.7405, Lon: -117.0935, AccuracyKM: 100},
		{Network: "2001:218::/32", Country: "JP", Lat: 35.68536, Lon: 139.75309, AccuracyKM: 100},
		{Network: "67.43.156.0/24", Country: "BT", Lat: 27.5, Lon: 90.5, AccuracyKM: 534},
	}
	StandardASN = []ASN{
		{Network: "1.128.0.0/11", Number: 1221, Org: "Telstra Pty Ltd"},
		{Network: "12.81.92.0/22", Number: 7018, Org: "AT&T Services"},
	}
	StandardAnon = []Anon{
		{Network: "1.2.0.0/16", Anonymous: true, VPN: true},
		{Network: "1.124.213.0/24", Anonymous: true, VPN: true, Tor: true},
		{Network: "81.2.69.0/24", Anonymous: true, VPN: true, Hosting: true, Proxy: true, Tor: true},
		{Network: "186.30.236.0/24", Anonymous: true, Proxy: true},
		{Network: "65.0.0.0/13", Anonymous: true, Tor: true},
	}
)

func newTree(dbType string) (*mmdbwriter.Tree, error) {
	return mmdbwriter.New(mmdbwriter.Options{
		DatabaseType: dbType, RecordSize: 28, IPVersion: 6,
		Description: map[string]string{"en": "edgeauth test fixture " + dbType},
		Languages:   []string{"en"},
	})
}

func insert(t *mmdbwriter.Tree, cidr string, v mmdbtype.Map) error {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		return fmt.Errorf("geoiptest: %w", err)
	}
	if err := t.Insert(n, v); err != nil {
		return fmt.Errorf("geoiptest: insert %s: %w", cidr, err)
	}
	return nil
}

func write(t *mmdbwriter.Tree, path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".mmdb-*")
	if err != nil {
		return fmt.Errorf("geoiptest: %w", err)
	}
	if _, err := t.WriteTo(tmp); err != nil {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("geoiptest: write: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("geoiptest: %w", err)
	}
	// Rename is atomic: a reader polling the path sees the old or the new file.
	return os.Rename(tmp.Name(), path)
}

// WriteCity writes a City database of type dbType ("" = "GeoIP2-City").
func WriteCity(path, dbType string, rows []City) error {
	if dbType == "" {
		dbType = "GeoIP2-City"
	}
	t, err := newTree(dbType)
	if err != nil {
		return err
	}
	for _, r := range rows {
		m := mmdbtype.Map{}
		if r.Country != "" {
			m["country"] = mmdbtype.Map{"iso_code": mmdbtype.String(r.Country)}
		}
		if r.Subdivision != "" {
			m["subdivisions"] = mmdbtype.Slice{mmdbtype.Map{"iso_code": mmdbtype.String(r.Subdivision)}}
		}
		if r.City != "" {
			m["city"] = mmdbtype.Map{"names": mmdbtype.Map{"en": mmdbtype.String(r.City)}}
		}
		if !r.NoLocation {
			m["location"] = mmdbtype.Map{
				"latitude":        mmdbtype.Float64(r.Lat),
				"longitude":       mmdbtype.Float64(r.Lon),
				"accuracy_radius": mmdbtype.Uint16(r.AccuracyKM),
			}
		}
		if err := insert(t, r.Network, m); err != nil {
			return err
		}
	}
	return write(t, path)
}

// WriteASN writes a GeoLite2-ASN database.
func WriteASN(path string, rows []ASN) error {
	t, err := newTree("GeoLite2-ASN")
	if err != nil {
		return err
	}
	for _, r := range rows {
		m := mmdbtype.Map{"autonomous_system_number": mmdbtype.Uint32(r.Number)}
		if r.Org != "" {
			m["autonomous_system_organization"] = mmdbtype.String(r.Org)
		}
		if err := insert(t, r.Network, m); err != nil {
			return err
		}
	}
	return write(t, path)
}

// WriteAnon writes a GeoIP2-Anonymous-IP database.
func WriteAnon(path string, rows []Anon) error {
	t, err := newTree("GeoIP2-Anonymous-IP")
	if err != nil {
		return err
	}
	for _, r := range rows {
		m := mmdbtype.Map{}
		set := func(k string, v bool) {
			if v {
				m[mmdbtype.String(k)] = mmdbtype.Bool(true)
			}
		}
		set("is_anonymous", r.Anonymous)
		set("is_anonymous_vpn", r.VPN)
		set("is_hosting_provider", r.Hosting)
		set("is_public_proxy", r.Proxy)
		set("is_tor_exit_node", r.Tor)
		if err := insert(t, r.Network, m); err != nil {
			return err
		}
	}
	return write(t, path)
}
