package risk

import (
	"bytes"
	"context"
	"errors"
	"github.com/google/go-cmp/cmp"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeauth/edgeauth/middleware/reqstate"
	"github.com/edgeauth/edgeauth/middleware/risk/device"
	"github.com/edgeauth/edgeauth/middleware/risk/geoip"
	"github.com/edgeauth/edgeauth/middleware/risk/geoip/geoiptest"
	"github.com/valyala/fasthttp"
)

var errNotFound = errors.New("test: not found")

// memStore is a real in-memory HistoryStore (the session package's memory
// store is another engineer's; this one has the same contract).
type memStore struct {
	mu   sync.Mutex
	m    map[string][]byte
	fail error
	puts int
}

func newMemStore() *memStore { return &memStore{m: map[string][]byte{}} }

func (s *memStore) GetBlob(_ context.Context, k string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	b, ok := s.m[k]
	if !ok {
		return nil, errNotFound
	}
	return b, nil
}

func (s *memStore) PutBlob(_ context.Context, k string, b []byte, _ time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.m[k] = append([]byte(nil), b...)
	s.puts++
	return nil
}

func testLocator(t testing.TB) geoip.Locator {
	t.Helper()
	dir := t.TempDir()
	o := geoip.Options{CityPath: filepath.Join(dir, "c.mmdb"), ASNPath: filepath.Join(dir, "a.mmdb"), PollInterval: -1}
	if err := geoiptest.WriteCity(o.CityPath, "", geoiptest.StandardCity); err != nil {
		t.Fatal(err)
	}
	if err := geoiptest.WriteASN(o.ASNPath, append(geoiptest.StandardASN,
		geoiptest.ASN{Network: "81.2.69.0/24", Number: 2856, Org: "BT"},
		geoiptest.ASN{Network: "175.16.0.0/16", Number: 4837, Org: "China Unicom"})); err != nil {
		t.Fatal(err)
	}
	r, err := geoip.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func newService(t testing.TB, st HistoryStore) *Service {
	t.Helper()
	eng, err := NewEngine(Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewService(ServiceOptions{Engine: eng, Locator: testLocator(t), Store: st, NotFound: errNotFound,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

const iss = "https://idp.example"

var chromeTraits = device.Traits{UserAgent: []byte("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"), AcceptLanguage: []byte("en-GB")}

func TestServiceSarah(t *testing.T) {
	t.Parallel()
	st := newMemStore()
	s := newService(t, st)
	ctx := context.Background()
	london := netip.MustParseAddr("81.2.69.142")
	fp := device.Compute(chromeTraits)
	loc, _ := s.Locate(london)
	if err := s.BindDevice(ctx, iss, "sarah", loc, laptop, fp, t0); err != nil {
		t.Fatal(err)
	}
	s.WaitL1()
	var a Assessment
	s.Assess(ctx, &Request{Issuer: iss, Subject: "sarah", IP: london, Traits: chromeTraits, DeviceID: laptop}, t0.Add(time.Minute), &a)
	if a.Result.Score != 0 || a.Result.N != 0 || a.Location.City != "London" {
		t.Fatalf("returning user: %+v", a)
	}
	// Ten minutes later the session cookie is used from Changchun by
	// another machine (no device cookie, other browser).
	s.Assess(ctx, &Request{Issuer: iss, Subject: "sarah", IP: netip.MustParseAddr("175.16.199.0"), Traits: device.Traits{UserAgent: []byte("curl/8")}}, t0.Add(10*time.Minute), &a)
	if !a.Result.Has(ReasonImpossibleTravel) || (Thresholds{}).Decide(&a.Result) != reqstate.DecisionStepUp {
		t.Fatalf("Changchun: %v score %d", a.Result.List(), a.Result.Score)
	}
	// Another subject is not affected, and keys do not collide.
	s.Assess(ctx, &Request{Issuer: iss, Subject: "bob", IP: london, DeviceID: laptop}, t0, &a)
	if !a.Result.Has(ReasonInitialLogin) {
		t.Fatalf("bob: %v", a.Result.List())
	}
	if strings.Contains(s.StoreKey(iss, "sarah"), "sarah") {
		t.Fatal("subject in store key")
	}
}

func TestServiceStoreFailureFailsClosed(t *testing.T) {
	t.Parallel()
	st := newMemStore()
	s := newService(t, st)
	st.fail = errors.New("redis down")
	var a Assessment
	s.Assess(context.Background(), &Request{Issuer: iss, Subject: "x", IP: netip.MustParseAddr("81.2.69.142")}, t0, &a)
	if !a.Result.Has(ReasonAssessmentUnavailable) || (Thresholds{}).Decide(&a.Result) != reqstate.DecisionStepUp {
		t.Fatalf("got %v %d", a.Result.List(), a.Result.Score)
	}
	if err := s.BindDevice(context.Background(), iss, "x", london, laptop, 1, t0); err == nil {
		t.Fatal("bind over an unreadable history succeeded")
	}
	// A corrupt blob fails closed on read and is replaced by the next bind.
	st.fail = nil
	st.m[s.StoreKey(iss, "y")] = []byte("garbage")
	s.Assess(context.Background(), &Request{Issuer: iss, Subject: "y"}, t0, &a)
	if !a.Result.Has(ReasonAssessmentUnavailable) {
		t.Fatalf("corrupt: %v", a.Result.List())
	}
	if err := s.BindDevice(context.Background(), iss, "y", london, laptop, 1, t0); err != nil {
		t.Fatal(err)
	}
}

func TestServiceTouchRateBound(t *testing.T) {
	t.Parallel()
	st := newMemStore()
	s := newService(t, st)
	ctx := context.Background()
	ip := netip.MustParseAddr("81.2.69.142")
	loc, _ := s.Locate(ip)
	fp := device.Compute(chromeTraits)
	if err := s.BindDevice(ctx, iss, "u", loc, laptop, fp, t0); err != nil {
		t.Fatal(err)
	}
	s.WaitL1()
	puts := st.puts
	for i := range 20 {
		now := t0.Add(time.Duration(i) * 10 * time.Second)
		var a Assessment
		s.Assess(ctx, &Request{Issuer: iss, Subject: "u", IP: ip, Traits: chromeTraits, DeviceID: laptop}, now, &a)
		if err := s.Allowed(ctx, iss, "u", &a, laptop, now); err != nil {
			t.Fatal(err)
		}
		s.WaitL1()
	}
	if st.puts != puts {
		t.Fatalf("%d writes for a user who stayed put for 3 minutes", st.puts-puts)
	}
}

func BenchmarkAssessReturningUser(b *testing.B) {
	s := newService(b, newMemStore())
	ctx := context.Background()
	ip := netip.MustParseAddr("81.2.69.142")
	fp := device.Compute(chromeTraits)
	loc, _ := s.Locate(ip)
	if err := s.BindDevice(ctx, iss, "sarah", loc, laptop, fp, t0); err != nil {
		b.Fatal(err)
	}
	s.WaitL1()
	req := &Request{Issuer: iss, Subject: "sarah", IP: ip, Traits: chromeTraits, DeviceID: laptop}
	var a Assessment
	now := t0.Add(time.Minute)
	b.ReportAllocs()
	for b.Loop() {
		s.Assess(ctx, req, now, &a)
	}
	if a.Result.Score != 0 {
		b.Fatalf("score %d %v", a.Result.Score, a.Result.List())
	}
}

// BenchmarkEvaluateL1Hit is the budget in the issue: Evaluate core plus an
// L1 history hit for a returning user on a known device.
func BenchmarkEvaluateL1Hit(b *testing.B) {
	s := newService(b, newMemStore())
	ctx := context.Background()
	if err := s.BindDevice(ctx, iss, "sarah", london, laptop, laptopFP, t0); err != nil {
		b.Fatal(err)
	}
	s.WaitL1()
	in := Input{Location: london, DeviceID: laptop, Fingerprint: laptopFP}
	now := t0.Add(time.Minute)
	var r Result
	b.ReportAllocs()
	for b.Loop() {
		h, _ := s.Load(ctx, iss, "sarah")
		s.eng.Evaluate(in, h, now, &r)
	}
}

func TestMiddleware(t *testing.T) {
	t.Parallel()
	st := newMemStore()
	s := newService(t, st)
	codec, err := device.NewCookieCodec([][]byte{bytes.Repeat([]byte{1}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	mo := MiddlewareOptions{Service: s, Cookie: codec, Now: func() time.Time { return now }}
	mw, err := Middleware(mo)
	if err != nil {
		t.Fatal(err)
	}
	var seen reqstate.State
	h := mw(func(ctx *fasthttp.RequestCtx) {
		st := reqstate.Get(ctx)
		seen = *st
		st.Decision = (Thresholds{}).Decide(&Result{Score: st.RiskScore})
	})
	newCtx := func(ip, cookie string, authed bool) *fasthttp.RequestCtx {
		ctx := &fasthttp.RequestCtx{}
		ctx.Request.Header.SetUserAgentBytes(chromeTraits.UserAgent)
		ctx.Request.Header.Set("Accept-Language", "en-GB")
		if cookie != "" {
			ctx.Request.Header.SetCookie("edgeauth_device", cookie)
		}
		st := reqstate.Get(ctx)
		st.ClientIP = netip.MustParseAddr(ip)
		if authed {
			st.Method = reqstate.MethodSession
			st.Principal.Issuer, st.Principal.Subject = iss, "sarah"
		}
		return ctx
	}
	// Unauthenticated: location only, no cookie.
	ctx := newCtx("81.2.69.142", "", false)
	h(ctx)
	if seen.Location.City != "London" || seen.RiskScore != 0 || len(ctx.Response.Header.PeekCookie("edgeauth_device")) != 0 {
		t.Fatalf("unauthenticated: %+v", seen.Location)
	}
	// Login from London: the hook issues the device cookie and binds it.
	ctx = newCtx("81.2.69.142", "", true)
	if _, err := BindDevice(ctx, &mo, iss, "sarah"); err != nil {
		t.Fatal(err)
	}
	var c fasthttp.Cookie
	if err := c.ParseBytes(ctx.Response.Header.PeekCookie("edgeauth_device")); err != nil {
		t.Fatal(err)
	}
	if !c.HTTPOnly() || !c.Secure() || c.SameSite() != fasthttp.CookieSameSiteLaxMode {
		t.Fatalf("cookie attributes: %s", c.String())
	}
	cookie := string(c.Value())
	s.WaitL1()
	now = t0.Add(time.Minute)
	h(newCtx("81.2.69.142", cookie, true))
	if seen.RiskScore != 0 || seen.DeviceID == "" || seen.Fingerprint == 0 {
		t.Fatalf("known device: score %d reasons %v", seen.RiskScore, seen.Reasons())
	}
	// Sarah: ten minutes later from Changchun with a stolen session cookie.
	now = t0.Add(10 * time.Minute)
	ctx = newCtx("175.16.199.0", "", true)
	h(ctx)
	if !contains(strings.Join(seen.Reasons(), ","), "impossible_travel") || seen.RiskScore < 40 {
		t.Fatalf("Changchun: score %d reasons %v", seen.RiskScore, seen.Reasons())
	}
	if len(ctx.Response.Header.PeekCookie("edgeauth_device")) == 0 {
		t.Fatal("no device cookie issued to a new device")
	}
	// A forged device cookie counts as none.
	h(newCtx("81.2.69.142", cookie[:len(cookie)-2]+"AA", true))
	if !contains(strings.Join(seen.Reasons(), ","), "new_device") {
		t.Fatalf("forged cookie: %v", seen.Reasons())
	}
	if _, err := Middleware(MiddlewareOptions{}); err == nil {
		t.Fatal("missing deps accepted")
	}
}

// The admin "forget devices" call (a stolen laptop): the next request from
// the once-known device counts as a new device again, while countries and
// the last location stay known.
func TestServiceForgetDevices(t *testing.T) {
	t.Parallel()
	st := newMemStore()
	s := newService(t, st)
	ctx := context.Background()
	london := netip.MustParseAddr("81.2.69.142")
	fp := device.Compute(chromeTraits)
	loc, _ := s.Locate(london)
	if err := s.BindDevice(ctx, iss, "sarah", loc, laptop, fp, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.ForgetDevices(ctx, iss, "sarah"); err != nil {
		t.Fatal(err)
	}
	if err := s.ForgetDevices(ctx, iss, "nobody"); err != nil {
		t.Fatalf("unknown subject: %v", err)
	}
	s.WaitL1()
	var a Assessment
	s.Assess(ctx, &Request{Issuer: iss, Subject: "sarah", IP: london, Traits: chromeTraits, DeviceID: laptop}, t0.Add(time.Minute), &a)
	if diff := cmp.Diff([]Reason{ReasonNewDevice}, a.Result.List()); diff != "" {
		t.Fatalf("after forget (-want +got):\n%s", diff)
	}
}

// TestShadowAllowDoesNotLaunderLocation is a security regression test.
// Attack: a stolen session cookie is used first on a route in shadow mode,
// which lets the request through while logging "would step up". If that
// request counted as an allowed one, its location (Changchun) would become
// the user's last location, and the next request on an enforcing route
// would no longer be impossible travel. Only a request that risk itself
// would allow may update the history.
func TestShadowAllowDoesNotLaunderLocation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		shadow     reqstate.Decision // what the shadow route would have decided
		wantTravel bool              // impossible_travel still fires on the next request
	}{
		{name: "shadow would step up: history untouched", shadow: reqstate.DecisionStepUp, wantTravel: true},
		{name: "shadow would deny: history untouched", shadow: reqstate.DecisionDeny, wantTravel: true},
		{name: "shadow would allow: location recorded", shadow: reqstate.DecisionAllow, wantTravel: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newService(t, newMemStore())
			codec, err := device.NewCookieCodec([][]byte{bytes.Repeat([]byte{2}, 32)})
			if err != nil {
				t.Fatal(err)
			}
			now := t0
			mo := MiddlewareOptions{Service: s, Cookie: codec, Now: func() time.Time { return now },
				ShadowDecision: func(*fasthttp.RequestCtx) reqstate.Decision { return tc.shadow }}
			mw, err := Middleware(mo)
			if err != nil {
				t.Fatal(err)
			}
			var reasons []string
			// Shadow mode: policy always allows.
			h := mw(func(ctx *fasthttp.RequestCtx) {
				st := reqstate.Get(ctx)
				reasons = append([]string(nil), st.Reasons()...)
				st.Decision = reqstate.DecisionAllow
			})
			newCtx := func(ip string) *fasthttp.RequestCtx {
				ctx := &fasthttp.RequestCtx{}
				ctx.Request.Header.SetUserAgentBytes(chromeTraits.UserAgent)
				st := reqstate.Get(ctx)
				st.ClientIP = netip.MustParseAddr(ip)
				st.Method = reqstate.MethodSession
				st.Principal.Issuer, st.Principal.Subject = iss, "sarah"
				return ctx
			}
			if _, err := BindDevice(newCtx("81.2.69.142"), &mo, iss, "sarah"); err != nil {
				t.Fatal(err)
			}
			s.WaitL1()
			now = t0.Add(10 * time.Minute)
			h(newCtx("175.16.199.0"))
			if !slices.Contains(reasons, "impossible_travel") {
				t.Fatalf("first Changchun request: reasons %v, want impossible_travel", reasons)
			}
			s.WaitL1()
			now = now.Add(time.Minute)
			h(newCtx("175.16.199.0"))
			if got := slices.Contains(reasons, "impossible_travel"); got != tc.wantTravel {
				t.Errorf("second Changchun request: impossible_travel %v, want %v (reasons %v)", got, tc.wantTravel, reasons)
			}
		})
	}
}

// An API client presenting tokens has no device cookie and no login event
// here. Its requests that pass the risk check record where it works from;
// before, its second request scored new_device+new_country and was asked
// to step up although nothing had changed.
func TestServiceBearerClientLearnsItsPlace(t *testing.T) {
	t.Parallel()
	st := newMemStore()
	s := newService(t, st)
	ctx := context.Background()
	london := netip.MustParseAddr("81.2.69.142")
	req := &Request{Issuer: iss, Subject: "ci-bot", IP: london, Bearer: true}
	var a Assessment
	for i := range 3 {
		now := t0.Add(time.Duration(i) * time.Hour)
		s.Assess(ctx, req, now, &a)
		if a.Result.Score >= 40 {
			t.Fatalf("request %d from the usual place: %v score %d", i, a.Result.List(), a.Result.Score)
		}
		if err := s.Allowed(ctx, iss, "ci-bot", &a, device.ID{}, now); err != nil {
			t.Fatal(err)
		}
		s.WaitL1()
	}
	// The same token used from Changchun ten minutes later is still held.
	s.Assess(ctx, &Request{Issuer: iss, Subject: "ci-bot", IP: netip.MustParseAddr("175.16.199.0"), Bearer: true}, t0.Add(2*time.Hour+10*time.Minute), &a)
	if !a.Result.Has(ReasonImpossibleTravel) || !a.Result.Has(ReasonNewCountry) || a.Result.Has(ReasonNewDevice) {
		t.Fatalf("stolen token from another continent: %v", a.Result.List())
	}
}
