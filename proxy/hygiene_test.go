package proxy

import (
	"bufio"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/valyala/fasthttp"
)

// deleteFieldsPlain is what deleteFields replaced: a Del per name. The
// one-pass version must leave every request exactly as this does.
func deleteFieldsPlain(h *fasthttp.RequestHeader) {
	for _, k := range dropRequest {
		h.Del(k)
	}
}

func cleanResponsePlain(h *fasthttp.ResponseHeader) {
	for _, k := range hopHeaders {
		h.Del(k)
	}
}

func parseRequest(t testing.TB, raw string) *fasthttp.Request {
	t.Helper()
	req := new(fasthttp.Request)
	if err := req.Header.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		return nil
	}
	return req
}

// TestDeleteFieldsMatchesDel: the request hygiene deletes what a Del per
// name would and leaves the rest in the same order, for fields from the
// client in any case, empty, repeated, and with other fields a handler
// added. (No edgeauth handler sets a hop-by-hop or spoofable name; the
// hygiene relies on that to read presence from the raw header block.)
func TestDeleteFieldsMatchesDel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		raw  string
		set  [][2]string // set by a handler after parsing
	}{
		{name: "none", raw: "GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n"},
		{name: "all spoofable", raw: "GET / HTTP/1.1\r\nHost: a\r\nX-Real-IP: 1.2.3.4\r\nA: 1\r\nTrue-Client-IP: 1\r\nB: 2\r\nCF-Connecting-IP: 1\r\nX-Forwarded-Port: 1\r\nC: 3\r\nX-Forwarded-Uri: /x\r\nx-client-ip: 1\r\nD: 4\r\n\r\n"},
		{name: "hop by hop", raw: "GET / HTTP/1.1\r\nHost: a\r\nKeep-Alive: 5\r\nA: 1\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nB: 2\r\nProxy-Authorization: Basic x\r\nProxy-Authenticate: x\r\nUpgrade: h2c\r\nConnection: keep-alive\r\nC: 3\r\n\r\n"},
		{name: "connection close", raw: "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nA: 1\r\n\r\n"},
		// An empty value peeks like an absent field; the raw block still
		// shows it was sent.
		{name: "empty values", raw: "GET / HTTP/1.1\r\nHost: a\r\nX-Real-Ip:\r\nA: 1\r\nKeep-Alive: \r\nB: 2\r\n\r\n"},
		{name: "repeated", raw: "GET / HTTP/1.1\r\nHost: a\r\nX-Real-Ip: 1\r\nA: 1\r\nx-real-ip: 2\r\nB: 2\r\nX-REAL-IP: 3\r\n\r\n"},
		{name: "trailer announced", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\nX-Real-Ip: 1\r\nA: 1\r\n\r\n"},
		{name: "other fields set by a handler", raw: "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nX-Real-Ip: 1\r\n\r\n", set: [][2]string{{"B", "2"}, {"C", "3"}}},
		{name: "cookies stay verbatim", raw: "GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1;b=2\r\nCookie: c\r\nX-Real-Ip: 1\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			want, got := parseRequest(t, tt.raw), parseRequest(t, tt.raw)
			if want == nil {
				t.Fatalf("fixture does not parse: %q", tt.raw)
			}
			for _, kv := range tt.set {
				want.Header.Set(kv[0], kv[1])
				got.Header.Set(kv[0], kv[1])
			}
			deleteFieldsPlain(&want.Header)
			sent, ok := sentFields(&got.Header)
			if !ok {
				t.Fatalf("fixture rejected before hygiene: %q", tt.raw)
			}
			deleteFields(&got.Header, sent)
			if diff := cmp.Diff(want.Header.String(), got.Header.String()); diff != "" {
				t.Errorf("request after hygiene (-Del per name +one pass):\n%s", diff)
			}
			for _, k := range spoofableHeaders {
				if v := got.Header.Peek(k); v != nil {
					t.Errorf("%s survived: %q", k, v)
				}
			}
		})
	}
}

// TestCleanResponseMatchesDel: the same for the upstream's response.
func TestCleanResponseMatchesDel(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, raw string }{
		{"none", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nA: 1\r\n\r\n"},
		{"hop by hop", "HTTP/1.1 200 OK\r\nKeep-Alive: 5\r\nA: 1\r\nTE: x\r\nB: 2\r\nUpgrade: h2c\r\nProxy-Authenticate: Basic\r\nC: 3\r\nContent-Length: 0\r\n\r\n"},
		{"connection", "HTTP/1.1 200 OK\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\nA: 1\r\nContent-Length: 0\r\n\r\n"},
		{"empty", "HTTP/1.1 200 OK\r\nKeep-Alive:\r\nA: 1\r\nContent-Length: 0\r\n\r\n"},
		{"trailer", "HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nKeep-Alive: 1\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"cookies", "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nKeep-Alive: 1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var want, got fasthttp.ResponseHeader
			for _, h := range []*fasthttp.ResponseHeader{&want, &got} {
				if err := h.Read(bufio.NewReader(strings.NewReader(tt.raw))); err != nil {
					t.Fatal(err)
				}
			}
			// cleanResponse also drops Connection-nominated fields; run that
			// part on both so only the named-field pass differs.
			cleanResponse(&got)
			cleanConnectionNominated(&want)
			cleanResponsePlain(&want)
			want.ResetConnectionClose()
			if diff := cmp.Diff(want.String(), got.String()); diff != "" {
				t.Errorf("response after hygiene (-Del per name +one pass):\n%s", diff)
			}
		})
	}
}

// cleanConnectionNominated is cleanResponse's first half, unchanged.
func cleanConnectionNominated(h *fasthttp.ResponseHeader) {
	var scratch []byte
	for _, v := range h.PeekAll(fasthttp.HeaderConnection) {
		scratch = append(scratch, v...)
		scratch = append(scratch, ',')
	}
	for tok, rest := nextToken(scratch); tok != nil; tok, rest = nextToken(rest) {
		if !asciiEqualFold(tok, "close") && !asciiEqualFold(tok, "keep-alive") && !asciiEqualFold(tok, "content-length") && !asciiEqualFold(tok, "transfer-encoding") {
			h.DelBytes(tok)
		}
	}
}

// FuzzDeleteFields: for any request head fasthttp parses, the one-pass
// hygiene and a Del per name give byte-identical requests.
func FuzzDeleteFields(f *testing.F) {
	f.Add("GET / HTTP/1.1\r\nHost: a\r\nX-Real-Ip: 1\r\nA: 1\r\n\r\n")
	f.Add("GET / HTTP/1.1\r\nHost: a\r\nkeep-alive:\r\nTE: trailers\r\nConnection: close\r\n\r\n")
	f.Add("POST / HTTP/1.1\r\nHost: a\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\nProxy-Connection: x\r\n\r\n")
	f.Fuzz(func(t *testing.T, raw string) {
		want, got := parseRequest(t, raw), parseRequest(t, raw)
		if want == nil {
			return
		}
		deleteFieldsPlain(&want.Header)
		sent, ok := sentFields(&got.Header)
		if !ok {
			return // rejected with 400 before hygiene runs
		}
		deleteFields(&got.Header, sent)
		if w, g := want.Header.String(), got.Header.String(); w != g {
			t.Fatalf("differ for %q:\nDel per name: %q\none pass:     %q", raw, w, g)
		}
	})
}

func TestScanFieldsMask(t *testing.T) {
	t.Parallel()
	bit := func(name string) fieldMask { return fieldBit([]byte(name), fieldNames) }
	tests := []struct {
		raw  string
		want fieldMask
	}{
		{"", 0},
		{"A: 1\r\n\r\n", 0},
		{"te: x\r\n\r\n", bit("TE")},
		{"X-REAL-IP:1\r\nKeep-Alive \t: 1\r\n", bit("X-Real-Ip") | bit("Keep-Alive")},
		{"no colon\r\nX-Real-Ipx: 1\r\nTE", 0},
		{"Te:", bit("TE")},
		{"x-forwarded-for: 1\r\nFORWARDED: for=x\r\nX-Request-Id: a\r\n", bitXFF | bitForwarded | bitRequestID},
		{"X-Forwarded-Proto: https\r\nX-Forwarded-Host: h\r\nContent-Length: 1\r\n", bitXFP | bitXFH},
	}
	for _, tt := range tests {
		got, err := scanFields([]byte(tt.raw))
		if err != nil || got != tt.want {
			t.Errorf("scanFields(%q) = %b, %v; want %b", tt.raw, got, err, tt.want)
		}
	}
}

// sentFields is what the server records for h before the pipeline runs;
// ok is false for a head the server rejects before hygiene (ambiguous
// framing), which never reaches deleteFields.
func sentFields(h *fasthttp.RequestHeader) (m fieldMask, ok bool) {
	m, err := scanFields(h.RawHeaders())
	return m, err == nil
}

// BenchmarkRequestHygiene compares the one-pass deletion with a Del per
// name on a typical browser request that carries none of the names.
func BenchmarkRequestHygiene(b *testing.B) {
	raw := "GET /app/page?q=1 HTTP/1.1\r\nHost: a.test\r\nUser-Agent: Mozilla/5.0\r\nAccept: text/html\r\nAccept-Language: en\r\nAccept-Encoding: gzip, br\r\nReferer: https://a.test/\r\nSec-Fetch-Mode: navigate\r\nX-Request-Id: 0123456789abcdef\r\n\r\n"
	for _, bc := range []struct {
		name string
		fn   func(*fasthttp.RequestHeader)
	}{{"del-per-name", deleteFieldsPlain}, {"one-pass", func(h *fasthttp.RequestHeader) {
		sent, _ := scanFields(h.RawHeaders())
		deleteFields(h, sent)
	}}} {
		b.Run(bc.name, func(b *testing.B) {
			req := parseRequest(b, raw)
			b.ReportAllocs()
			for b.Loop() {
				bc.fn(&req.Header)
			}
		})
	}
}

// BenchmarkResponseHygiene is the same for cleanResponse.
func BenchmarkResponseHygiene(b *testing.B) {
	raw := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 64\r\nDate: Mon, 23 Nov 2026 16:00:00 GMT\r\nCache-Control: no-store\r\nEtag: \"x\"\r\n\r\n"
	for _, bc := range []struct {
		name string
		fn   func(*fasthttp.ResponseHeader)
	}{{"del-per-name", func(h *fasthttp.ResponseHeader) {
		cleanConnectionNominated(h)
		cleanResponsePlain(h)
		h.ResetConnectionClose()
	}}, {"one-pass", cleanResponse}} {
		b.Run(bc.name, func(b *testing.B) {
			var h fasthttp.ResponseHeader
			if err := h.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				bc.fn(&h)
			}
		})
	}
}
