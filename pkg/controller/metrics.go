package controller

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the controller's Prometheus metrics.
type Metrics struct {
	pods      *prometheus.GaugeVec
	resources *prometheus.GaugeVec
	catalog   *prometheus.GaugeVec
	restarts  *prometheus.CounterVec
	upgrades  *prometheus.CounterVec
	halted    prometheus.Gauge
	duration  prometheus.Gauge
	cached    *prometheus.GaugeVec
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		pods: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sidecar_injector_pods",
			Help: "Pods of the namespaces in scope by namespace, template and state (current, stale, missing, tampered, not-wanted; none with no template).",
		}, []string{"namespace", "template", "state"}),
		resources: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sidecar_injector_sidecar_resources",
			Help: "What the injected sidecars of the running Pods in scope request and limit, summed by namespace and template: resource cpu in cores, memory in bytes; kind request or limit.",
		}, []string{"namespace", "template", "resource", "kind"}),
		catalog: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sidecar_injector_controller_catalog_info",
			Help: "The catalog version the classification uses; always 1.",
		}, []string{"version"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_injector_controller_restarts_total",
			Help: "Workload rollouts started to repair their Pods, by result: success, failure, dry-run (logged, not started), or unproven (the Pods' controller reference does not lead to the workload by UID; not started; once per workload and reason).",
		}, []string{"result"}),
		upgrades: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_injector_controller_upgrades_total",
			Help: "Pods upgraded in place, by result: started (images patched or sidecars resized), success (the new containers run and are ready, the resized ones with their new cpu and memory), halted (not ready in time: the workload's upgrade stopped), failure (the patch failed), dry-run (logged, not patched), unproven (the Pods' controller reference does not lead to the workload by UID; once per workload and reason).",
		}, []string{"result"}),
		halted: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sidecar_injector_controller_upgrades_halted",
			Help: "Workloads whose in-place upgrade stopped because an upgraded container did not become ready in time; they stay so until the catalog changes.",
		}),
		duration: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sidecar_injector_controller_classification_seconds",
			Help: "How long the last classification of every Pod (at a catalog change or the audit interval) took.",
		}),
		cached: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sidecar_injector_controller_cache_objects",
			Help: "What the controller's Pod cache held at the last full classification: pods, and shapes (distinct Pod contents the pods share).",
		}, []string{"kind"}),
	}
	for _, r := range []string{"success", "failure", "dry-run", "unproven"} {
		m.restarts.WithLabelValues(r)
	}
	for _, r := range []string{"started", "success", "halted", "failure", "dry-run", "unproven"} {
		m.upgrades.WithLabelValues(r)
	}
	reg.MustRegister(m.pods, m.resources, m.catalog, m.restarts, m.upgrades, m.halted, m.duration, m.cached)
	return m
}

// resynced notes a full classification.
func (m *Metrics) resynced(version string, took time.Duration, pods, shapes int) {
	m.catalog.Reset()
	m.catalog.WithLabelValues(version).Set(1)
	m.duration.Set(took.Seconds())
	m.cached.WithLabelValues("pods").Set(float64(pods))
	m.cached.WithLabelValues("shapes").Set(float64(shapes))
}
