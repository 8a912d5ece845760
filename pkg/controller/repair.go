package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

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
		if r.inPlace.once(k, "unproven", reason) {
			r.Log.Info("Not restarting: its ownership of the Pods is not proven", "namespace", k.namespace, "kind", k.owner.Kind, "name", k.owner.Name, "reason", reason)
			r.Metrics.restarts.WithLabelValues("unproven").Inc()
		}
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
