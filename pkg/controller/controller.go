// Package controller keeps the fleet's conformance in view: it classifies
// every Pod of the namespaces in scope with package conformance, exports
// the counts as metrics, records an Event on each workload whose Pods
// turn missing, stale or tampered, and, when asked, rolls out those
// workloads one at a time so the webhook injects their new Pods. It is
// the only part of the project that writes to the cluster.
package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/conformance"
)

// Options configure the reconciler; NewManagerOptions gives the
// defaults.
type Options struct {
	// Catalog returns the catalog in force.
	Catalog func() *catalog.Catalog
	// Repair rolls out the Deployments, StatefulSets and DaemonSets whose
	// Pods need repair; off by default.
	Repair bool
	// DryRun logs and counts the rollouts Repair would start, and starts
	// none.
	DryRun bool
	// MaxConcurrentRestarts bounds the rollouts in progress at once; at
	// least 1.
	MaxConcurrentRestarts int
	// AuditInterval is the full resync.
	AuditInterval time.Duration
	Log           logr.Logger
}

// Reconciler classifies the whole fleet on every request: the requests
// all share one key, so a burst of Pod events makes one pass.
type Reconciler struct {
	Client client.Client
	// Reader reads, uncached, the ReplicaSets that prove a Deployment
	// owns a Pod.
	Reader   client.Reader
	Recorder record.EventRecorder
	Metrics  *Metrics
	Options

	last       map[key]conformance.State // owners reported, for one Event per change
	restarting map[key]bool              // rollouts started and not yet complete
}

// claim is the controller reference the Pods of an owner that need
// repair carry: the one a restart must prove, by UID, before it touches
// the owner. A Pod can name any owner; only its UID can be checked.
type claim struct {
	ref    metav1.OwnerReference
	mixed  bool // the Pods name different controllers
	exists bool
}

// key names a workload.
type key struct {
	namespace string
	owner     conformance.Owner
}

// Request is the one request every event maps to.
var Request = reconcile.Request{NamespacedName: types.NamespacedName{Name: "fleet"}}

var _ reconcile.Reconciler = &Reconciler{}

// Reconcile classifies every Pod in scope, sets the gauges, records the
// Events and starts the rollouts that are due.
func (r *Reconciler) Reconcile(ctx context.Context, _ reconcile.Request) (ctrl.Result, error) {
	if r.last == nil {
		r.last, r.restarting = map[key]conformance.State{}, map[key]bool{}
	}
	cat := r.Catalog()
	var namespaces corev1.NamespaceList
	if err := r.Client.List(ctx, &namespaces); err != nil {
		return ctrl.Result{}, err
	}
	inScope := map[string]map[string]string{}
	for _, ns := range namespaces.Items {
		if conformance.InScope(ns.Labels, cat) {
			inScope[ns.Name] = ns.Labels
		}
	}
	// The cache's own objects, read and never modified: a copy of every
	// Pod on every pass would double the controller's memory.
	var pods corev1.PodList
	if err := r.Client.List(ctx, &pods, client.UnsafeDisableDeepCopy); err != nil {
		return ctrl.Result{}, err
	}
	start := time.Now()
	f := classify(pods.Items, inScope, cat)
	r.Metrics.set(f.counts, cat.Version, time.Since(start))
	r.report(f.owners)
	if r.Repair {
		if err := r.repair(ctx, f.owners, f.claims); err != nil {
			return ctrl.Result{}, err
		}
	}
	after := r.AuditInterval
	if len(r.restarting) > 0 {
		after = min(after, 2*time.Second) // watch the rollouts through
	}
	return ctrl.Result{RequeueAfter: after}, nil
}

// fleetState is one pass's classification: each owner's worst state,
// the controller reference its Pods that need repair carry, and the
// gauges' counts by namespace, template and state.
type fleetState struct {
	owners map[key]conformance.State
	claims map[key]claim
	counts map[[3]string]float64
}

// classify classifies the running Pods of the namespaces in scope.
func classify(pods []corev1.Pod, inScope map[string]map[string]string, cat *catalog.Catalog) fleetState {
	f := fleetState{owners: map[key]conformance.State{}, claims: map[key]claim{}, counts: map[[3]string]float64{}}
	for i := range pods {
		pod := &pods[i]
		labels, ok := inScope[pod.Namespace]
		if !ok || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed || pod.DeletionTimestamp != nil {
			continue
		}
		res := conformance.Classify(pod, labels, cat)
		for _, t := range res.Templates {
			f.counts[[3]string{pod.Namespace, t.Name, string(t.State)}]++
		}
		if len(res.Templates) == 0 {
			f.counts[[3]string{pod.Namespace, "", string(conformance.None)}]++
		}
		k := key{pod.Namespace, conformance.OwnerOf(pod)}
		if cur, seen := f.owners[k]; seen {
			f.owners[k] = conformance.Worst(cur, res.State)
		} else {
			f.owners[k] = res.State
		}
		if ref := metav1.GetControllerOf(pod); ref != nil && res.State.NeedsRepair() {
			c := f.claims[k]
			c.mixed = c.mixed || (c.exists && c.ref.UID != ref.UID)
			c.ref, c.exists = *ref, true
			f.claims[k] = c
		}
	}
	return f
}

// report records an Event on each owner whose worst state turned to one
// that needs repair, once per change.
func (r *Reconciler) report(owners map[key]conformance.State) {
	for k, state := range owners {
		if !state.NeedsRepair() {
			delete(r.last, k)
			continue
		}
		if r.last[k] == state {
			continue
		}
		r.last[k] = state
		r.Recorder.Eventf(eventRef(k), corev1.EventTypeWarning, "Sidecars"+titled(state),
			"Pods of %s %s are %s: they do not carry what the catalog renders for them today; `sidecar-injector audit -n %s` says why", k.owner.Kind, k.owner.Name, state, k.namespace)
	}
	for k := range r.last {
		if _, ok := owners[k]; !ok {
			delete(r.last, k)
		}
	}
}

func titled(s conformance.State) string {
	switch s {
	case conformance.Missing:
		return "Missing"
	case conformance.Stale:
		return "Stale"
	}
	return "Tampered"
}

// ownerAPIVersions are the API versions of the owners OwnerOf names.
var ownerAPIVersions = map[string]string{
	"Deployment": "apps/v1", "StatefulSet": "apps/v1", "DaemonSet": "apps/v1", "ReplicaSet": "apps/v1",
	"Job": "batch/v1", "CronJob": "batch/v1", "Pod": "v1", "ReplicationController": "v1",
}

// eventRef is the owner an Event is recorded on, whatever its kind.
func eventRef(k key) *corev1.ObjectReference {
	return &corev1.ObjectReference{APIVersion: ownerAPIVersions[k.owner.Kind], Kind: k.owner.Kind, Namespace: k.namespace, Name: k.owner.Name}
}

// object is a restartable owner (conformance.Owner.Restartable) as an
// object to read or patch.
func object(k key) client.Object {
	meta := metav1.ObjectMeta{Name: k.owner.Name, Namespace: k.namespace}
	switch k.owner.Kind {
	case "Deployment":
		return &appsv1.Deployment{ObjectMeta: meta}
	case "StatefulSet":
		return &appsv1.StatefulSet{ObjectMeta: meta}
	}
	return &appsv1.DaemonSet{ObjectMeta: meta}
}

// repair finishes the rollouts in progress and starts the next ones, at
// most MaxConcurrentRestarts at a time, in namespace/name order. It never
// touches a workload already mid-rollout, a bare Pod or a Job.
func (r *Reconciler) repair(ctx context.Context, owners map[key]conformance.State, claims map[key]claim) error {
	for k := range r.restarting {
		done, err := r.rolledOut(ctx, k)
		if err != nil {
			return err
		}
		if done {
			delete(r.restarting, k)
		}
	}
	var due []key
	for k, state := range owners {
		if state.NeedsRepair() && k.owner.Restartable() && !r.restarting[k] {
			due = append(due, k)
		}
	}
	sort.Slice(due, func(i, j int) bool {
		return due[i].namespace+"/"+due[i].owner.Name < due[j].namespace+"/"+due[j].owner.Name
	})
	for _, k := range due {
		if len(r.restarting) >= r.MaxConcurrentRestarts {
			return nil
		}
		if done, err := r.rolledOut(ctx, k); err != nil || !done {
			continue // mid-rollout already, or gone
		}
		if reason := r.unproven(ctx, k, claims[k]); reason != "" {
			r.Log.Info("Not restarting: its ownership of the Pods is not proven", "namespace", k.namespace, "kind", k.owner.Kind, "name", k.owner.Name, "reason", reason)
			r.Metrics.restarts.WithLabelValues("unproven").Inc()
			continue
		}
		if r.DryRun {
			r.Log.Info("Would restart", "namespace", k.namespace, "kind", k.owner.Kind, "name", k.owner.Name)
			r.Metrics.restarts.WithLabelValues("dry-run").Inc()
			continue
		}
		if err := r.restart(ctx, k); err != nil {
			r.Metrics.restarts.WithLabelValues("failure").Inc()
			r.Log.Error(err, "Restart failed", "namespace", k.namespace, "kind", k.owner.Kind, "name", k.owner.Name)
			continue
		}
		r.Metrics.restarts.WithLabelValues("success").Inc()
		r.Log.Info("Restarted", "namespace", k.namespace, "kind", k.owner.Kind, "name", k.owner.Name)
		r.restarting[k] = true
	}
	return nil
}

// unproven says why the Pods that need repair are not proven to be the
// owner's, or "": their controller reference must name, by UID, the
// StatefulSet or DaemonSet itself, or for a Deployment a ReplicaSet whose
// own controller is the Deployment, by UID, in the same namespace.
func (r *Reconciler) unproven(ctx context.Context, k key, c claim) string {
	switch {
	case !c.exists:
		return "the Pods name no controller"
	case c.mixed:
		return "the Pods name different controllers"
	}
	owner := object(k)
	if err := r.Client.Get(ctx, client.ObjectKeyFromObject(owner), owner); err != nil {
		return err.Error()
	}
	if k.owner.Kind != "Deployment" {
		if c.ref.Kind != k.owner.Kind || c.ref.UID != owner.GetUID() {
			return fmt.Sprintf("the Pods' controller %s %s (uid %s) is not it", c.ref.Kind, c.ref.Name, c.ref.UID)
		}
		return ""
	}
	rs := &appsv1.ReplicaSet{}
	if err := r.Reader.Get(ctx, client.ObjectKey{Namespace: k.namespace, Name: c.ref.Name}, rs); err != nil {
		return err.Error()
	}
	rsOwner := metav1.GetControllerOf(rs)
	if c.ref.Kind != "ReplicaSet" || rs.UID != c.ref.UID || rsOwner == nil || rsOwner.Kind != "Deployment" || rsOwner.UID != owner.GetUID() {
		return fmt.Sprintf("ReplicaSet %s (uid %s) the Pods name is not the Deployment's", c.ref.Name, c.ref.UID)
	}
	return ""
}

// restart sets the pod template's restartedAt annotation, as `kubectl
// rollout restart` does.
func (r *Reconciler) restart(ctx context.Context, k key) error {
	type meta struct {
		Annotations map[string]string `json:"annotations"`
	}
	type template struct {
		Metadata meta `json:"metadata"`
	}
	type spec struct {
		Template template `json:"template"`
	}
	patch, err := json.Marshal(struct {
		Spec spec `json:"spec"`
	}{spec{template{meta{map[string]string{"kubectl.kubernetes.io/restartedAt": time.Now().UTC().Format(time.RFC3339)}}}}})
	if err != nil {
		return err
	}
	return r.Client.Patch(ctx, object(k), client.RawPatch(types.MergePatchType, patch))
}

// rolledOut reports whether the workload's latest rollout is complete,
// as `kubectl rollout status` judges it; a workload that is gone counts
// as done.
func (r *Reconciler) rolledOut(ctx context.Context, k key) (bool, error) {
	obj := object(k)
	if err := r.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		return true, client.IgnoreNotFound(err)
	}
	switch o := obj.(type) {
	case *appsv1.Deployment:
		want := int32(1)
		if o.Spec.Replicas != nil {
			want = *o.Spec.Replicas
		}
		s := o.Status
		return o.Generation <= s.ObservedGeneration && s.UpdatedReplicas >= want && s.Replicas <= s.UpdatedReplicas && s.AvailableReplicas >= s.UpdatedReplicas, nil
	case *appsv1.StatefulSet:
		s := o.Status
		return o.Generation <= s.ObservedGeneration && s.UpdateRevision == s.CurrentRevision && s.ReadyReplicas >= s.Replicas, nil
	case *appsv1.DaemonSet:
		s := o.Status
		return o.Generation <= s.ObservedGeneration && s.UpdatedNumberScheduled >= s.DesiredNumberScheduled && s.NumberAvailable >= s.DesiredNumberScheduled, nil
	}
	return true, nil
}

// Metrics are the controller's Prometheus metrics.
type Metrics struct {
	pods     *prometheus.GaugeVec
	catalog  *prometheus.GaugeVec
	restarts *prometheus.CounterVec
	duration prometheus.Gauge
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		pods: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sidecar_injector_pods",
			Help: "Pods of the namespaces in scope by namespace, template and state (current, stale, missing, tampered, not-wanted; none with no template).",
		}, []string{"namespace", "template", "state"}),
		catalog: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sidecar_injector_controller_catalog_info",
			Help: "The catalog version the classification uses; always 1.",
		}, []string{"version"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_injector_controller_restarts_total",
			Help: "Workload rollouts started to repair their Pods, by result: success, failure, dry-run (logged, not started), or unproven (the Pods' controller reference does not lead to the workload by UID; not started).",
		}, []string{"result"}),
		duration: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sidecar_injector_controller_classification_seconds",
			Help: "How long the last classification of every Pod in scope took.",
		}),
	}
	for _, r := range []string{"success", "failure", "dry-run", "unproven"} {
		m.restarts.WithLabelValues(r)
	}
	reg.MustRegister(m.pods, m.catalog, m.restarts, m.duration)
	return m
}

// set replaces the gauges with one pass's counts, so Pods that went away
// leave no series behind.
func (m *Metrics) set(counts map[[3]string]float64, version string, took time.Duration) {
	m.pods.Reset()
	for k, n := range counts {
		m.pods.WithLabelValues(k[0], k[1], k[2]).Set(n)
	}
	m.catalog.Reset()
	m.catalog.WithLabelValues(version).Set(1)
	m.duration.Set(took.Seconds())
}
