// Package controller keeps the fleet's conformance in view: it classifies
// every Pod of the namespaces in scope with package conformance, one Pod
// per event (tally.go, podcache.go), exports the counts as metrics,
// records an Event on each workload whose Pods turn missing, stale or
// tampered, and, when asked, repairs them: stale sidecars upgraded in
// place (inplace.go), or workloads rolled out one at a time so the
// webhook injects their new Pods (repair.go). It is the only part of the
// project that writes to the cluster.
package controller

import (
	"context"
	"maps"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/conformance"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
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
	// Keys verify the status entries the webhook signed. Without keys (a
	// cluster that injects with the compiled admission policies alone,
	// which cannot sign), unsigned entries are taken at their word and
	// signed ones read unverified.
	Keys *inject.Keys
	Log  logr.Logger
}

// PodStore is where the reconciler reads Pods: the informer's store of
// cachedPods, indexed by namespace (cache.NamespaceIndex).
type PodStore interface {
	GetByKey(key string) (item any, exists bool, err error)
	ByIndex(indexName, indexedValue string) ([]any, error)
	List() []any
}

// Reconciler keeps the fleet's tally up to date from single Pod and
// namespace events (Reconcile), reclassifies everything when the catalog
// changes or the audit interval has passed (Resync), and repairs in a
// pass of its own (RepairPass). The three share the tally and its memos,
// so each holds mu for its whole run: events, resyncs and repair passes
// take turns. NewReconciler builds the state; nothing is built lazily.
type Reconciler struct {
	// Client reads namespaces and workloads from the cache, and writes.
	Client client.Client
	// Reader reads, uncached, the ReplicaSets that prove a Deployment
	// owns a Pod, and the Pods being upgraded.
	Reader   client.Reader
	Pods     PodStore
	Recorder record.EventRecorder
	Metrics  *Metrics
	// RepairNow, when set, is called to ask for a repair pass.
	RepairNow func()
	Options

	mu         sync.Mutex
	cat        *catalog.Catalog
	gen        uint64 // of the catalog and namespace labels the memos hold
	namespaces map[string]map[string]string
	fleet      *tally
	last       map[key]conformance.State // owners reported, for one Event per change
	restarting map[key]bool              // rollouts started and not yet complete
	inPlace    *upgrades
}

// NewReconciler is a reconciler with an empty tally, under the catalog in
// force now.
func NewReconciler(c client.Client, reader client.Reader, pods PodStore, rec record.EventRecorder, m *Metrics, o Options) *Reconciler {
	return &Reconciler{
		Client: c, Reader: reader, Pods: pods, Recorder: rec, Metrics: m, Options: o,
		cat: o.Catalog(), namespaces: map[string]map[string]string{}, fleet: newTally(),
		last: map[key]conformance.State{}, restarting: map[key]bool{}, inPlace: newUpgrades(),
	}
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

var _ reconcile.Reconciler = &Reconciler{}

// Reconcile handles one event: a Pod ({namespace, name}) or a namespace
// ({name}).
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (ctrl.Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var err error
	if req.Namespace == "" {
		err = r.namespace(ctx, req.Name)
	} else {
		err = r.pod(ctx, req.Namespace, req.Name)
	}
	r.flush()
	return ctrl.Result{}, err
}

// Resync reclassifies every Pod under the catalog in force.
func (r *Reconciler) Resync(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.resync(ctx)
	r.flush()
	return err
}

// RepairPass starts and follows rollouts and upgrades, and says when to
// come back (0: when asked).
func (r *Reconciler) RepairPass(ctx context.Context) (time.Duration, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	res, err := r.repair(ctx)
	return res.RequeueAfter, err
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
	return p.shape.classify(p.Namespace, r.gen, func(pod *corev1.Pod, keys *inject.Keys) conformance.Result {
		return conformance.Classify(pod, labels, r.cat, keys)
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
	for held := range r.fleet.changedResources {
		r.Metrics.resources.DeletePartialMatch(prometheus.Labels{"namespace": held[0], "template": held[1]})
		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			for _, kind := range []string{"request", "limit"} {
				if v, ok := r.fleet.resources[[4]string{held[0], held[1], string(res), kind}]; ok {
					r.Metrics.resources.WithLabelValues(held[0], held[1], string(res), kind).Set(float64(v) / 1000)
				}
			}
		}
	}
	clear(r.fleet.changedResources)
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
