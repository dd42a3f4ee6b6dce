package resolve

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the index, poll and on-miss lookup metrics. Create them once per process with
// NewMetrics; every method is safe on a nil *Metrics, which records nothing.
type Metrics struct {
	sessions     *prometheus.GaugeVec
	instances    *prometheus.GaugeVec
	pollDuration *prometheus.HistogramVec
	polls        *prometheus.CounterVec
	lastSuccess  *prometheus.GaugeVec
	conflicts    prometheus.Gauge
	lookups      *prometheus.CounterVec
	rateLimited  prometheus.Counter
	negativeHits prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dcv_resolver_index_sessions",
			Help: "Session IDs each source contributes to the index (regions, and \"file\").",
		}, []string{"source"}),
		instances: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dcv_resolver_index_instances",
			Help: "Hosts (instances or file entries) each source contributes to the index.",
		}, []string{"source"}),
		pollDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dcv_resolver_poll_duration_seconds",
			Help:    "Time one full poll of a source took, retries included.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"source"}),
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dcv_resolver_polls_total",
			Help: "Polls by source and result (success, failure, unchanged).",
		}, []string{"source", "result"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dcv_resolver_last_successful_poll_timestamp_seconds",
			Help: "Unix time of the source's last successful poll; alert on time() minus this.",
		}, []string{"source"}),
		conflicts: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dcv_resolver_session_conflicts",
			Help: "Session IDs currently claimed by more than one host.",
		}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dcv_resolver_on_miss_lookups_total",
			Help: "On-miss EC2 lookups performed, by result (found, not-found, failed).",
		}, []string{"result"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dcv_resolver_on_miss_rate_limited_total",
			Help: "Unknown sessions answered 404 without a lookup because the lookup budget was spent.",
		}),
		negativeHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dcv_resolver_negative_cache_hits_total",
			Help: "Unknown sessions answered 404 from the negative cache, without a lookup.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.sessions, m.instances, m.pollDuration, m.polls, m.lastSuccess,
			m.conflicts, m.lookups, m.rateLimited, m.negativeHits)
	}
	return m
}

func (m *Metrics) snapshot(s *Snapshot, conflicts int) {
	if m == nil {
		return
	}
	for name, st := range s.sources {
		m.sessions.WithLabelValues(name).Set(float64(st.Sessions))
		m.instances.WithLabelValues(name).Set(float64(st.Targets))
	}
	m.conflicts.Set(float64(conflicts))
}

func (m *Metrics) forget(source string) {
	if m == nil {
		return
	}
	m.sessions.DeleteLabelValues(source)
	m.instances.DeleteLabelValues(source)
	m.pollDuration.DeleteLabelValues(source)
	m.lastSuccess.DeleteLabelValues(source)
	for _, r := range []string{"success", "failure", "unchanged"} {
		m.polls.DeleteLabelValues(source, r)
	}
}

func (m *Metrics) poll(source, result string, took time.Duration, at time.Time) {
	if m == nil {
		return
	}
	m.polls.WithLabelValues(source, result).Inc()
	if result != "unchanged" { // an unchanged file was only stat'ed: no poll to time
		m.pollDuration.WithLabelValues(source).Observe(took.Seconds())
	}
	if result != "failure" {
		m.lastSuccess.WithLabelValues(source).Set(float64(at.UnixNano()) / 1e9)
	}
}

// lookup counts one on-miss lookup, or its refusal, however many requests shared it.
func (m *Metrics) lookup(o Outcome) {
	if m == nil {
		return
	}
	switch o {
	case MissFound:
		m.lookups.WithLabelValues("found").Inc()
	case NotFound:
		m.lookups.WithLabelValues("not-found").Inc()
	case LookupFailed:
		m.lookups.WithLabelValues("failed").Inc()
	case RateLimited:
		m.rateLimited.Inc()
	}
}

func (m *Metrics) negativeHit() {
	if m != nil {
		m.negativeHits.Inc()
	}
}
