package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crcontroller "sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/policysync"
	"github.com/podpatterns/sidecar-injector/pkg/statuskey"
)

// ManagerOptions configure Run. NewManagerOptions gives the defaults; the
// controller command binds its flags to these fields.
type ManagerOptions struct {
	Options
	// RestConfig reaches the cluster.
	RestConfig *rest.Config
	// CatalogPath is a catalog file or directory, watched for changes;
	// the embedded default catalog if empty.
	CatalogPath string
	// MetricsAddr and HealthAddr serve /metrics and /healthz, /readyz;
	// ":8080" and ":8081" by default, "0" disables either.
	MetricsAddr, HealthAddr string
	// LeaderElection makes replicas take turns through a Lease in
	// LeaderElectionNamespace ("sidecar-injector" by default), so two
	// never both repair. On by default.
	LeaderElection          bool
	LeaderElectionNamespace string
	// StatusKeyDir holds the keys that verify the webhook's status
	// entries (see package statuskey); see Options.Keys without them.
	StatusKeyDir string
	// AdmissionPolicies keeps the catalog compiled to admission policies
	// and applied (see policysync.Syncer), for clusters that inject without
	// the webhook.
	AdmissionPolicies bool
}

// NewManagerOptions returns the options with their defaults.
func NewManagerOptions() ManagerOptions {
	return ManagerOptions{
		Options: Options{Repair: RepairOff, MaxConcurrentRestarts: 1, MaxUnavailable: 1, UpgradeTimeout: 5 * time.Minute,
			AuditInterval: 10 * time.Minute, Log: logr.Discard()},
		MetricsAddr:             ":8080",
		HealthAddr:              ":8081",
		LeaderElection:          true,
		LeaderElectionNamespace: "sidecar-injector",
	}
}

// Validate says what is wrong with the options, in the controller
// command's flag names.
func (o ManagerOptions) Validate() error {
	if !slices.Contains(RepairModes, o.Repair) {
		return fmt.Errorf("--repair %q not supported; use off, restart, in-place or auto", o.Repair)
	}
	if o.MaxConcurrentRestarts < 1 || o.MaxUnavailable < 1 || o.AuditInterval <= 0 || o.UpgradeTimeout <= 0 {
		return fmt.Errorf("--max-concurrent-restarts and --max-unavailable must be at least 1, --audit-interval and --upgrade-timeout positive")
	}
	return nil
}

// Run runs the controller until ctx is done.
func Run(ctx context.Context, o ManagerOptions) error {
	if err := o.Validate(); err != nil {
		return err
	}
	cat, err := catalog.LoadOrDefault(o.CatalogPath)
	if err != nil {
		return err
	}
	store := catalog.NewStore(cat)
	if err := o.ready(ctx); err != nil {
		return err
	}
	mgr, err := newManager(o)
	if err != nil {
		return err
	}
	pods, err := newPodInformer(o.RestConfig, newShapes(o.Keys))
	if err != nil {
		return err
	}
	if err := mgr.Add(leaderRunnable(func(ctx context.Context) error { pods.Run(ctx.Done()); return nil })); err != nil {
		return err
	}
	o.Catalog = store.Current
	r := NewReconciler(mgr.GetClient(), mgr.GetAPIReader(), pods.GetIndexer(), mgr.GetEventRecorderFor("sidecar-injector"), NewMetrics(ctrlmetrics.Registry), o.Options)
	p := &passes{r: r, synced: []toolscache.InformerSynced{pods.HasSynced}, cache: mgr.GetCache(), resync: make(chan struct{}, 1), repair: make(chan struct{}, 1), log: o.Log}
	r.RepairNow = func() { signal(p.repair) }
	if err := mgr.Add(leaderRunnable(p.Start)); err != nil {
		return err
	}
	if err := watch(mgr, r, pods); err != nil {
		return err
	}
	syncer, err := policySyncer(mgr, o, store)
	if err != nil {
		return err
	}
	if o.CatalogPath != "" {
		w := &catalog.Watcher{Path: o.CatalogPath, Store: store, Log: o.Log, OnReload: func(_ *catalog.Catalog, err error) {
			switch {
			case err == nil:
				signal(p.resync)
				syncer.Signal()
			case syncer != nil:
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				syncer.CatalogRefused(ctx, err)
			}
		}}
		if err := mgr.Add(runnable(w.Run)); err != nil {
			return err
		}
	}
	o.Log.Info("Controller starting", "repair", o.Repair, "dryRun", o.DryRun, "catalog", cat.Version)
	return mgr.Start(ctx)
}

// policySyncer is the syncer of the compiled admission policies, run by
// the leader, or nil when they are not asked for.
func policySyncer(mgr ctrl.Manager, o ManagerOptions, store *catalog.Store) (*policysync.Syncer, error) {
	metrics := policysync.NewMetrics(ctrlmetrics.Registry) // exported in either mode, so one alert serves both
	if !o.AdmissionPolicies {
		return nil, nil
	}
	c, err := client.New(o.RestConfig, client.Options{Scheme: mgr.GetScheme()}) // no cache: four objects, read at a catalog change
	if err != nil {
		return nil, err
	}
	s := &policysync.Syncer{Client: c, Catalog: store.Current, Recorder: mgr.GetEventRecorderFor("sidecar-injector"), Log: o.Log.WithName("policies"),
		Metrics: metrics, Sync: make(chan struct{}, 1), Interval: o.AuditInterval, Owner: o.LeaderElectionNamespace}
	return s, mgr.Add(leaderRunnable(s.Start))
}

// watch makes the controller: every Pod and namespace event is a request
// of its own. One worker: the reconciler's state takes one writer at a
// time (see Reconciler), so more workers would only queue on its lock.
func watch(mgr ctrl.Manager, r *Reconciler, pods toolscache.SharedIndexInformer) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("conformance").
		// Listing 150,000 Pods took 30 s on 2 cores (test/fleetload).
		WithOptions(crcontroller.Options{CacheSyncTimeout: 10 * time.Minute, MaxConcurrentReconciles: 1}).
		WatchesRawSource(syncedInformer{&source.Informer{Informer: pods, Handler: &handler.EnqueueRequestForObject{}}, pods}).
		Watches(&corev1.Namespace{}, &handler.EnqueueRequestForObject{}).
		Complete(r)
}

// passes runs the work that is not one object's event, on the leader:
// a resync once the caches have synced, at each signal on resync (a
// catalog reload) and AuditInterval after the last; a repair pass at each
// signal on repair and when the last one said to come back. A pass that
// fails is tried again after retryAfter.
type passes struct {
	r              *Reconciler
	synced         []toolscache.InformerSynced
	cache          interface{ WaitForCacheSync(context.Context) bool }
	resync, repair chan struct{}
	log            logr.Logger
}

const retryAfter = 5 * time.Second

func (p *passes) Start(ctx context.Context) error {
	if !p.cache.WaitForCacheSync(ctx) || !toolscache.WaitForCacheSync(ctx.Done(), p.synced...) {
		return ctx.Err()
	}
	resync := time.NewTimer(0)
	repair := time.NewTimer(0)
	repair.Stop()
	defer resync.Stop()
	defer repair.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-p.resync:
		case <-resync.C:
		case <-p.repair:
			p.repairPass(ctx, repair)
			continue
		case <-repair.C:
			p.repairPass(ctx, repair)
			continue
		}
		next := p.r.AuditInterval
		if err := p.r.Resync(ctx); err != nil {
			p.log.Error(err, "Resync failed; retrying", "after", retryAfter)
			next = retryAfter
		}
		resync.Reset(next)
	}
}

func (p *passes) repairPass(ctx context.Context, timer *time.Timer) {
	next, err := p.r.RepairPass(ctx)
	if err != nil {
		p.log.Error(err, "Repair pass failed; retrying", "after", retryAfter)
		next = retryAfter
	}
	timer.Stop()
	if next > 0 {
		timer.Reset(next)
	}
}

// signal asks for a pass, unless one is asked for already.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// newPodInformer watches every Pod, in protobuf, and keeps a cachedPod
// of each (see cachedPod and shape for what and why), indexed by
// namespace.
func newPodInformer(cfg *rest.Config, s *shapes) (toolscache.SharedIndexInformer, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	lw := toolscache.NewListWatchFromClient(cs.CoreV1().RESTClient(), "pods", metav1.NamespaceAll, fields.Everything())
	inf := toolscache.NewSharedIndexInformer(lw, &corev1.Pod{}, 0, toolscache.Indexers{toolscache.NamespaceIndex: toolscache.MetaNamespaceIndexFunc})
	if err := inf.SetTransform(s.transform); err != nil {
		return nil, err
	}
	return inf, nil
}

// ready reads the status keys, and checks the namespace of the Lease.
func (o *ManagerOptions) ready(ctx context.Context) error {
	if o.StatusKeyDir != "" {
		var err error
		if o.Keys, err = statuskey.Read(o.StatusKeyDir); err != nil {
			return err
		}
	}
	return leaseNamespaceExists(ctx, *o)
}

// leaseNamespaceExists fails, saying what to do, when leader election's
// namespace does not exist: the manager would otherwise retry creating
// its Lease every few seconds with a stack trace each time.
func leaseNamespaceExists(ctx context.Context, o ManagerOptions) error {
	if !o.LeaderElection {
		return nil
	}
	cs, err := kubernetes.NewForConfig(o.RestConfig)
	if err != nil {
		return err
	}
	_, err = cs.CoreV1().Namespaces().Get(ctx, o.LeaderElectionNamespace, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("namespace %q, where replicas take turns through a Lease, does not exist: create it, set --leader-election-namespace to the namespace the controller runs in, or run one replica with --leader-elect=false", o.LeaderElectionNamespace)
	}
	return nil // anything else (no right to read namespaces, a moment offline) is the manager's to retry
}

// newManager is a manager with health checks; its cache holds
// namespaces and workloads, never Pods.
func newManager(o ManagerOptions) (ctrl.Manager, error) {
	mgr, err := ctrl.NewManager(o.RestConfig, ctrl.Options{
		Metrics:                 metricsserver.Options{BindAddress: o.MetricsAddr},
		HealthProbeBindAddress:  o.HealthAddr,
		LeaderElection:          o.LeaderElection,
		LeaderElectionID:        "sidecar-injector-controller",
		LeaderElectionNamespace: o.LeaderElectionNamespace,
		// The process ends when the manager stops: giving the lease back
		// lets the next leader start at once, not after it expires.
		LeaderElectionReleaseOnCancel: true,
		Logger:                        o.Log,
	})
	if err != nil {
		return nil, fmt.Errorf("controller manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	return mgr, nil
}

// syncedInformer is the Pod informer as a source the controller waits
// for before its workers start, so the first resync sees every Pod.
type syncedInformer struct {
	*source.Informer
	inf toolscache.SharedIndexInformer
}

func (s syncedInformer) WaitForSync(ctx context.Context) error {
	if !toolscache.WaitForCacheSync(ctx.Done(), s.inf.HasSynced) {
		return errors.New("the Pod cache did not sync")
	}
	return nil
}

// leaderRunnable runs f under the manager, on the leader only.
type leaderRunnable func(context.Context) error

func (f leaderRunnable) Start(ctx context.Context) error { return f(ctx) }

// runnable runs f under the manager, on every replica.
type runnable func(context.Context) error

func (f runnable) Start(ctx context.Context) error { return f(ctx) }

// NeedLeaderElection is false: every replica keeps its catalog current.
func (runnable) NeedLeaderElection() bool { return false }
