package controller

import (
	"context"
	"fmt"

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

// ManagerOptions configure Run.
type ManagerOptions struct {
	Options
	// CatalogPath is a catalog file or directory, watched for changes;
	// the embedded default catalog if empty.
	CatalogPath string
	// MetricsAddr and HealthAddr serve /metrics and /healthz, /readyz;
	// "0" disables either.
	MetricsAddr, HealthAddr string
	// LeaderElection makes replicas take turns through a Lease in
	// LeaderElectionNamespace, so two never both repair.
	LeaderElection          bool
	LeaderElectionNamespace string
}

// Run runs the controller until ctx is done.
func Run(ctx context.Context, cfg *rest.Config, o ManagerOptions) error {
	store, err := loadStore(o.CatalogPath)
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Metrics:                 metricsserver.Options{BindAddress: o.MetricsAddr},
		HealthProbeBindAddress:  o.HealthAddr,
		LeaderElection:          o.LeaderElection,
		LeaderElectionID:        "sidecar-injector-controller",
		LeaderElectionNamespace: o.LeaderElectionNamespace,
		Logger:                  o.Log,
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			// Only what the classification reads is kept of each Pod.
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
		return fmt.Errorf("controller manager: %w", err)
	}
	o.Catalog = store.Current
	r := &Reconciler{
		Client:   mgr.GetClient(),
		Recorder: mgr.GetEventRecorderFor("sidecar-injector"),
		Metrics:  NewMetrics(ctrlmetrics.Registry),
		Options:  o.Options,
	}
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
		w := &catalog.Watcher{Path: o.CatalogPath, Store: store, OnReload: func(c *catalog.Catalog, err error) {
			if err != nil {
				o.Log.Error(err, "Catalog change refused; the last good catalog stays in force")
				return
			}
			o.Log.Info("Catalog reloaded", "version", c.Version)
			select {
			case reloaded <- event.GenericEvent{Object: &corev1.Namespace{}}:
			default: // a pass is queued already
			}
		}}
		if err := mgr.Add(runnable(w.Run)); err != nil {
			return err
		}
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	o.Log.Info("Controller starting", "repair", o.Repair, "dryRun", o.DryRun, "catalog", store.Current().Version)
	return mgr.Start(ctx)
}

// runnable runs f under the manager, on every replica.
type runnable func(context.Context) error

func (f runnable) Start(ctx context.Context) error { return f(ctx) }

// NeedLeaderElection is false: every replica keeps its catalog current.
func (runnable) NeedLeaderElection() bool { return false }

func loadStore(path string) (*catalog.Store, error) {
	if path == "" {
		c, err := catalog.Default()
		return catalog.NewStore(c), err
	}
	c, err := catalog.Load(path)
	if err != nil {
		return nil, fmt.Errorf("catalog %s: %w", path, err)
	}
	return catalog.NewStore(c), nil
}
