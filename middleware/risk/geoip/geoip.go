// Package geoip turns a client IP address into a reqstate.Location using
// MaxMind databases (City, ASN, Anonymous-IP), each optional.
//
// Contract:
//   - New fails when a configured file is missing, corrupt (it runs the
//     MaxMind verifier over the whole file) or of the wrong type (an ASN file
//     configured as city): configuration problems surface at start-up.
//   - Lookups never fail for "not found": private, loopback, link-local,
//     unspecified and unlisted addresses give the zero Location ("unknown
//     location"), which callers must treat as neutral, never as trusted.
//   - Files are memory-mapped and re-opened when they change on disk (mtime,
//     size or inode, polled; operators replace them weekly, usually by an
//     atomic rename). A reload that fails is logged and the previous database
//     keeps serving. An old mapping is released by the GC cleanup of the
//     maxminddb reader once no lookup holds it, so a swap never unmaps memory
//     under a running lookup.
//
// Trust boundary: the IP address must already be the real client address
// (middleware/clientip); this package trusts the database files, which come
// from the operator's disk, but verifies their structure before use.
//
// The implementation sits on github.com/oschwald/maxminddb-golang/v2, the
// reader under geoip2-golang/v2, rather than on geoip2's City() model:
// geoip2 decodes every name in every language into a fresh struct per
// lookup, while a request only needs a dozen fields. Decoded records are
// cached by their data-section offset (many networks share one record), so
// a lookup of a known record costs a tree walk and no allocation.
package geoip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/edgeauth/edgeauth/middleware/reqstate"
	"github.com/oschwald/maxminddb-golang/v2"
)

// Locator resolves an address to a location. Implementations are safe for
// concurrent use. The zero Location means unknown; err is non-nil only for
// a technical failure (a corrupt record), which callers treat as unknown
// location plus an "assessment unavailable" signal.
type Locator interface {
	Locate(ip netip.Addr) (reqstate.Location, error)
}

// Options configures a Reader. Every path is optional; with none set the
// Reader answers "unknown" for every address.
type Options struct {
	// CityPath is a GeoIP2/GeoLite2 City (or Country, or Enterprise)
	// database. "" = no city data.
	CityPath string
	// ASNPath is a GeoLite2-ASN or GeoIP2-ISP database. "" = no ASN data.
	ASNPath string
	// AnonymousIPPath is a GeoIP2-Anonymous-IP database. "" = no flags.
	AnonymousIPPath string
	// PollInterval is how often the files are checked for changes. Zero
	// means one minute; negative disables the background poll (call
	// Reload yourself).
	PollInterval time.Duration
	// Logger receives reload results. Nil means slog.Default().
	Logger *slog.Logger
	// MaxCachedRecords bounds the per-database cache of decoded records.
	// Zero means 1<<16; records beyond it are decoded on every lookup.
	MaxCachedRecords int
}

// Errors callers may branch on.
var (
	ErrWrongType = errors.New("geoip: wrong database type")
	ErrCorrupt   = errors.New("geoip: corrupt database")
)

type kind uint8

const (
	kindCity kind = iota
	kindASN
	kindAnon
)

func (k kind) String() string {
	switch k {
	case kindCity:
		return "city"
	case kindASN:
		return "asn"
	default:
		return "anonymous_ip"
	}
}

// accepts reports whether a database_type from the metadata carries the
// fields k decodes. Names follow MaxMind's; test and custom databases built
// with mmdbwriter use the same names.
func (k kind) accepts(dbType string) bool {
	switch k {
	case kindCity:
		return strings.Contains(dbType, "City") || strings.Contains(dbType, "Country") ||
			strings.Contains(dbType, "Enterprise")
	case kindASN:
		return strings.HasSuffix(dbType, "-ASN") || strings.Contains(dbType, "ISP")
	default:
		return strings.Contains(dbType, "Anonymous-IP")
	}
}

// fileID identifies one version of a file on disk.
type fileID struct {
	mtime time.Time
	size  int64
	ino   uint64
}

func statFile(path string) (fileID, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}, err
	}
	id := fileID{mtime: fi.ModTime(), size: fi.Size()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.ino = uint64(st.Ino) //nolint:unconvert // type differs per platform
	}
	return id, nil
}

// db is one opened database version with its record cache. It is immutable
// apart from the cache, and replaced as a whole on reload.
type db struct {
	r     *maxminddb.Reader
	id    fileID
	cache sync.Map // uintptr offset -> *reqstate.Location (partial, per kind)
	n     atomic.Int64
}

type source struct {
	kind kind
	path string
	cur  atomic.Pointer[db]
}

// Reader is the MaxMind-backed Locator.
type Reader struct {
	sources  []*source // only the configured ones
	city     *source
	asn      *source
	anon     *source
	log      *slog.Logger
	maxCache int64
	stop     chan struct{}
	done     chan struct{}
	closeOne sync.Once
}

// New opens every configured database and starts the change poll.
func New(opts Options) (*Reader, error) {
	r := &Reader{log: opts.Logger, maxCache: int64(opts.MaxCachedRecords)}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.maxCache <= 0 {
		r.maxCache = 1 << 16
	}
	var errs []error
	add := func(k kind, path string) *source {
		if path == "" {
			return nil
		}
		s := &source{kind: k, path: path}
		d, err := open(k, path)
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		s.cur.Store(d)
		r.sources = append(r.sources, s)
		return s
	}
	r.city = add(kindCity, opts.CityPath)
	r.asn = add(kindASN, opts.ASNPath)
	r.anon = add(kindAnon, opts.AnonymousIPPath)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	interval := opts.PollInterval
	if interval == 0 {
		interval = time.Minute
	}
	if interval > 0 && len(r.sources) > 0 {
		r.stop = make(chan struct{})
		r.done = make(chan struct{})
		go r.poll(interval)
	}
	return r, nil
}

func open(k kind, path string) (*db, error) {
	id, err := statFile(path)
	if err != nil {
		return nil, fmt.Errorf("geoip: %s database: %w", k, err)
	}
	mr, err := maxminddb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("geoip: %s database %s: %w: %w", k, path, ErrCorrupt, err)
	}
	if !k.accepts(mr.Metadata.DatabaseType) {
		_ = mr.Close()
		return nil, fmt.Errorf("geoip: %s database %s has type %q: %w", k, path, mr.Metadata.DatabaseType, ErrWrongType)
	}
	if err := mr.Verify(); err != nil {
		_ = mr.Close()
		return nil, fmt.Errorf("geoip: %s database %s: %w: %w", k, path, ErrCorrupt, err)
	}
	return &db{r: mr, id: id}, nil
}

// Close stops the poll. Lookups keep working on the open mappings, which
// are released when the Reader becomes unreachable.
func (r *Reader) Close() error {
	r.closeOne.Do(func() {
		if r.stop != nil {
			close(r.stop)
			<-r.done
		}
	})
	return nil
}

func (r *Reader) poll(interval time.Duration) {
	defer close(r.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			_ = r.Reload()
		}
	}
}

// Reload re-opens every database whose file changed. A failure is logged
// and returned, and the previous version of that database keeps serving.
func (r *Reader) Reload() error {
	var errs []error
	for _, s := range r.sources {
		old := s.cur.Load()
		id, err := statFile(s.path)
		if err == nil && id == old.id {
			continue
		}
		var d *db
		if err == nil {
			d, err = open(s.kind, s.path)
		} else {
			err = fmt.Errorf("geoip: %s database: %w", s.kind, err)
		}
		if err != nil {
			r.log.LogAttrs(context.Background(), slog.LevelError, "geoip reload failed; previous database keeps serving",
				slog.String("database", s.kind.String()), slog.String("path", s.path), slog.Any("error", err))
			errs = append(errs, err)
			continue
		}
		s.cur.Store(d)
		r.log.LogAttrs(context.Background(), slog.LevelInfo, "geoip database reloaded",
			slog.String("database", s.kind.String()), slog.String("path", s.path),
			slog.String("type", d.r.Metadata.DatabaseType), slog.Time("build", d.r.Metadata.BuildTime()))
	}
	return errors.Join(errs...)
}

// Records as stored by MaxMind; only the fields we use are decoded.
type cityRecord struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	Subdivisions []struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"subdivisions"`
	City struct {
		Names struct {
			EN string `maxminddb:"en"`
		} `maxminddb:"names"`
	} `maxminddb:"city"`
	Location struct {
		Latitude       *float64 `maxminddb:"latitude"`
		Longitude      *float64 `maxminddb:"longitude"`
		AccuracyRadius uint16   `maxminddb:"accuracy_radius"`
	} `maxminddb:"location"`
}

type asnRecord struct {
	Number uint32 `maxminddb:"autonomous_system_number"`
	Org    string `maxminddb:"autonomous_system_organization"`
}

type anonRecord struct {
	IsAnonymous       bool `maxminddb:"is_anonymous"`
	IsAnonymousVPN    bool `maxminddb:"is_anonymous_vpn"`
	IsHostingProvider bool `maxminddb:"is_hosting_provider"`
	IsPublicProxy     bool `maxminddb:"is_public_proxy"`
	IsTorExitNode     bool `maxminddb:"is_tor_exit_node"`
}

func decode(k kind, res maxminddb.Result, loc *reqstate.Location) error {
	switch k {
	case kindCity:
		var c cityRecord
		if err := res.Decode(&c); err != nil {
			return err
		}
		loc.Country = c.Country.ISOCode
		if len(c.Subdivisions) > 0 {
			loc.Subdivision = c.Subdivisions[0].ISOCode
		}
		loc.City = c.City.Names.EN
		if c.Location.Latitude != nil && c.Location.Longitude != nil {
			loc.Latitude, loc.Longitude = *c.Location.Latitude, *c.Location.Longitude
			loc.HasCoordinates = true
			loc.AccuracyKM = c.Location.AccuracyRadius
		}
	case kindASN:
		var a asnRecord
		if err := res.Decode(&a); err != nil {
			return err
		}
		loc.ASN, loc.ASOrg = a.Number, a.Org
	default:
		var a anonRecord
		if err := res.Decode(&a); err != nil {
			return err
		}
		loc.Anonymous, loc.AnonymousVPN, loc.Hosting = a.IsAnonymous, a.IsAnonymousVPN, a.IsHostingProvider
		loc.PublicProxy, loc.TorExit = a.IsPublicProxy, a.IsTorExitNode
	}
	return nil
}

// merge copies the fields kind k owns from src into dst.
func merge(k kind, dst, src *reqstate.Location) {
	switch k {
	case kindCity:
		dst.Country, dst.Subdivision, dst.City = src.Country, src.Subdivision, src.City
		dst.Latitude, dst.Longitude, dst.AccuracyKM, dst.HasCoordinates = src.Latitude, src.Longitude, src.AccuracyKM, src.HasCoordinates
	case kindASN:
		dst.ASN, dst.ASOrg = src.ASN, src.ASOrg
	default:
		dst.Anonymous, dst.AnonymousVPN, dst.Hosting = src.Anonymous, src.AnonymousVPN, src.Hosting
		dst.PublicProxy, dst.TorExit = src.PublicProxy, src.TorExit
	}
}

// Unknown reports whether ip can never have a location: addresses that are
// not globally routable. Skipping them saves the tree walks and documents
// that an internal client is "unknown", not "home".
func Unknown(ip netip.Addr) bool {
	ip = ip.Unmap()
	return !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() ||
		ip.IsLinkLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() || ip.IsInterfaceLocalMulticast()
}

// Locate implements Locator.
func (r *Reader) Locate(ip netip.Addr) (reqstate.Location, error) {
	var loc reqstate.Location
	if Unknown(ip) {
		return loc, nil
	}
	ip = ip.Unmap() // IPv4-mapped IPv6 finds the IPv4 record
	var errs error
	for _, s := range r.sources {
		d := s.cur.Load()
		res := d.r.Lookup(ip)
		if err := res.Err(); err != nil {
			errs = errors.Join(errs, fmt.Errorf("geoip: %s lookup: %w", s.kind, err))
			continue
		}
		if !res.Found() {
			continue
		}
		off := res.Offset()
		if v, ok := d.cache.Load(off); ok {
			merge(s.kind, &loc, v.(*reqstate.Location))
			continue
		}
		part := new(reqstate.Location)
		if err := decode(s.kind, res, part); err != nil {
			errs = errors.Join(errs, fmt.Errorf("geoip: %s decode: %w", s.kind, err))
			continue
		}
		if d.n.Load() < r.maxCache {
			if _, loaded := d.cache.LoadOrStore(off, part); !loaded {
				d.n.Add(1)
			}
		}
		merge(s.kind, &loc, part)
	}
	return loc, errs
}
