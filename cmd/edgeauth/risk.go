package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/edgeauth/edgeauth/config"
	"github.com/edgeauth/edgeauth/middleware/policy"
	"github.com/edgeauth/edgeauth/middleware/reqstate"
	"github.com/edgeauth/edgeauth/middleware/risk"
	"github.com/edgeauth/edgeauth/middleware/risk/geoip"
	"github.com/edgeauth/edgeauth/middleware/risk/replay"
)

// newRiskEngine compiles the risk section of cfg into the engine. The proxy
// (services.buildRisk) and `edgeauth risk replay` both build it here, so a
// replay scores with exactly the rules the proxy enforces.
func newRiskEngine(cfg *config.Config) (*risk.Engine, error) {
	rules := cfg.Risk.Rules
	eng, err := risk.NewEngine(risk.Options{
		Weights: map[string]int{
			"new_device": rules.NewDevice, "new_country": rules.NewCountry, "new_asn": rules.NewASN,
			"impossible_travel": rules.ImpossibleTravel, "anonymous_ip": rules.AnonymousIP,
			"fingerprint_changed": rules.FingerprintChanged,
		},
		MaxSpeedKMH:  cfg.Risk.ImpossibleTravelKmh,
		CountryDeny:  cfg.Risk.CountryDeny,
		CountryAllow: cfg.Risk.CountryAllow,
		ASNDeny:      cfg.Risk.ASNDeny,
		Limits: risk.Limits{
			MaxDevices: cfg.Risk.History.MaxDevices, MaxCountries: cfg.Risk.History.MaxCountries,
			MaxASNs: cfg.Risk.History.MaxASNs, TTL: cfg.Risk.History.TTL.D(),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("risk: %w", err)
	}
	return eng, nil
}

// loginRiskThreshold is the score at which a fresh login that did not use
// the step-up factor is not trusted yet (its device and location are not
// recorded): the lowest step_up_at of the enforcing, authenticated routes,
// 40 when there is none. The login hook and replay share it.
func loginRiskThreshold(cfg *config.Config) int {
	at := 0
	for _, r := range cfg.Routes {
		if r.Auth == config.AuthRequired && r.RiskMode == config.RiskEnforce && r.StepUpAt > 0 && (at == 0 || r.StepUpAt < at) {
			at = r.StepUpAt
		}
	}
	if at == 0 {
		at = 40
	}
	return at
}

// routeDecider maps a replayed event's route and risk result to a
// decision with the proxy's own policy rules (policyRule), built with risk
// mode enforce whatever the route says, so a replay shows what enforcing
// would do. Events with an empty or unknown route get a rule from the
// route defaults; routes with auth: none run no risk step in the proxy and
// allow.
func routeDecider(cfg *config.Config) (func(route string, r *risk.Result) reqstate.Decision, error) {
	rules := make(map[string]*policy.Rule, len(cfg.Routes))
	for _, r := range cfg.Routes {
		if r.Auth == config.AuthNone {
			continue
		}
		rule, err := policyRule(cfg, r, config.RiskEnforce)
		if err != nil {
			return nil, fmt.Errorf("route %q: %w", r.Name, err)
		}
		rules[r.Name] = rule
	}
	none := make(map[string]bool)
	for _, r := range cfg.Routes {
		none[r.Name] = r.Auth == config.AuthNone
	}
	def := config.RouteDefaults()
	def.Name = "default"
	defRule, err := policyRule(cfg, def, config.RiskEnforce)
	if err != nil {
		return nil, fmt.Errorf("route defaults: %w", err)
	}
	return func(route string, res *risk.Result) reqstate.Decision {
		if none[route] {
			return reqstate.DecisionAllow
		}
		rule, ok := rules[route]
		if !ok {
			rule = defRule
		}
		list := res.List()
		reasons := make([]string, len(list))
		for i, r := range list {
			reasons[i] = r.String()
		}
		return rule.RiskDecision(res.Score, reasons)
	}, nil
}

const riskUsage = `Usage: edgeauth risk replay -config FILE [-in events.jsonl] [-out decisions.jsonl]

Scores recorded events with the risk rules, GeoIP databases, history limits
and per-route thresholds of FILE, exactly as the proxy would, without any
network access. Input is JSON Lines (time, sub, ip, and optionally
user_agent, accept_language, sec_ch_ua, sec_ch_ua_platform, device_id,
route, event = login | step_up | request, label); each output line is the
input object with score, reasons, decision and location added.

Malformed lines are reported on stderr with their line number and skipped;
they do not change the exit status. Progress goes to stderr every 100,000
lines. Exit 0 when the whole input was processed, 1 on a config or I/O
error, 2 on a usage error.
`

// riskCommand implements `edgeauth risk replay`.
func riskCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "replay" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, riskUsage)
			return 0
		}
		fmt.Fprint(stderr, riskUsage)
		return 2
	}
	fs := flag.NewFlagSet("risk replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "path to the YAML config file (required)")
	inPath := fs.String("in", "", "events, JSON Lines (default or \"-\": stdin)")
	outPath := fs.String("out", "", "decisions, JSON Lines (default or \"-\": stdout)")
	progress := fs.Int("progress", 100_000, "print progress to stderr every N lines (0: never)")
	fs.Usage = func() {
		fmt.Fprint(stderr, riskUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *configPath == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		printConfigErrors(stderr, *configPath, err)
		return 1
	}

	in := io.Reader(os.Stdin)
	if *inPath != "" && *inPath != "-" {
		f, err := os.Open(*inPath)
		if err != nil {
			fmt.Fprintf(stderr, "edgeauth risk replay: %v\n", err)
			return 1
		}
		defer f.Close()
		in = f
	}
	out := stdout
	var outFile *os.File
	if *outPath != "" && *outPath != "-" {
		// Created only once the config and input opened: a typo in -config
		// must not truncate last run's decisions.
		f, err := os.Create(*outPath)
		if err != nil {
			fmt.Fprintf(stderr, "edgeauth risk replay: %v\n", err)
			return 1
		}
		outFile, out = f, f
	}

	every := *progress
	if every <= 0 {
		every = -1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	st, err := replayConfig(ctx, cfg, in, out, stderr, every)
	if outFile != nil {
		if cerr := outFile.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close %s: %w", *outPath, cerr)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "edgeauth risk replay: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "edgeauth risk replay: %d events scored (allow %d, step_up %d, deny %d), %d malformed lines skipped\n",
		st.Events, st.Decisions[reqstate.DecisionAllow], st.Decisions[reqstate.DecisionStepUp], st.Decisions[reqstate.DecisionDeny], st.Malformed)
	return 0
}

// replayConfig builds the same engine, GeoIP reader and thresholds as the
// proxy from cfg, with an in-memory history store, and runs in through it.
func replayConfig(ctx context.Context, cfg *config.Config, in io.Reader, out, stderr io.Writer, progressEvery int) (replay.Stats, error) {
	// Lookup failures and history warnings go to stderr as text; the
	// operator is watching a terminal, not a log pipeline.
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	eng, err := newRiskEngine(cfg)
	if err != nil {
		return replay.Stats{}, err
	}
	var loc geoip.Locator
	if cfg.GeoIP.City != "" || cfg.GeoIP.ASN != "" || cfg.GeoIP.AnonymousIP != "" {
		// No change poll: a replay reads one version of each database.
		r, err := geoip.New(geoip.Options{CityPath: cfg.GeoIP.City, ASNPath: cfg.GeoIP.ASN,
			AnonymousIPPath: cfg.GeoIP.AnonymousIP, PollInterval: -1, Logger: logger})
		if err != nil {
			return replay.Stats{}, err // names the database kind and file
		}
		defer r.Close()
		loc = r
	}
	// No L1: its asynchronous admission would make the result depend on
	// timing. The map store is bounded by subjects × history limits.
	svc, err := risk.NewService(risk.ServiceOptions{Engine: eng, Locator: loc, Store: replay.NewMemoryStore(),
		NotFound: replay.ErrNotFound, L1MaxBytes: -1, Logger: logger})
	if err != nil {
		return replay.Stats{}, fmt.Errorf("risk: %w", err)
	}
	defer svc.Close()
	decide, err := routeDecider(cfg)
	if err != nil {
		return replay.Stats{}, fmt.Errorf("risk: %w", err)
	}
	return replay.Run(ctx, replay.Options{
		Service: svc, Decide: decide, Issuer: cfg.OIDC.Issuer,
		LoginStepUpAt: loginRiskThreshold(cfg), ProgressEvery: progressEvery,
	}, in, out, stderr)
}
