package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/edgeauth/edgeauth/bench"
	"github.com/edgeauth/edgeauth/config"
	"github.com/edgeauth/edgeauth/internal/devidp"
	"github.com/edgeauth/edgeauth/middleware/reqstate"
	"github.com/edgeauth/edgeauth/middleware/risk/device"
	"github.com/edgeauth/edgeauth/middleware/session"
	"github.com/edgeauth/edgeauth/proxy"
)

// BenchmarkPipeline measures a small GET through everything edgeauth puts
// in front of an upstream — server, routing, the auth pipeline of a route,
// forwarding — in process, so a CPU profile shows where edgeauth's own time
// goes (go test -bench Pipeline -cpuprofile ...). The client side is an
// in-memory listener; the upstream is real loopback TCP.
func BenchmarkPipeline(b *testing.B) {
	up := benchUpstream(b)
	// The references first: the bare forwarder, and the same with
	// edgeauth's fasthttp settings (streamed bodies, deadlines, buffer).
	for _, ref := range []struct {
		name string
		opts bench.RefOptions
	}{
		{"refproxy", bench.RefOptions{}},
		{"refproxy-ea", bench.RefOptions{Stream: true, Timeouts: true, ReadBufferSize: 16 << 10}},
	} {
		b.Run(ref.name, func(b *testing.B) {
			ln := fasthttputil.NewInmemoryListener()
			s := bench.NewRefServer(up, ref.opts)
			go s.Serve(ln) //nolint:errcheck // Shutdown ends it
			b.Cleanup(func() { _ = s.Shutdown() })
			benchGet(b, &fasthttp.HostClient{Addr: "app.test", Dial: func(string) (net.Conn, error) { return ln.Dial() }}, "")
		})
	}
	b.Run("noauth", func(b *testing.B) {
		doc := "log: {level: warn}\nroutes:\n  - {name: app, path: /, upstream: \"http://" + up + "\", auth: none}\n"
		c, _ := benchEdgeauth(b, benchConfig(b, doc))
		benchGet(b, c, "")
	})
	// A signed-in browser: session cookie, risk on, identity headers and
	// the signed assertion, audit.
	idp := httptest.NewServer(nil)
	b.Cleanup(idp.Close)
	p, err := devidp.New(devidp.Options{Issuer: idp.URL, Clients: []devidp.Client{{ID: "c", Secret: "s", RedirectURIs: []string{"http://app.test/.edgeauth/callback"}}}})
	if err != nil {
		b.Fatal(err)
	}
	idp.Config.Handler = p
	for _, tc := range []struct{ name, route string }{
		{"session-risk-off", "risk_mode: off"},
		{"session", "risk_mode: enforce"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			doc := "log: {level: warn}\naudit: {file: " + filepath.Join(b.TempDir(), "audit.jsonl") + "}\n" +
				"oidc: {issuer: \"" + idp.URL + "\", client_id: c, client_secret: s}\n" +
				"session: {secrets: [\"0123456789abcdef0123456789abcdef0123456789abcdef\"]}\n" +
				"routes:\n  - {name: app, host: app.test, path: /, upstream: \"http://" + up + "\", " + tc.route + "}\n"
			c, svc := benchEdgeauth(b, benchConfig(b, doc))
			now := time.Now()
			sess := &session.Session{ID: session.NewID(), Issuer: idp.URL, Subject: "alice", Email: "alice@example.com",
				EmailVerified: true, Groups: []string{"staff"}, AuthTime: now, CreatedAt: now, LastSeen: now,
				ExpiresAt: now.Add(time.Hour), TokenExpiry: now.Add(time.Hour), IP: "127.0.0.1"}
			if err := svc.store.Put(context.Background(), sess); err != nil {
				b.Fatal(err)
			}
			cookie := "edgeauth_session=" + svc.codec.Encode(sess.ID)
			if svc.riskMW != nil {
				// A browser keeps its device cookie; bind it as a login would.
				id := device.ID{1}
				cookie += "; edgeauth_device=" + svc.riskMW.Cookie.Encode(id)
				if err := svc.riskSvc.BindDevice(context.Background(), idp.URL, "alice", reqstate.Location{}, id,
					device.Compute(device.Traits{}), now); err != nil {
					b.Fatal(err)
				}
				svc.riskSvc.WaitL1()
			}
			benchGet(b, c, cookie)
		})
	}
}

func benchConfig(b *testing.B, doc string) *config.Config {
	cfg, err := config.Parse([]byte(doc), "bench.yaml", func(string) (string, bool) { return "", false })
	if err != nil {
		b.Fatal(err)
	}
	return cfg
}

// benchGet sends small GETs from parallel clients, as a load generator
// with several connections would.
func benchGet(b *testing.B, c *fasthttp.HostClient, cookie string) {
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("http://app.test/reports")
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		for pb.Next() {
			if err := c.Do(req, resp); err != nil || resp.StatusCode() != 200 {
				b.Errorf("%v %d", err, resp.StatusCode())
				return
			}
		}
	})
}

func benchUpstream(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	body := make([]byte, 64)
	s := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBody(body) }}
	go s.Serve(ln) //nolint:errcheck // Shutdown ends it
	b.Cleanup(func() { _ = s.Shutdown() })
	return ln.Addr().String()
}

func benchEdgeauth(b *testing.B, cfg *config.Config) (*fasthttp.HostClient, *services) {
	logger := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
	reg := prometheus.NewRegistry()
	metrics, err := proxy.NewMetrics(reg)
	if err != nil {
		b.Fatal(err)
	}
	svc, err := newServices(context.Background(), cfg, logger, reg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(svc.Close)
	routes, err := svc.buildRoutes(cfg, metrics)
	if err != nil {
		b.Fatal(err)
	}
	opts := serverOptions(cfg, logger, metrics, svc)
	opts.DisableAccessLog = true
	srv, err := proxy.NewServer(opts, routes)
	if err != nil {
		b.Fatal(err)
	}
	svc.srv.Store(srv)
	ln := fasthttputil.NewInmemoryListener()
	go srv.Serve(ln) //nolint:errcheck // Shutdown ends it
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return &fasthttp.HostClient{Addr: "app.test", Dial: func(string) (net.Conn, error) { return ln.Dial() }}, svc
}
