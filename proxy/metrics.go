package proxy

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the proxy's Prometheus collectors, registered on a registry
// the caller owns (no global registry). A nil *Metrics disables metrics.
type Metrics struct {
	requests      *prometheus.CounterVec   // route, code (1xx..5xx)
	duration      *prometheus.HistogramVec // route, code
	upstreamErrs  *prometheus.CounterVec   // route, kind
	inFlight      prometheus.Gauge
	reloads       *prometheus.CounterVec // result
	upstreamConns *prometheus.CounterVec // route
}

// NewMetrics creates the collectors and registers them on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgeauth_requests_total", Help: "Requests served, by route and status class.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "edgeauth_request_duration_seconds", Help: "Time to response headers, by route and status class.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "code"}),
		upstreamErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgeauth_upstream_errors_total", Help: "Upstream failures, by route and kind (connect, timeout, other).",
		}, []string{"route", "kind"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgeauth_requests_in_flight", Help: "Requests being handled now.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgeauth_reloads_total", Help: "Configuration reloads, by result (success, failure).",
		}, []string{"result"}),
		upstreamConns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgeauth_upstream_connections_opened_total", Help: "New upstream TCP connections, by route.",
		}, []string{"route"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.upstreamErrs, m.inFlight, m.reloads, m.upstreamConns} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("proxy: register metrics: %w", err)
		}
	}
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("failure")
	return m, nil
}

// ObserveReload counts a reload attempt. Swap counts successes itself; the
// caller reports failures (a config that did not build never reaches Swap).
func (m *Metrics) ObserveReload(ok bool) {
	if m == nil {
		return
	}
	if ok {
		m.reloads.WithLabelValues("success").Inc()
		return
	}
	m.reloads.WithLabelValues("failure").Inc()
}

var codeClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// Upstream error kinds, in label order.
const (
	errKindConnect = iota
	errKindTimeout
	errKindOther
	numErrKinds
)

var errKinds = [numErrKinds]string{"connect", "timeout", "other"}

// routeMetrics are the label-resolved collectors of one route, looked up once
// at build time so the hot path does no label hashing.
type routeMetrics struct {
	requests      [len(codeClasses)]prometheus.Counter
	duration      [len(codeClasses)]prometheus.Observer
	upstreamErrs  [numErrKinds]prometheus.Counter
	upstreamConns prometheus.Counter
}

func (m *Metrics) forRoute(name string) *routeMetrics {
	if m == nil {
		return nil
	}
	rm := &routeMetrics{upstreamConns: m.upstreamConns.WithLabelValues(name)}
	for i, c := range codeClasses {
		rm.requests[i] = m.requests.WithLabelValues(name, c)
		rm.duration[i] = m.duration.WithLabelValues(name, c)
	}
	for i, k := range errKinds {
		rm.upstreamErrs[i] = m.upstreamErrs.WithLabelValues(name, k)
	}
	return rm
}

func (rm *routeMetrics) observe(status int, seconds float64) {
	if rm == nil {
		return
	}
	c := status/100 - 1
	if c < 0 || c >= len(codeClasses) {
		c = 4
	}
	rm.requests[c].Inc()
	rm.duration[c].Observe(seconds)
}

func (rm *routeMetrics) upstreamError(kind int) {
	if rm != nil {
		rm.upstreamErrs[kind].Inc()
	}
}
