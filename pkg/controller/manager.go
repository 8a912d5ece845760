package controller

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
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
}

// NewManagerOptions returns the options with their defaults.
func NewManagerOptions() ManagerOptions {
	return ManagerOptions{
		Options:                 Options{MaxConcurrentRestarts: 1, AuditInterval: 10 * time.Minute, Log: logr.Discard()},
		MetricsAddr:             ":8080",
		HealthAddr:              ":8081",
		LeaderElection:          true,
		LeaderElectionNamespace: "sidecar-injector",
	}
}

// Validate says what is wrong with the options, in the controller
// command's flag names.
func (o ManagerOptions) Validate() error {
	if o.MaxConcurrentRestarts < 1 || o.AuditInterval <= 0 {
		return fmt.Errorf("--max-concurrent-restarts must be at least 1 and --audit-interval positive")
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
	mgr, err := newManager(o)
	if err != nil {
		return err
	}
	o.Catalog = store.Current
	r := &Reconciler{
		Client:   mgr.GetClient(),
		Reader:   mgr.GetAPIReader(),
		Recorder: mgr.GetEventRecorderFor("sidecar-injector"),
		Metrics:  NewMetrics(ctrlmetrics.Registry),
		Options:  o.Options,
	}
	// Every event maps to the one fleet request; a catalog reload too.
	reloaded := make(chan event.GenericEvent, 1)
	toFleet := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request { return []reconcile.Request{Request} })
	err = ctrl.NewControllerManagedBy(mgr).
		Named("conformance").
		Watches(&corev1.Pod{}, toFleet).
		Watches(&corev1.Namespace{}, toFleet).
		WatchesRawSource(source.Channel(reloaded, toFleet)).
		Complete(r)
	if err != nil {
		return err
	}
	if o.CatalogPath != "" {
		w := &catalog.Watcher{Path: o.CatalogPath, Store: store, Log: o.Log, OnReload: func(_ *catalog.Catalog, err error) {
			if err != nil {
				return
			}
			select {
			case reloaded <- event.GenericEvent{Object: &corev1.Namespace{}}:
			default: // a pass is queued already
			}
		}}
		if err := mgr.Add(runnable(w.Run)); err != nil {
			return err
		}
	}
	o.Log.Info("Controller starting", "repair", o.Repair, "dryRun", o.DryRun, "catalog", cat.Version)
	return mgr.Start(ctx)
}

// newManager is a manager with health checks whose Pod cache keeps only
// what the classification reads of each Pod.
func newManager(o ManagerOptions) (ctrl.Manager, error) {
	mgr, err := ctrl.NewManager(o.RestConfig, ctrl.Options{
		Metrics:                 metricsserver.Options{BindAddress: o.MetricsAddr},
		HealthProbeBindAddress:  o.HealthAddr,
		LeaderElection:          o.LeaderElection,
		LeaderElectionID:        "sidecar-injector-controller",
		LeaderElectionNamespace: o.LeaderElectionNamespace,
		Logger:                  o.Log,
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}: {Transform: func(obj any) (any, error) {
				if pod, ok := obj.(*corev1.Pod); ok {
					pod.ManagedFields = nil
					pod.Status = corev1.PodStatus{Phase: pod.Status.Phase}
				}
				return obj, nil
			}},
		}},
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

// runnable runs f under the manager, on every replica.
type runnable func(context.Context) error

func (f runnable) Start(ctx context.Context) error { return f(ctx) }

// NeedLeaderElection is false: every replica keeps its catalog current.
func (runnable) NeedLeaderElection() bool { return false }
