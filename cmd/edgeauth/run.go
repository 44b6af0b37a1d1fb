package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/edgeauth/edgeauth/config"
	"github.com/edgeauth/edgeauth/proxy"
)

func runCommand(args []string, stderr io.Writer) int {
	path, cfg, code := loadConfigFlag("run", args, stderr,
		"Serves traffic as the config file says. SIGHUP or a change of the file reloads it;\nSIGTERM drains in-flight requests and stops.")
	if cfg == nil {
		return code
	}
	logger := newLogger(cfg.Log, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := serve(ctx, path, cfg, logger, nil); err != nil {
		logger.Error("edgeauth stopped", "err", err)
		return 1
	}
	return 0
}

// loadConfigFlag parses "-config FILE" for a subcommand and loads the file.
// It returns a nil config with the exit code on any problem, after telling
// the user: 2 for usage errors, 1 for an invalid config.
func loadConfigFlag(name string, args []string, stderr io.Writer, what string) (string, *config.Config, int) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "path to the YAML config file (required)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: edgeauth %s -config FILE\n\n%s\n", name, what)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return "", nil, 2
	}
	if *configPath == "" || fs.NArg() > 0 {
		fs.Usage()
		return "", nil, 2
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		printConfigErrors(stderr, *configPath, err)
		return "", nil, 1
	}
	return *configPath, cfg, 0
}

func printConfigErrors(w io.Writer, path string, err error) {
	problems := config.Problems(err)
	if len(problems) == 0 {
		fmt.Fprintf(w, "%s: %v\n", path, err)
		return
	}
	fmt.Fprintf(w, "%s: %d problem(s):\n", path, len(problems))
	for _, p := range problems {
		fmt.Fprintf(w, "  %v\n", p)
	}
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	switch c.Level {
	case config.LogDebug:
		level = slog.LevelDebug
	case config.LogWarn:
		level = slog.LevelWarn
	case config.LogError:
		level = slog.LevelError
	default:
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == config.LogText {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// listeners are handed in by the demo and tests; nil means "listen as the
// config says".
type listeners struct {
	main, admin net.Listener
	// serving, when set, is called once both listeners accept requests.
	serving func()
}

// serve runs edgeauth until ctx ends: builds everything from cfg, serves the
// main and admin listeners, reloads on SIGHUP or a change of the config
// file, and drains on the way out.
func serve(ctx context.Context, configPath string, cfg *config.Config, logger *slog.Logger, lns *listeners) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := proxy.NewMetrics(reg)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}

	svc, err := newServices(ctx, cfg, logger, reg)
	if err != nil {
		return err
	}
	defer svc.Close()

	routes, err := svc.buildRoutes(cfg, metrics)
	if err != nil {
		return fmt.Errorf("build routes: %w", err)
	}
	srv, err := proxy.NewServer(serverOptions(cfg, logger, metrics, svc), routes)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	svc.srv.Store(srv)
	admin, err := proxy.NewAdmin(proxy.AdminOptions{
		Listen:   cfg.Admin.Listen,
		Gatherer: reg,
		Ready:    srv.Ready,
		Handlers: svc.adminHandlers(),
		Logger:   logger,
	})
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}

	var mainLn, adminLn net.Listener
	if lns != nil {
		mainLn, adminLn = lns.main, lns.admin
	}
	if mainLn == nil {
		if mainLn, err = net.Listen("tcp", cfg.Listen); err != nil {
			return fmt.Errorf("listen %s: %w", cfg.Listen, err)
		}
	}
	if adminLn == nil && cfg.Admin.Listen != "" {
		if adminLn, err = net.Listen("tcp", cfg.Admin.Listen); err != nil {
			mainLn.Close()
			return fmt.Errorf("admin listen %s: %w", cfg.Admin.Listen, err)
		}
	}

	if svc.rp != nil {
		// Give discovery a moment before taking traffic, so the first
		// visitors are not told sign-in is unavailable; an unreachable
		// provider does not stop the start (sessions and public routes
		// work without it, and discovery keeps retrying).
		wctx, cancel := context.WithTimeout(ctx, cfg.OIDC.DiscoveryTimeout.D())
		if err := svc.rp.WaitReady(wctx); err != nil {
			logger.Warn("OIDC provider not reachable yet; logins answer 503 until it is", "issuer", cfg.OIDC.Issuer)
		}
		cancel()
	}

	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(mainLn) }()
	if adminLn != nil {
		go func() {
			if err := admin.Serve(adminLn); err != nil {
				errc <- fmt.Errorf("admin: %w", err)
			}
		}()
	}
	if lns != nil && lns.serving != nil {
		lns.serving()
	}
	logger.Info("edgeauth serving", "listen", mainLn.Addr().String(), "admin", addrOf(adminLn),
		"routes", len(cfg.Routes), "tls", cfg.TLS.Enabled(), "version", buildVersion())

	reloads := make(chan string, 1)
	if configPath != "" {
		stopWatch := watchReloads(ctx, configPath, reloads, logger)
		defer stopWatch()
	}
	current := cfg
	for {
		select {
		case <-ctx.Done():
			logger.Info("draining", "timeout", cfg.Server.ShutdownTimeout.D().String())
			sctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout.D())
			err := srv.Shutdown(sctx)
			_ = admin.Shutdown(sctx)
			cancel()
			svc.beforeExit(logger)
			if err != nil {
				return fmt.Errorf("drain: %w", err)
			}
			logger.Info("stopped")
			return nil
		case err := <-errc:
			return err
		case why := <-reloads:
			next, err := reload(configPath, current, svc, metrics, srv, logger, why)
			if err != nil {
				metrics.ObserveReload(false)
				logger.Error("reload rejected; the previous config keeps serving", "reason", why, "err", err)
				continue
			}
			current = next // Swap counted the successful reload
		}
	}
}

func addrOf(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// reload loads the config again and swaps in routes built from it. Only
// what routes carry changes live; listener, TLS files, server limits and the
// session store need a restart, and a change there is logged.
func reload(path string, current *config.Config, svc *services, metrics *proxy.Metrics, srv *proxy.Server, logger *slog.Logger, why string) (*config.Config, error) {
	next, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if next.Listen != current.Listen || next.TLS != current.TLS || next.Admin.Listen != current.Admin.Listen ||
		next.Server != current.Server || next.Session.Store != current.Session.Store {
		logger.Warn("listener, TLS, server limits or session store changed: these take effect on restart only")
	}
	routes, err := svc.buildRoutes(next, metrics)
	if err != nil {
		return nil, err
	}
	srv.Swap(routes)
	logger.Info("config reloaded", "reason", why, "routes", len(next.Routes))
	return next, nil
}

// watchReloads sends on out for SIGHUP and for writes to the config file.
// It watches the directory, not the file, because editors and Kubernetes
// ConfigMaps replace the file by rename, which ends a watch on the file.
func watchReloads(ctx context.Context, path string, out chan<- string, logger *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	w, err := fsnotify.NewWatcher()
	if err != nil {
		logger.Warn("config file watch unavailable; reload with SIGHUP", "err", err)
	} else if err := w.Add(filepath.Dir(path)); err != nil {
		logger.Warn("config file watch unavailable; reload with SIGHUP", "err", err)
		w.Close()
		w = nil
	}
	var events chan fsnotify.Event
	if w != nil {
		events = w.Events
	}
	base := filepath.Base(path)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Editors write a file in several steps; wait for quiet before
		// reloading so a half-written file is not read.
		var debounce <-chan time.Time
		send := func(why string) {
			select {
			case out <- why:
			default:
			}
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-done:
				return
			case <-hup:
				send("SIGHUP")
			case ev, ok := <-events:
				if !ok {
					events = nil
					continue
				}
				if filepath.Base(ev.Name) == base && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) != 0 {
					debounce = time.After(200 * time.Millisecond)
				}
			case <-debounce:
				send("config file changed")
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
		wg.Wait()
		if w != nil {
			w.Close()
		}
	}
}

func serverOptions(cfg *config.Config, logger *slog.Logger, metrics *proxy.Metrics, svc *services) proxy.Options {
	opts := proxy.Options{
		Listen:         cfg.Listen,
		HeaderTimeout:  cfg.Server.HeaderTimeout.D(),
		ReadTimeout:    cfg.Server.ReadTimeout.D(),
		WriteTimeout:   cfg.Server.WriteTimeout.D(),
		IdleTimeout:    cfg.Server.IdleTimeout.D(),
		MaxHeaderBytes: int(cfg.Server.MaxHeaderBytes),
		MaxBodyBytes:   int(cfg.Server.MaxBodyBytes),
		Concurrency:    cfg.Server.MaxConns,
		Logger:         logger,
		Metrics:        metrics,
		OnClientHello:  svc.onClientHello,
	}
	if cfg.TLS.Enabled() {
		opts.TLS = &proxy.TLSOptions{CertFile: cfg.TLS.CertFile, KeyFile: cfg.TLS.KeyFile}
	}
	return opts
}
