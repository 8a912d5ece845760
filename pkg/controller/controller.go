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
	"maps"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/conformance"
)

// RepairMode says how the controller repairs Pods that need it.
type RepairMode string

// The repair modes.
const (
	// RepairOff repairs nothing: metrics and Events only.
	RepairOff RepairMode = "off"
	// RepairRestart rolls out the workloads whose Pods need repair.
	RepairRestart RepairMode = "restart"
	// RepairInPlace upgrades stale Pods whose only difference from
	// today's rendering is sidecar images, in place; it says which
	// workloads need a restart instead, and restarts none.
	RepairInPlace RepairMode = "in-place"
	// RepairAuto upgrades in place where it can and rolls out elsewhere.
	RepairAuto RepairMode = "auto"
)

// RepairModes lists the modes.
var RepairModes = []RepairMode{RepairOff, RepairRestart, RepairInPlace, RepairAuto}

func (m RepairMode) inPlace() bool { return m == RepairInPlace || m == RepairAuto }
func (m RepairMode) restart() bool { return m == RepairRestart || m == RepairAuto }

// Options configure the reconciler; NewManagerOptions gives the
// defaults.
type Options struct {
	// Catalog returns the catalog in force.
	Catalog func() *catalog.Catalog
	// Repair is how Pods that need repair are repaired; RepairOff if
	// empty.
	Repair RepairMode
	// DryRun logs and counts the rollouts and upgrades Repair would
	// start, and starts none.
	DryRun bool
	// MaxConcurrentRestarts bounds the rollouts in progress at once; at
	// least 1.
	MaxConcurrentRestarts int
	// MaxUnavailable bounds, per workload, the Pods being upgraded in
	// place at once; at least 1.
	MaxUnavailable int
	// UpgradeTimeout is how long an upgraded container has to run and be
	// ready; past it the workload's upgrade stops.
	UpgradeTimeout time.Duration
	// UpgradeBarePods upgrades in place Pods that no Deployment,
	// StatefulSet or DaemonSet owns; off by default.
	UpgradeBarePods bool
	// AuditInterval is the full resync.
	AuditInterval time.Duration
	Log           logr.Logger
}

// PodStore is where the reconciler reads Pods: the informer's store of
// cachedPods, indexed by namespace (cache.NamespaceIndex).
type PodStore interface {
	GetByKey(key string) (item any, exists bool, err error)
	ByIndex(indexName, indexedValue string) ([]any, error)
	List() []any
}

// Reconciler keeps the fleet's tally up to date from single Pod and
// namespace events, reclassifies everything when the catalog changes or
// the audit interval has passed, and repairs in a pass of its own.
type Reconciler struct {
	// Client reads namespaces and workloads from the cache, and writes.
	Client client.Client
	// Reader reads, uncached, the ReplicaSets that prove a Deployment
	// owns a Pod, and the Pods being upgraded.
	Reader   client.Reader
	Pods     PodStore
	Recorder record.EventRecorder
	Metrics  *Metrics
	// RepairNow, when set, is called to queue RepairRequest.
	RepairNow func()
	Options

	cat        *catalog.Catalog
	gen        uint64 // of the catalog and namespace labels the memos hold
	namespaces map[string]map[string]string
	fleet      *tally
	last       map[key]conformance.State // owners reported, for one Event per change
	restarting map[key]bool              // rollouts started and not yet complete
	inPlace    *upgrades
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

// The requests that are not a Pod ({namespace, name}) or a namespace
// ({name}): names no object can have.
var (
	// ResyncRequest reclassifies every Pod: the catalog changed, or the
	// audit interval passed.
	ResyncRequest = reconcile.Request{NamespacedName: types.NamespacedName{Name: "/resync"}}
	// RepairRequest starts and follows rollouts and upgrades.
	RepairRequest = reconcile.Request{NamespacedName: types.NamespacedName{Name: "/repair"}}
)

var _ reconcile.Reconciler = &Reconciler{}

// Reconcile handles one request: a Pod, a namespace, a resync or a
// repair pass.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (ctrl.Result, error) {
	if r.fleet == nil {
		r.fleet, r.namespaces = newTally(), map[string]map[string]string{}
		r.last, r.restarting, r.inPlace = map[key]conformance.State{}, map[key]bool{}, newUpgrades()
		r.cat = r.Catalog()
	}
	var err error
	switch req {
	case ResyncRequest:
		err = r.resync(ctx)
		r.flush()
		return ctrl.Result{RequeueAfter: r.AuditInterval}, err
	case RepairRequest:
		return r.repair(ctx)
	}
	if req.Namespace == "" {
		err = r.namespace(ctx, req.Name)
	} else {
		err = r.pod(ctx, req.Namespace, req.Name)
	}
	r.flush()
	return ctrl.Result{}, err
}

// pod classifies one Pod, or forgets it.
func (r *Reconciler) pod(ctx context.Context, ns, name string) error {
	labels, inScope, err := r.labels(ctx, ns)
	if err != nil {
		return err
	}
	sk := podKey(ns, name)
	obj, exists, err := r.Pods.GetByKey(sk)
	if err != nil {
		return err
	}
	p, _ := obj.(*cachedPod)
	if !exists || p == nil || !p.running() || !inScope {
		r.fleet.remove(sk)
		return nil
	}
	r.fleet.put(sk, p, r.classify(p, labels))
	if r.inPlace.upgrading(p.UID) && r.RepairNow != nil {
		r.RepairNow() // its status moved: see whether the upgrade is done
	}
	return nil
}

// classify is the Pod's classification, its shape's if the shape has one
// for this generation.
func (r *Reconciler) classify(p *cachedPod, labels map[string]string) *conformance.Result {
	return p.shape.classify(p.Namespace, r.gen, func(pod *corev1.Pod) conformance.Result {
		return conformance.Classify(pod, labels, r.cat)
	})
}

// labels returns a namespace's labels as last seen, reading the
// namespace from the cache the first time, and whether its Pods are in
// scope.
func (r *Reconciler) labels(ctx context.Context, ns string) (map[string]string, bool, error) {
	labels, ok := r.namespaces[ns]
	if !ok {
		var n corev1.Namespace
		if err := r.Client.Get(ctx, client.ObjectKey{Name: ns}, &n); err != nil {
			return nil, false, client.IgnoreNotFound(err)
		}
		labels = n.Labels
		if labels == nil {
			labels = map[string]string{}
		}
		r.namespaces[ns] = labels
	}
	return labels, conformance.InScope(labels, r.cat), nil
}

// namespace notes a namespace's labels; when they changed, its Pods are
// classified again.
func (r *Reconciler) namespace(ctx context.Context, name string) error {
	var n corev1.Namespace
	err := r.Client.Get(ctx, client.ObjectKey{Name: name}, &n)
	if client.IgnoreNotFound(err) != nil {
		return err
	}
	labels := n.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	if old, seen := r.namespaces[name]; seen && maps.Equal(old, labels) && err == nil {
		return nil
	}
	if err != nil {
		delete(r.namespaces, name)
	} else {
		r.namespaces[name] = labels
	}
	r.gen++
	pods, err := r.Pods.ByIndex(cache.NamespaceIndex, name)
	if err != nil {
		return err
	}
	for _, obj := range pods {
		if p, ok := obj.(*cachedPod); ok {
			if err := r.pod(ctx, p.Namespace, p.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

// resync classifies every Pod again under the catalog in force, and
// forgets Pods the store no longer has. Shapes are classified in
// parallel; the tally is updated on this goroutine.
func (r *Reconciler) resync(ctx context.Context) error {
	start := time.Now()
	if cat := r.Catalog(); cat != r.cat {
		r.cat = cat
		r.inPlace.resume() // a new catalog is a new upgrade
	}
	r.gen++
	var list corev1.NamespaceList
	if err := r.Client.List(ctx, &list); err != nil {
		return err
	}
	clear(r.namespaces)
	for _, n := range list.Items {
		labels := n.Labels
		if labels == nil {
			labels = map[string]string{}
		}
		r.namespaces[n.Name] = labels
	}
	var pods []*cachedPod
	for _, obj := range r.Pods.List() {
		if p, ok := obj.(*cachedPod); ok {
			pods = append(pods, p)
		}
	}
	results := make([]*conformance.Result, len(pods))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < len(pods); i = int(next.Add(1)) - 1 {
				if labels := r.namespaces[pods[i].Namespace]; pods[i].running() && conformance.InScope(labels, r.cat) {
					results[i] = r.classify(pods[i], labels)
				}
			}
		})
	}
	wg.Wait()
	seen, shapes := make(map[string]bool, len(pods)), map[*shape]bool{}
	for i, p := range pods {
		sk := podKey(p.Namespace, p.Name)
		seen[sk], shapes[p.shape] = true, true
		if results[i] == nil {
			r.fleet.remove(sk)
		} else {
			r.fleet.put(sk, p, results[i])
		}
	}
	for sk := range r.fleet.pods {
		if !seen[sk] {
			r.fleet.remove(sk)
		}
	}
	r.Metrics.resynced(r.cat.Version, time.Since(start), len(pods), len(shapes))
	return nil
}

// flush sets the gauges that changed, records the Events of the owners
// that changed, and queues a repair pass when one needs it.
func (r *Reconciler) flush() {
	for series := range r.fleet.changedSeries {
		if n, ok := r.fleet.counts[series]; ok {
			r.Metrics.pods.WithLabelValues(series[:]...).Set(float64(n))
		} else {
			r.Metrics.pods.DeleteLabelValues(series[:]...)
		}
	}
	clear(r.fleet.changedSeries)
	repair := false
	for k := range r.fleet.changedOwners {
		state, ok := r.fleet.worst(k)
		r.report(k, state, ok)
		repair = repair || state.NeedsRepair()
	}
	clear(r.fleet.changedOwners)
	if repair && r.Repair != "" && r.Repair != RepairOff && r.RepairNow != nil {
		r.RepairNow()
	}
}

// report records an Event on an owner whose worst state turned to one
// that needs repair, once per change.
func (r *Reconciler) report(k key, state conformance.State, exists bool) {
	if !exists || !state.NeedsRepair() {
		delete(r.last, k)
		return
	}
	if r.last[k] == state {
		return
	}
	r.last[k] = state
	r.Recorder.Eventf(eventRef(k), corev1.EventTypeWarning, "Sidecars"+titled(state),
		"Pods of %s %s are %s: they do not carry what the catalog renders for them today; `sidecar-injector audit -n %s` says why", k.owner.Kind, k.owner.Name, state, k.namespace)
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

// repair follows the upgrades and rollouts in progress, then repairs
// the owners whose Pods need it, in namespace/name order: in place where
// the mode and the Pods allow (upgradeInPlace), else by a rollout of a
// Deployment, StatefulSet or DaemonSet, at most MaxConcurrentRestarts at
// a time, never one already mid-rollout. It comes back every 2 s while
// anything is in progress.
func (r *Reconciler) repair(ctx context.Context) (ctrl.Result, error) {
	if r.Repair.inPlace() {
		r.followUpgrades(ctx)
		r.inPlace.waiting = false
	}
	for k := range r.restarting {
		done, err := r.rolledOut(ctx, k)
		if err != nil {
			return ctrl.Result{}, err
		}
		if done {
			delete(r.restarting, k)
		}
	}
	for _, k := range r.fleet.needRepair() {
		if r.restarting[k] {
			continue
		}
		if r.Repair.inPlace() {
			reason := r.upgradeInPlace(ctx, k)
			if reason == "" {
				continue
			}
			if !r.Repair.restart() || !k.owner.Restartable() || r.inPlace.busy(k) {
				r.needsRestart(k, reason)
				continue
			}
		}
		if r.Repair.restart() && k.owner.Restartable() && len(r.restarting) < r.MaxConcurrentRestarts {
			if err := r.restartOwner(ctx, k); err != nil {
				return ctrl.Result{}, err
			}
		}
	}
	switch {
	case len(r.restarting) > 0 || r.inPlace.inFlight() > 0 || r.inPlace.waiting:
		return ctrl.Result{RequeueAfter: 2 * time.Second}, nil // watch them through, or wait for a Pod to turn ready
	case len(r.fleet.needRepair()) > 0:
		// Owners that waited (a Pod not ready, a rollout someone else
		// started): a Pod's readiness is no event here.
		return ctrl.Result{RequeueAfter: 30 * time.Second}, nil
	}
	return ctrl.Result{}, nil
}

// restartOwner rolls the owner out once its ownership of the Pods is
// proven and its last rollout is complete.
func (r *Reconciler) restartOwner(ctx context.Context, k key) error {
	if done, err := r.rolledOut(ctx, k); err != nil || !done {
		return err // mid-rollout already
	}
	if reason := r.unproven(ctx, k, r.fleet.claim(k)); reason != "" {
		r.Log.Info("Not restarting: its ownership of the Pods is not proven", "namespace", k.namespace, "kind", k.owner.Kind, "name", k.owner.Name, "reason", reason)
		r.Metrics.restarts.WithLabelValues("unproven").Inc()
		return nil
	}
	if r.DryRun {
		r.Log.Info("Would restart", "namespace", k.namespace, "kind", k.owner.Kind, "name", k.owner.Name)
		r.Metrics.restarts.WithLabelValues("dry-run").Inc()
		return nil
	}
	if err := r.restart(ctx, k); err != nil {
		r.Metrics.restarts.WithLabelValues("failure").Inc()
		r.Log.Error(err, "Restart failed", "namespace", k.namespace, "kind", k.owner.Kind, "name", k.owner.Name)
		return nil
	}
	r.Metrics.restarts.WithLabelValues("success").Inc()
	r.Log.Info("Restarted", "namespace", k.namespace, "kind", k.owner.Kind, "name", k.owner.Name)
	r.restarting[k] = true
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
	upgrades *prometheus.CounterVec
	halted   prometheus.Gauge
	duration prometheus.Gauge
	cached   *prometheus.GaugeVec
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
		upgrades: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_injector_controller_upgrades_total",
			Help: "Pods upgraded in place, by result: started (images patched), success (the new containers run and are ready), halted (not ready in time: the workload's upgrade stopped), failure (the patch failed), dry-run (logged, not patched), unproven (the Pods' controller reference does not lead to the workload by UID).",
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
	reg.MustRegister(m.pods, m.catalog, m.restarts, m.upgrades, m.halted, m.duration, m.cached)
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
