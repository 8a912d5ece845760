package admission

import "github.com/prometheus/client_golang/prometheus"

// Outcome labels a request in the metrics and the logs.
type Outcome string

// The outcomes of a request.
const (
	Injected Outcome = "injected"
	Skipped  Outcome = "skipped"
	Denied   Outcome = "denied"
	// Invalid: a request the webhook could not take, the client's fault.
	Invalid Outcome = "invalid"
	// Error: the webhook's own fault, or it cannot decide now.
	Error Outcome = "error"
)

// Metrics are the webhook's Prometheus metrics.
type Metrics struct {
	Requests   *prometheus.CounterVec
	Injections *prometheus.CounterVec
	Duration   prometheus.Histogram
	InFlight   prometheus.Gauge
}

// count counts one request with outcome o.
func (m *Metrics) count(o Outcome) { m.Requests.WithLabelValues(string(o)).Inc() }

// injected counts one injection of template t.
func (m *Metrics) injected(t string) { m.Injections.WithLabelValues(t).Inc() }

// durationBuckets resolve the webhook's own range: tens of microseconds
// for a typical review, milliseconds for a huge Pod, up to the API
// server's webhook timeouts.
var durationBuckets = []float64{25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1, 2.5, 10}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_injector_requests_total",
			Help: "Admission requests by outcome: injected, skipped, denied, invalid (a malformed or oversized request, the client's fault) or error (the webhook's).",
		}, []string{"outcome"}),
		Injections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_injector_injections_total",
			Help: "Templates injected, by template.",
		}, []string{"template"}),
		Duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sidecar_injector_request_duration_seconds",
			Help:    "Time to answer an admission request, in seconds.",
			Buckets: durationBuckets,
		}),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sidecar_injector_requests_in_flight",
			Help: "Admission requests being handled now.",
		}),
	}
	for _, o := range []Outcome{Injected, Skipped, Denied, Invalid, Error} {
		m.Requests.WithLabelValues(string(o)) // exported as zeros from the start
	}
	reg.MustRegister(m.Requests, m.Injections, m.Duration, m.InFlight)
	return m
}
