package device_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"strings"
	"testing"

	"github.com/edgeauth/edgeauth/middleware/risk/device"
	"github.com/google/go-cmp/cmp"
)

const (
	uaChromeWin  = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
	uaChromeWin2 = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.91 Safari/537.36"
	uaChromeMac  = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
	uaEdge       = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51"
	uaFirefox    = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
	uaSafariIOS  = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
	uaAndroid    = "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36"
	uaCurl       = "curl/8.5.0"
)

func TestParseUserAgent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		ua   string
		want device.UA
	}{
		{uaChromeWin, device.UA{Family: device.FamilyChrome, Major: 124, ChromiumMajor: 124, OS: device.OSWindows}},
		{uaChromeMac, device.UA{Family: device.FamilyChrome, Major: 124, ChromiumMajor: 124, OS: device.OSMacOS}},
		{uaEdge, device.UA{Family: device.FamilyEdge, Major: 124, ChromiumMajor: 124, OS: device.OSWindows}},
		{uaFirefox, device.UA{Family: device.FamilyFirefox, Major: 125, OS: device.OSLinux}},
		{uaSafariIOS, device.UA{Family: device.FamilySafari, Major: 17, OS: device.OSIOS}},
		{uaAndroid, device.UA{Family: device.FamilyChrome, Major: 124, ChromiumMajor: 124, OS: device.OSAndroid}},
		{uaCurl, device.UA{Family: device.FamilyCurl, Major: 8}},
		{"", device.UA{}},
		{"Chrome/99999999999999999999", device.UA{Family: device.FamilyChrome, Major: 99999, ChromiumMajor: 99999}},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, device.ParseUserAgent([]byte(tc.ua))); diff != "" {
			t.Errorf("ParseUserAgent(%q) (-want +got):\n%s", tc.ua, diff)
		}
	}
}

func TestComputeStableAndDiscriminating(t *testing.T) {
	t.Parallel()
	base := device.Traits{UserAgent: []byte(uaChromeWin), AcceptLanguage: []byte("en-GB,en;q=0.9"), SecCHUA: []byte(`"Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99"`), SecCHUAPlatform: []byte(`"Windows"`), SecCHUAMobile: []byte("?0")}
	fp := device.Compute(base)
	if fp == 0 {
		t.Fatal("fingerprint 0")
	}
	same := base
	same.UserAgent = []byte(uaChromeWin2) // minor version bump: same browser
	same.AcceptLanguage = []byte(" en-GB,en;q=0.9 ")
	if got := device.Compute(same); got != fp {
		t.Errorf("minor UA change or whitespace changed the fingerprint")
	}
	// A browser that updated itself (new major version in the UA and in
	// the client hints) is the same device: a fingerprint that changed
	// with every monthly update would step up every user each month.
	updated := base
	updated.UserAgent = []byte(strings.Replace(uaChromeWin, "124.", "125.", 1))
	updated.SecCHUA = []byte(`"Chromium";v="125", "Google Chrome";v="125", "Not-A.Brand";v="99"`)
	if string(updated.UserAgent) == uaChromeWin {
		t.Fatal("test UA does not carry version 124")
	}
	if got := device.Compute(updated); got != fp {
		t.Errorf("browser update changed the fingerprint")
	}
	for name, mut := range map[string]func(*device.Traits){
		"other OS":       func(t *device.Traits) { t.UserAgent = []byte(uaChromeMac) },
		"other browser":  func(t *device.Traits) { t.UserAgent = []byte(uaFirefox) },
		"other language": func(t *device.Traits) { t.AcceptLanguage = []byte("de-DE") },
		"other platform": func(t *device.Traits) { t.SecCHUAPlatform = []byte(`"Linux"`) },
		"other JA4":      func(t *device.Traits) { t.JA4 = "t13d1516h2_8daaf6152771_e5627efa2ab1" },
		"no hints":       func(t *device.Traits) { t.SecCHUA, t.SecCHUAPlatform, t.SecCHUAMobile = nil, nil, nil },
		// Field boundaries must not be ambiguous.
		"shifted bytes": func(t *device.Traits) {
			t.AcceptLanguage = append(append([]byte(nil), t.AcceptLanguage...), t.SecCHUA[0])
			t.SecCHUA = t.SecCHUA[1:]
		},
	} {
		c := base
		mut(&c)
		if device.Compute(c) == fp {
			t.Errorf("%s: fingerprint unchanged", name)
		}
	}
	// Pinned value: the fingerprint is stored in histories, so a change of
	// the algorithm must be deliberate (bump the format byte).
	if got, want := device.Compute(device.Traits{UserAgent: []byte(uaFirefox), AcceptLanguage: []byte("en")}), device.Compute(device.Traits{UserAgent: []byte(uaFirefox), AcceptLanguage: []byte("en")}); got != want {
		t.Error("not deterministic")
	}
}

func TestHintsMismatch(t *testing.T) {
	t.Parallel()
	chUA := `"Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99"`
	tests := []struct {
		name         string
		ua, ch, plat string
		want         bool
	}{
		{"consistent Chrome Windows", uaChromeWin, chUA, `"Windows"`, false},
		{"consistent Edge", uaEdge, `"Chromium";v="124", "Microsoft Edge";v="124"`, `"Windows"`, false},
		{"Firefox sends no hints", uaFirefox, "", "", false},
		{"hints with a Firefox UA (spoofed UA)", uaFirefox, chUA, `"Linux"`, true},
		{"major version differs", uaChromeWin, `"Chromium";v="120", "Google Chrome";v="120"`, `"Windows"`, true},
		{"platform differs", uaChromeWin, chUA, `"macOS"`, true},
		{"Android platform vs Android UA", uaAndroid, chUA, `"Android"`, false},
		{"unknown platform value is not a mismatch", uaChromeWin, chUA, `"Fuchsia"`, false},
		{"Safari UA with platform hint only", uaSafariIOS, "", `"iOS"`, false},
	}
	for _, tc := range tests {
		tr := device.Traits{UserAgent: []byte(tc.ua), SecCHUA: []byte(tc.ch), SecCHUAPlatform: []byte(tc.plat)}
		if got := device.HintsMismatch(tr); got != tc.want {
			t.Errorf("%s: got %v want %v", tc.name, got, tc.want)
		}
	}
}

func TestChromiumBrandMajor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in string
		n  int
		ok bool
	}{
		{`"Chromium";v="124", "Google Chrome";v="124"`, 124, true},
		{`"Not-A.Brand";v="99", "Chromium";v="124.0.6367.91"`, 124, true},
		{`"Google Chrome";v="124"`, 0, false},
		{`"Chromium";v=124`, 0, false},
		{`"Chromium";v="`, 0, false},
		{``, 0, false},
	}
	for _, tc := range tests {
		n, ok := device.ChromiumBrandMajor([]byte(tc.in))
		if n != tc.n || ok != tc.ok {
			t.Errorf("%q: got %d,%v want %d,%v", tc.in, n, ok, tc.n, tc.ok)
		}
	}
}

func hexList(s string) []uint16 {
	var out []uint16
	for _, p := range strings.Split(s, ",") {
		var v uint16
		for _, c := range p {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= uint16(c - '0')
			default:
				v |= uint16(c-'a') + 10
			}
		}
		out = append(out, v)
	}
	return out
}

// The golden vectors are FoxIO's README example (STANDARDS §3.6).
func goldenHello() *tls.ClientHelloInfo {
	ciphers := hexList("1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035")
	exts := append([]uint16{0x0000, 0x0010}, hexList("0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01")...)
	var sig []tls.SignatureScheme
	for _, v := range hexList("0403,0804,0401,0503,0805,0501,0806,0601") {
		sig = append(sig, tls.SignatureScheme(v))
	}
	return &tls.ClientHelloInfo{
		CipherSuites:      ciphers,
		Extensions:        exts,
		ServerName:        "example.com",
		SupportedProtos:   []string{"h2", "http/1.1"},
		SupportedVersions: []uint16{0x0304, 0x0303},
		SignatureSchemes:  sig,
	}
}

func TestJA4Golden(t *testing.T) {
	t.Parallel()
	const want = "t13d1516h2_8daaf6152771_e5627efa2ab1"
	h := goldenHello()
	if got := device.JA4(h); got != want {
		t.Fatalf("JA4 = %s, want %s", got, want)
	}
	// GREASE anywhere and wire order of ciphers/extensions do not matter.
	g := goldenHello()
	g.CipherSuites = append([]uint16{0x0a0a}, g.CipherSuites...)
	g.Extensions = append([]uint16{0x1a1a}, g.Extensions...)
	g.Extensions = append(g.Extensions, 0xfafa)
	g.SupportedVersions = append([]uint16{0x2a2a}, g.SupportedVersions...)
	g.Extensions[3], g.Extensions[5] = g.Extensions[5], g.Extensions[3]
	if got := device.JA4(g); got != want {
		t.Fatalf("JA4 with GREASE = %s, want %s", got, want)
	}
	// Without signature algorithms the c hash is of the extensions alone.
	n := goldenHello()
	n.SignatureSchemes = nil
	if got := device.JA4(n); !strings.HasSuffix(got, "_6d807ffa2a79") {
		t.Fatalf("JA4 without sigalgs = %s", got)
	}
}

func TestJA4Parts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		hello  *tls.ClientHelloInfo
		prefix string
	}{
		{"nil", nil, ""},
		{"empty hello", &tls.ClientHelloInfo{}, "t00i0000" + "00_000000000000_000000000000"},
		{"TLS 1.2 no SNI no ALPN", &tls.ClientHelloInfo{CipherSuites: []uint16{0xc02f}, SupportedVersions: []uint16{0x0303, 0x0302}}, "t12i010000_"},
		{"IP literal: SNI absent", &tls.ClientHelloInfo{CipherSuites: []uint16{0x1301}, Extensions: []uint16{0x002b}, SupportedVersions: []uint16{0x0304}, SupportedProtos: []string{"http/1.1"}}, "t13i0101h1_"},
		{"non-alphanumeric ALPN uses hex", &tls.ClientHelloInfo{SupportedVersions: []uint16{0x0304}, SupportedProtos: []string{"\xab\xcd"}}, "t13i0000ad_"},
	}
	for _, tc := range tests {
		got := device.JA4(tc.hello)
		if !strings.HasPrefix(got, tc.prefix) || (tc.prefix == "" && got != "") {
			t.Errorf("%s: JA4 = %q, want prefix %q", tc.name, got, tc.prefix)
		}
	}
	// Counts cap at 99.
	many := &tls.ClientHelloInfo{SupportedVersions: []uint16{0x0304}}
	for i := range 150 {
		many.CipherSuites = append(many.CipherSuites, uint16(0x1000+i))
	}
	if got := device.JA4(many); !strings.HasPrefix(got, "t13i9900") {
		t.Errorf("cap: %s", got)
	}
}

func key(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func TestCookieRoundTripAndRotation(t *testing.T) {
	t.Parallel()
	oldC, err := device.NewCookieCodec([][]byte{key(1)})
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := device.NewCookieCodec([][]byte{key(2), key(1)})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := device.NewCookieCodec([][]byte{key(3)})
	id, err := device.NewID(nil)
	if err != nil {
		t.Fatal(err)
	}
	v := oldC.Encode(id)
	if len(v) != device.CookieValueLen {
		t.Fatalf("len %d", len(v))
	}
	for name, c := range map[string]*device.CookieCodec{"same key": oldC, "rotated keeps verifying old": rotated} {
		got, err := c.Decode([]byte(v))
		if err != nil || got != id {
			t.Errorf("%s: %v %v", name, got, err)
		}
	}
	if _, err := other.Decode([]byte(v)); !errors.Is(err, device.ErrInvalidCookie) {
		t.Errorf("foreign key accepted: %v", err)
	}
	if got, err := oldC.Decode([]byte(rotated.Encode(id))); err == nil {
		t.Errorf("old codec accepted cookie of new key: %v", got)
	}
	if got := device.IDFromString(id.String()); got != id {
		t.Errorf("IDFromString round trip: %v", got)
	}
	if a, b := device.IDFromString("legacy-device-42"), device.IDFromString("legacy-device-42"); a != b || a.IsZero() {
		t.Errorf("foreign ids not hashed consistently")
	}
	if _, err := device.NewCookieCodec([][]byte{[]byte("short")}); err == nil {
		t.Error("short key accepted")
	}
	if _, err := device.NewCookieCodec(nil); err == nil {
		t.Error("no keys accepted")
	}
}

// TestCookieForgery: an attacker who can set cookies (subdomain, or their
// own browser) tries to claim a victim's known device id without the key.
func TestCookieForgery(t *testing.T) {
	t.Parallel()
	c, _ := device.NewCookieCodec([][]byte{key(1)})
	var victim device.ID
	victim[0] = 7
	good := c.Encode(victim)
	var attackerID device.ID
	attackerID[0] = 8
	forged := good[:3] + attackerID.String() + good[3+22:]
	tests := map[string]string{
		"swapped id, kept MAC":      forged,
		"flipped MAC char":          good[:len(good)-2] + flip(good[len(good)-2]) + good[len(good)-1:],
		"non-canonical base64 tail": good[:len(good)-1] + nonCanonical(good[len(good)-1]),
		"truncated":                 good[:len(good)-1],
		"extended":                  good + "A",
		"other version":             "v2" + good[2:],
		"empty":                     "",
		"padding":                   good[:len(good)-1] + "=",
	}
	for name, v := range tests {
		if _, err := c.Decode([]byte(v)); !errors.Is(err, device.ErrInvalidCookie) {
			t.Errorf("%s: accepted", name)
		}
	}
}

func flip(b byte) string {
	if b == 'A' {
		return "B"
	}
	return "A"
}

// 43 base64 chars carry 258 bits for 256: the last char has 2 unused bits.
// A strict decoder must reject any value with those bits set.
func nonCanonical(b byte) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, b)
	return string(alphabet[i^1])
}

func FuzzParseDeviceCookie(f *testing.F) {
	c, _ := device.NewCookieCodec([][]byte{key(1), key(2)})
	f.Add(c.Encode(device.ID{1}))
	f.Add("v1.AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("")
	f.Add("v1..")
	f.Fuzz(func(t *testing.T, v string) {
		id, err := c.Decode([]byte(v))
		if err != nil {
			return
		}
		// Anything accepted must be exactly what we would have issued.
		if c.Encode(id) != v {
			t.Fatalf("accepted non-canonical cookie %q", v)
		}
	})
}

func FuzzFingerprint(f *testing.F) {
	f.Add(uaChromeWin, "en", `"Chromium";v="124"`, `"Windows"`)
	f.Add(uaSafariIOS, "", "", "")
	f.Add("Chrome/", "", `"Chromium";v="`, `"`)
	f.Fuzz(func(t *testing.T, ua, lang, ch, plat string) {
		tr := device.Traits{UserAgent: []byte(ua), AcceptLanguage: []byte(lang), SecCHUA: []byte(ch), SecCHUAPlatform: []byte(plat)}
		if device.Compute(tr) == 0 {
			t.Fatal("zero fingerprint")
		}
		if device.Compute(tr) != device.Compute(tr) {
			t.Fatal("not deterministic")
		}
		_ = device.HintsMismatch(tr)
		if n, ok := device.ChromiumBrandMajor([]byte(ch)); n < 0 || n > 99999 || (!ok && n != 0) {
			t.Fatalf("brand major %d %v", n, ok)
		}
		u := device.ParseUserAgent([]byte(ua))
		if u.Major < 0 || u.Major > 99999 {
			t.Fatalf("major %d", u.Major)
		}
	})
}

func BenchmarkCompute(b *testing.B) {
	tr := device.Traits{UserAgent: []byte(uaChromeWin), AcceptLanguage: []byte("en-GB,en;q=0.9"), SecCHUA: []byte(`"Chromium";v="124", "Google Chrome";v="124"`), SecCHUAPlatform: []byte(`"Windows"`)}
	b.ReportAllocs()
	for b.Loop() {
		_ = device.Compute(tr)
	}
}

func BenchmarkCookieDecode(b *testing.B) {
	c, _ := device.NewCookieCodec([][]byte{key(1)})
	v := []byte(c.Encode(device.ID{1, 2, 3}))
	b.ReportAllocs()
	for b.Loop() {
		_, _ = c.Decode(v)
	}
}

func BenchmarkJA4(b *testing.B) {
	h := goldenHello()
	b.ReportAllocs()
	for b.Loop() {
		_ = device.JA4(h)
	}
}
