package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/edgeauth/edgeauth/config"
	"github.com/edgeauth/edgeauth/proxy"
)

// services holds what lives as long as the process: stores, caches, key
// sets and the audit stream. Routes are rebuilt from it on every reload.
type services struct {
	logger *slog.Logger
	reg    prometheus.Registerer
}

func newServices(ctx context.Context, cfg *config.Config, logger *slog.Logger, reg prometheus.Registerer) (*services, error) {
	return &services{logger: logger, reg: reg}, nil
}

func (s *services) Close() {}

// beforeExit runs after the listeners drained.
func (s *services) beforeExit(logger *slog.Logger) {}

func (s *services) onClientHello(*tls.ClientHelloInfo) {}

func (s *services) adminHandlers() map[string]fasthttp.RequestHandler { return nil }

// buildRoutes compiles cfg's routes with the auth pipeline in front of each.
func (s *services) buildRoutes(cfg *config.Config, metrics *proxy.Metrics) (*proxy.Routes, error) {
	trusted, err := parsePrefixes(cfg.TrustedProxies)
	if err != nil {
		return nil, err
	}
	byName := make(map[string]config.Route, len(cfg.Routes))
	opts := make([]proxy.RouteOptions, 0, len(cfg.Routes))
	for _, r := range cfg.Routes {
		byName[r.Name] = r
		upstreams := r.Upstreams
		if r.Upstream != "" {
			upstreams = []string{r.Upstream}
		}
		opts = append(opts, proxy.RouteOptions{
			Name:           r.Name,
			Host:           r.Host,
			PathPrefix:     r.Path,
			Upstreams:      upstreams,
			HostHeader:     r.HostHeader,
			ConnectTimeout: r.Timeouts.Connect.D(),
			ReadTimeout:    r.Timeouts.Read.D(),
			WriteTimeout:   r.Timeouts.Write.D(),
			IdleTimeout:    r.Timeouts.Idle.D(),
			MaxConns:       r.MaxConns,
			MaxBodyBytes:   int(r.MaxBodyBytes),
		})
	}
	return proxy.NewRoutes(proxy.RoutesConfig{
		Routes:         opts,
		DefaultRoute:   cfg.DefaultRoute,
		Reserved:       s.reservedHandler(),
		TrustedProxies: trusted,
		Metrics:        metrics,
		Logger:         s.logger,
		Wrap: func(ro proxy.RouteOptions, forward fasthttp.RequestHandler) (fasthttp.RequestHandler, error) {
			return s.wrapRoute(cfg, byName[ro.Name], forward)
		},
	})
}

func (s *services) reservedHandler() fasthttp.RequestHandler { return nil }

// wrapRoute puts the auth pipeline in front of a route's forwarder.
func (s *services) wrapRoute(cfg *config.Config, r config.Route, forward fasthttp.RequestHandler) (fasthttp.RequestHandler, error) {
	if r.Auth == config.AuthNone {
		return forward, nil
	}
	return nil, fmt.Errorf("route %q: auth %q is not available in this build", r.Name, r.Auth)
}

func parsePrefixes(cidrs []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(cidrs))
	for _, c := range cidrs {
		if !strings.Contains(c, "/") {
			a, err := netip.ParseAddr(c)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: %w", c, err)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: %w", c, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
