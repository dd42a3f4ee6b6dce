package httpapi

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The request outcomes counted by dcv_resolver_resolve_requests_total.
const (
	outcomeHit = iota
	outcomeMissFound
	outcomeNotFound
	outcomeBadRequest
	outcomeForbidden
	numOutcomes
)

var outcomeLabels = [numOutcomes]string{"hit", "miss-found", "not-found", "bad-request", "forbidden"}

// Metrics count resolve requests and their latency. Create them once per process; every
// method is safe on a nil *Metrics.
type Metrics struct {
	requests [numOutcomes]prometheus.Counter
	latency  prometheus.Histogram
}

// NewMetrics creates the metrics and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dcv_resolver_resolve_requests_total",
		Help: "Requests from the gateway by outcome: hit, miss-found (found by an on-miss lookup), not-found, bad-request, forbidden.",
	}, []string{"outcome"})
	m := &Metrics{latency: prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "dcv_resolver_resolve_duration_seconds",
		Help:    "Time to answer a resolve request, on-miss lookups included.",
		Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .05, .1, .5, 1, 5},
	})}
	for i, l := range outcomeLabels {
		m.requests[i] = vec.WithLabelValues(l) // pre-bound: no label lookup per request
	}
	if reg != nil {
		reg.MustRegister(vec, m.latency)
	}
	return m
}

func (m *Metrics) request(outcome int, start time.Time) {
	if m == nil {
		return
	}
	m.requests[outcome].Inc()
	m.latency.Observe(time.Since(start).Seconds())
}

func (m *Metrics) forbidden() {
	if m != nil {
		m.requests[outcomeForbidden].Inc()
	}
}
