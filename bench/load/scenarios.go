package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/edgeauth/edgeauth/internal/devidp"
	"github.com/edgeauth/edgeauth/middleware/risk/geoip/geoiptest"
	"github.com/edgeauth/edgeauth/middleware/session"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// scenarioEnv is what a scenario gets to build its edgeauth config from.
type scenarioEnv struct {
	dir      string // private temp directory for fixtures and the config
	upstream string // host:port of the fixed-body upstream
	listen   string // edgeauth's main listener, host:port
	admin    string // edgeauth's admin listener, host:port
	procs    *procs // for helper processes (the dev OIDC provider)
	edgeauth string // path of the built edgeauth binary
}

// scenario is one way of running edgeauth under load. prepare returns the
// config, the headers wrk sends (credentials, X-Forwarded-For) and a
// cleanup for whatever it started in this process (JWKS server); cleanup
// may be non-nil even with an error.
type scenario struct {
	about   string
	prepare func(ctx context.Context, env *scenarioEnv) (cfg eaConfig, headers []string, cleanup func(), err error)
	// ratios are the bars this scenario is judged by.
	ratios []ratio
}

// scenarios are the -scenarios values. Adding one is adding an entry.
var scenarios = map[string]scenario{
	"noauth": {
		about:   "a route with auth: none",
		prepare: prepareNoAuth,
		ratios: []ratio{
			{Target: "edgeauth-noauth", Base: "refproxy", Bar: 0.90},
			{Target: "edgeauth-noauth", Base: "refproxy-ea"},
			{Target: "edgeauth-noauth", Base: "nginx", Bar: 1.0},
		},
	},
	// A diagnostic, not a product configuration: the audit stream (one JSON
	// line per request, to stdout by default, which the harness sends to a
	// log file) goes to /dev/null, so the difference to noauth is the cost
	// of writing it.
	"noauth-devnull": {
		about: "noauth with audit.file: /dev/null",
		prepare: func(ctx context.Context, env *scenarioEnv) (eaConfig, []string, func(), error) {
			cfg, h, c, err := prepareNoAuth(ctx, env)
			cfg.Audit = &eaAudit{File: os.DevNull}
			return cfg, h, c, err
		},
		ratios: []ratio{{Target: "edgeauth-noauth-devnull", Base: "edgeauth-noauth"}, {Target: "edgeauth-noauth-devnull", Base: "refproxy"}},
	},
	"bearer": {
		about:   "auth: required with an RS256 bearer token from a loopback JWKS (verified-token cache hits after the first request)",
		prepare: prepareBearer,
		ratios:  []ratio{{Target: "edgeauth-bearer", Base: "edgeauth-noauth", Bar: 0.85}},
	},
	// A diagnostic: bearer without the signed identity assertion header
	// (600 bytes more on every upstream request, a cache lookup), to tell
	// its share of the bearer route's cost.
	"bearer-noassert": {
		about: "bearer with identity_headers.assertion off",
		prepare: func(ctx context.Context, env *scenarioEnv) (eaConfig, []string, func(), error) {
			cfg, h, c, err := prepareBearer(ctx, env)
			off := ""
			cfg.Identity = &eaIdentity{Assertion: &off}
			return cfg, h, c, err
		},
		ratios: []ratio{{Target: "edgeauth-bearer-noassert", Base: "edgeauth-bearer"}},
	},
	"session": {
		about:   "auth: required with a valid session cookie (memory store, session restored from a snapshot the harness writes; dev OIDC provider for discovery)",
		prepare: prepareSession,
		ratios:  []ratio{{Target: "edgeauth-session", Base: "edgeauth-noauth", Bar: 0.85}},
	},
	"risk": {
		about:   "bearer plus GeoIP risk scoring (City DB written with mmdbwriter), client IP from X-Forwarded-For sent by trusted loopback",
		prepare: prepareRisk,
		ratios:  []ratio{{Target: "edgeauth-risk", Base: "edgeauth-noauth", Bar: 0.80}},
	},
}

func scenarioNames() []string {
	var n []string
	for k := range scenarios {
		n = append(n, k)
	}
	slices.Sort(n)
	return n
}

// adminToken opens edgeauth's profiler for -pprof; loopback only.
const adminToken = "bench-admin-token-0123456789abcdef0123456789"

// baseConfig is one catch-all route to the upstream with auth: none.
func baseConfig(env *scenarioEnv) eaConfig {
	return eaConfig{
		Log:    eaLog{Level: "warn"},
		Listen: env.listen,
		Admin:  eaAdmin{Listen: env.admin, Token: adminToken},
		Routes: []eaRoute{{
			Name:     "bench",
			Host:     "*",
			Path:     "/",
			Upstream: "http://" + env.upstream,
			Auth:     "none",
		}},
	}
}

func prepareNoAuth(_ context.Context, env *scenarioEnv) (eaConfig, []string, func(), error) {
	return baseConfig(env), nil, nil, nil
}

const benchAudience = "https://bench.edgeauth.test"

// issuer is a loopback OpenID-style token issuer: it serves its JWKS over
// net/http and mints RS256 access tokens with jwx.
type issuer struct {
	url  string
	key  jwk.Key
	srv  *http.Server
	done chan struct{}
}

func startIssuer() (*issuer, error) {
	raw, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("rsa key: %w", err)
	}
	key, err := jwk.Import(raw)
	if err != nil {
		return nil, fmt.Errorf("jwk import: %w", err)
	}
	if err := key.Set(jwk.KeyIDKey, "bench-1"); err != nil {
		return nil, err
	}
	if err := key.Set(jwk.AlgorithmKey, jwa.RS256()); err != nil {
		return nil, err
	}
	pub, err := key.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		return nil, err
	}
	body, err := json.Marshal(set)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(body)
	})
	is := &issuer{url: "http://" + ln.Addr().String(), key: key, done: make(chan struct{}),
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
	go func() {
		defer close(is.done)
		if err := is.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Printf("load: jwks server: %v\n", err)
		}
	}()
	return is, nil
}

func (is *issuer) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = is.srv.Shutdown(ctx)
	<-is.done
}

// mint returns a token valid for ttl, long enough to outlast the run.
func (is *issuer) mint(sub string, ttl time.Duration) (string, error) {
	now := time.Now()
	tok, err := jwt.NewBuilder().
		Issuer(is.url).
		Audience([]string{benchAudience}).
		Subject(sub).
		IssuedAt(now).
		NotBefore(now.Add(-time.Minute)).
		Expiration(now.Add(ttl)).
		Claim("email", sub+"@bench.test").
		Build()
	if err != nil {
		return "", fmt.Errorf("build token: %w", err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.RS256(), is.key))
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return string(signed), nil
}

func (is *issuer) configure(cfg *eaConfig) {
	cfg.Tokens = &eaTokens{Issuers: []eaIssuer{{
		Issuer:     is.url,
		JWKSURL:    is.url + "/jwks.json",
		Audiences:  []string{benchAudience},
		Algorithms: []string{"RS256"},
	}}}
	yes := true
	cfg.Routes[0].Auth = "required"
	cfg.Routes[0].Bearer = &yes
}

func prepareBearer(_ context.Context, env *scenarioEnv) (eaConfig, []string, func(), error) {
	is, err := startIssuer()
	if err != nil {
		return eaConfig{}, nil, nil, err
	}
	cfg := baseConfig(env)
	is.configure(&cfg)
	tok, err := is.mint("bench-user", 2*time.Hour)
	if err != nil {
		return eaConfig{}, nil, is.stop, err
	}
	return cfg, []string{"Authorization: Bearer " + tok}, is.stop, nil
}

// benchClientIP is in the City DB the risk scenario writes (a network of
// MaxMind's own test data; mmdbwriter refuses the documentation ranges), so
// every request has a location and a known country after the first.
const benchClientIP = "89.160.20.115"

func prepareRisk(ctx context.Context, env *scenarioEnv) (eaConfig, []string, func(), error) {
	cfg, headers, cleanup, err := prepareBearer(ctx, env)
	if err != nil {
		return cfg, headers, cleanup, err
	}
	city := filepath.Join(env.dir, "city.mmdb")
	if err := geoiptest.WriteCity(city, "GeoLite2-City", []geoiptest.City{
		{Network: "89.160.20.112/28", Country: "SE", Subdivision: "E", City: "Linköping", Lat: 58.4167, Lon: 15.6167, AccuracyKM: 76},
	}); err != nil {
		return cfg, headers, cleanup, fmt.Errorf("geoip city db: %w", err)
	}
	cfg.GeoIP = &eaGeoIP{City: city}
	cfg.TrustedProxies = []string{"127.0.0.1/32"}
	// Default rules and thresholds: a token client's requests from its
	// usual place pass (risk records the place of requests that pass).
	cfg.Routes[0].RiskMode = "enforce"
	return cfg, append(headers, "X-Forwarded-For: "+benchClientIP), cleanup, nil
}

// prepareSession gives edgeauth one live session without a browser: the
// harness writes a memory-store snapshot holding a session for alice, signs
// its id into a cookie with the same keys, and points session.snapshot_file
// at it, which edgeauth restores at start. The dev OIDC provider
// (`edgeauth idp`) runs because oidc discovery happens at start; it is not
// called during the measurement.
func prepareSession(ctx context.Context, env *scenarioEnv) (eaConfig, []string, func(), error) {
	idpAddr, err := env.procs.FreeAddr()
	if err != nil {
		return eaConfig{}, nil, nil, err
	}
	callback := "http://" + env.listen + "/.edgeauth/callback"
	p, err := env.procs.Start("idp", -1, nil, env.edgeauth, "idp", "-listen", idpAddr, "-redirect-uri", callback)
	if err != nil {
		return eaConfig{}, nil, nil, err
	}
	if err := p.WaitListening(ctx, idpAddr, 10*time.Second); err != nil {
		return eaConfig{}, nil, nil, err
	}
	issuerURL := "http://" + idpAddr
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return eaConfig{}, nil, nil, err
	}
	secret := hex.EncodeToString(raw[:]) // the key is these 64 bytes
	key := []byte(secret)
	snap := filepath.Join(env.dir, "sessions.snap")
	id, err := writeSessionSnapshot(ctx, snap, key, issuerURL)
	if err != nil {
		return eaConfig{}, nil, nil, err
	}
	codec, err := session.NewCodec([][]byte{key})
	if err != nil {
		return eaConfig{}, nil, nil, fmt.Errorf("session codec: %w", err)
	}
	cfg := baseConfig(env)
	cfg.OIDC = &eaOIDC{Issuer: issuerURL, ClientID: devidp.DemoClientID, ClientSecret: devidp.DemoClientSecret, RedirectURL: callback}
	cfg.Session = &eaSession{Secrets: []string{secret}, Store: "memory", SnapshotFile: snap}
	no := false
	cfg.Routes[0].Auth = "required"
	cfg.Routes[0].Bearer = &no
	// Session cost alone; risk has its own scenario.
	cfg.Routes[0].RiskMode = "off"
	return cfg, []string{"Cookie: " + sessionCookie + "=" + codec.Encode(id)}, nil, nil
}

// sessionCookie is session.cookie_name's default on plain HTTP.
const sessionCookie = "edgeauth_session"

func writeSessionSnapshot(ctx context.Context, path string, key []byte, issuerURL string) (string, error) {
	ms, err := session.NewMemoryStore(session.MemoryOptions{})
	if err != nil {
		return "", fmt.Errorf("session store: %w", err)
	}
	defer ms.Close()
	now := time.Now()
	s := &session.Session{
		ID: session.NewID(), Issuer: issuerURL, Subject: "alice", Email: "alice@example.com", EmailVerified: true,
		PreferredUsername: "alice", Name: "Alice", Groups: []string{"staff"},
		AuthTime: now, CreatedAt: now, LastSeen: now,
		// Past the run, so neither expiry nor a token refresh happens in it.
		ExpiresAt: now.Add(6 * time.Hour), TokenExpiry: now.Add(6 * time.Hour),
	}
	if err := ms.Put(ctx, s); err != nil {
		return "", fmt.Errorf("session put: %w", err)
	}
	if err := ms.Snapshot(path, key); err != nil {
		return "", fmt.Errorf("session snapshot: %w", err)
	}
	return s.ID, nil
}
