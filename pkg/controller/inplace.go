package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podpatterns/sidecar-injector/pkg/conformance"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
)

// upgrades are the in-place upgrades in flight, the workloads whose
// upgrade stopped, and what was said once.
type upgrades struct {
	flying map[key][]upgrading
	halted map[key]string
	// said is what was said of an owner (that it needs a restart, that
	// its ownership is unproven), with why: each said once per reason.
	said    map[said]string
	dryRuns map[types.UID]bool
	// waiting: a Pod's upgrade waits for it to turn ready, which is no
	// event here.
	waiting bool
}

// said names what was said of an owner.
type said struct {
	owner key
	what  string
}

// once reports whether this is the first time what is said of the
// owner for this reason.
func (u *upgrades) once(k key, what, reason string) bool {
	if u.said[said{k, what}] == reason {
		return false
	}
	u.said[said{k, what}] = reason
	return true
}

// upgrading is a Pod whose sidecar images were patched: it is done when
// each of those containers runs again, with a new container ID, and is
// ready.
type upgrading struct {
	pod     types.NamespacedName
	uid     types.UID
	images  []conformance.Image
	resizes []conformance.Resize
	before  map[string]string // container name -> container ID before the patch
	since   time.Time
}

func newUpgrades() *upgrades {
	return &upgrades{flying: map[key][]upgrading{}, halted: map[key]string{}, said: map[said]string{}, dryRuns: map[types.UID]bool{}}
}

// busy reports whether the owner has upgrades in flight.
func (u *upgrades) busy(k key) bool { return len(u.flying[k]) > 0 }

func (u *upgrades) inFlight() int {
	n := 0
	for _, list := range u.flying {
		n += len(list)
	}
	return n
}

// upgrading reports whether the Pod is being upgraded.
func (u *upgrades) upgrading(uid types.UID) bool {
	for _, list := range u.flying {
		if slices.ContainsFunc(list, func(f upgrading) bool { return f.uid == uid }) {
			return true
		}
	}
	return false
}

// resume forgets the stopped upgrades: a new catalog tries again.
func (u *upgrades) resume() {
	clear(u.halted)
	clear(u.said)
	clear(u.dryRuns)
}

// upgradeInPlace upgrades the next Pods of the owner that need it, up to
// MaxUnavailable in flight, each once it is ready. It returns why the
// owner needs a rollout instead, or "" when its Pods are being upgraded,
// wait their turn, or its upgrade stopped.
func (r *Reconciler) upgradeInPlace(ctx context.Context, k key) string {
	if _, stopped := r.inPlace.halted[k]; stopped {
		return ""
	}
	if worst, _ := r.fleet.worst(k); worst != conformance.Stale {
		return fmt.Sprintf("some of its Pods are %s; only stale Pods are upgraded in place", worst)
	}
	if !k.owner.Restartable() && !r.UpgradeBarePods {
		return fmt.Sprintf("%s %s is not a Deployment, StatefulSet or DaemonSet: its Pods are upgraded in place only with --upgrade-bare-pods", k.owner.Kind, k.owner.Name)
	}
	if k.owner.Restartable() {
		if reason := r.unproven(ctx, k, r.fleet.claim(k)); reason != "" {
			if r.inPlace.once(k, "unproven", reason) {
				r.Log.Info("Not upgrading: its ownership of the Pods is not proven", "namespace", k.namespace, "kind", k.owner.Kind, "name", k.owner.Name, "reason", reason)
				r.Metrics.upgrades.WithLabelValues("unproven").Inc()
			}
			return ""
		}
	}
	for _, p := range r.stalePods(k) {
		if len(r.inPlace.flying[k]) >= r.MaxUnavailable {
			return ""
		}
		if slices.ContainsFunc(r.inPlace.flying[k], func(u upgrading) bool { return u.uid == p.UID }) {
			continue
		}
		var pod corev1.Pod
		if err := r.Reader.Get(ctx, client.ObjectKey{Namespace: p.Namespace, Name: p.Name}, &pod); err != nil || pod.UID != p.UID {
			continue // gone, or another Pod by now
		}
		up, err := conformance.InPlace(&pod, r.namespaces[k.namespace], r.cat, r.Keys)
		if err != nil {
			return fmt.Sprintf("Pod %s: %v", pod.Name, err)
		}
		if !podReady(&pod) {
			r.inPlace.waiting = true // unavailable already: not this one now
			continue
		}
		r.startUpgrade(ctx, k, &pod, up)
	}
	return ""
}

// stalePods are the owner's running Pods whose tally says stale, by name.
func (r *Reconciler) stalePods(k key) []*cachedPod {
	objs, _ := r.Pods.ByIndex(cache.NamespaceIndex, k.namespace)
	var out []*cachedPod
	for _, obj := range objs {
		p, ok := obj.(*cachedPod)
		if !ok || p.Owner != k.owner || !p.running() {
			continue
		}
		if c, ok := r.fleet.pods[podKey(p.Namespace, p.Name)]; ok && c.res.State == conformance.Stale {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b *cachedPod) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// startUpgrade patches the Pod's images and status annotation, each
// checked against what was read, so a Pod that changed meanwhile is left
// alone.
func (r *Reconciler) startUpgrade(ctx context.Context, k key, pod *corev1.Pod, up *conformance.Upgrade) {
	log := r.Log.WithValues("namespace", pod.Namespace, "pod", pod.Name, "kind", k.owner.Kind, "owner", k.owner.Name)
	if r.DryRun {
		if !r.inPlace.dryRuns[pod.UID] {
			r.inPlace.dryRuns[pod.UID] = true
			log.Info("Would upgrade in place", "images", describe(up.Images), "resources", describeResizes(up.Resizes))
			r.Metrics.upgrades.WithLabelValues("dry-run").Inc()
		}
		return
	}
	// The resize first: pods/resize writes the containers' resources and
	// nothing else, then the images and the status annotation follow.
	if len(up.Resizes) > 0 {
		if err := r.resize(ctx, pod, up.Resizes); err != nil {
			r.Metrics.upgrades.WithLabelValues("failure").Inc()
			log.Error(err, "In-place resize failed")
			if apierrors.IsForbidden(err) || apierrors.IsInvalid(err) {
				// The admission chain refuses it (a LimitRange's maximum,
				// a quota): asking again each pass would not change that.
				r.halt(k, fmt.Sprintf("Pod %s: the API server refuses the resize (%s): %v", pod.Name, describeResizes(up.Resizes), err))
			}
			return
		}
	}
	status := "/metadata/annotations/" + strings.ReplaceAll(inject.StatusAnnotation, "/", "~1")
	ops := []map[string]any{
		{"op": "test", "path": "/metadata/uid", "value": pod.UID},
		{"op": "test", "path": status, "value": pod.Annotations[inject.StatusAnnotation]},
	}
	before := map[string]string{}
	for _, im := range up.Images {
		ops = append(ops,
			map[string]any{"op": "test", "path": im.Path() + "/name", "value": im.Name},
			map[string]any{"op": "test", "path": im.Path() + "/image", "value": im.From},
			map[string]any{"op": "replace", "path": im.Path() + "/image", "value": im.To})
		before[im.Name] = containerStatus(pod, im.Name).ContainerID
	}
	ops = append(ops, map[string]any{"op": "replace", "path": status, "value": up.Status})
	patch, _ := json.Marshal(ops) // strings only
	if err := r.Client.Patch(ctx, pod, client.RawPatch(types.JSONPatchType, patch)); err != nil {
		r.Metrics.upgrades.WithLabelValues("failure").Inc()
		log.Error(err, "In-place upgrade failed")
		return
	}
	r.Metrics.upgrades.WithLabelValues("started").Inc()
	log.Info("Upgrading in place", "images", describe(up.Images), "resources", describeResizes(up.Resizes))
	r.inPlace.flying[k] = append(r.inPlace.flying[k], upgrading{
		pod: types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name}, uid: pod.UID, images: up.Images, resizes: up.Resizes, before: before, since: time.Now(),
	})
}

// resize patches the containers' resources through pods/resize, each
// checked against what was read.
func (r *Reconciler) resize(ctx context.Context, pod *corev1.Pod, resizes []conformance.Resize) error {
	ops := []map[string]any{{"op": "test", "path": "/metadata/uid", "value": pod.UID}}
	for _, rs := range resizes {
		ops = append(ops,
			map[string]any{"op": "test", "path": rs.Path() + "/name", "value": rs.Name},
			map[string]any{"op": "replace", "path": rs.Path() + "/resources", "value": rs.To})
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return err
	}
	return r.Client.SubResource("resize").Patch(ctx, pod, client.RawPatch(types.JSONPatchType, patch))
}

// followUpgrades finishes the upgrades whose containers run again and
// are ready, and stops a workload's upgrade when one is not ready within
// UpgradeTimeout: an Event on the workload says why, and its other Pods
// are left as they are.
func (r *Reconciler) followUpgrades(ctx context.Context) {
	for k, list := range r.inPlace.flying {
		var still []upgrading
		for _, u := range list {
			var pod corev1.Pod
			if err := r.Reader.Get(ctx, u.pod, &pod); err != nil || pod.UID != u.uid {
				continue // gone: nothing to wait for
			}
			waiting := u.waitingFor(&pod)
			if waiting == "" {
				r.Metrics.upgrades.WithLabelValues("success").Inc()
				r.Log.Info("Upgraded in place", "namespace", pod.Namespace, "pod", pod.Name, "images", describe(u.images), "resources", describeResizes(u.resizes))
				continue
			}
			if time.Since(u.since) > r.UpgradeTimeout || infeasible(&pod) {
				r.halt(k, fmt.Sprintf("Pod %s: %s, %s after its sidecars moved (%s)", pod.Name, waiting, time.Since(u.since).Round(time.Second), strings.Join(slices.DeleteFunc([]string{describe(u.images), describeResizes(u.resizes)}, func(s string) bool { return s == "" }), "; ")))
				still = nil
				break
			}
			still = append(still, u)
		}
		if len(still) == 0 {
			delete(r.inPlace.flying, k)
		} else {
			r.inPlace.flying[k] = still
		}
	}
	r.Metrics.halted.Set(float64(len(r.inPlace.halted)))
}

// halt stops the owner's upgrade.
func (r *Reconciler) halt(k key, reason string) {
	r.inPlace.halted[k] = reason
	r.Metrics.upgrades.WithLabelValues("halted").Inc()
	r.Log.Info("In-place upgrade stopped", "namespace", k.namespace, "kind", k.owner.Kind, "name", k.owner.Name, "reason", reason)
	r.Recorder.Eventf(eventRef(k), corev1.EventTypeWarning, "SidecarUpgradeHalted",
		"In-place upgrade of %s %s stopped: %s; its other Pods are left as they are until the catalog changes", k.owner.Kind, k.owner.Name, reason)
}

// needsRestart says, once per reason, that the owner's Pods need a
// rollout.
func (r *Reconciler) needsRestart(k key, reason string) {
	if !r.inPlace.once(k, "needs-restart", reason) {
		return
	}
	r.Recorder.Eventf(eventRef(k), corev1.EventTypeWarning, "SidecarsNeedRestart",
		"Pods of %s %s cannot be upgraded in place: %s; %s repairs them", k.owner.Kind, k.owner.Name, reason, k.owner.Repair(k.namespace))
}

// waitingFor says what the upgrade still waits for, or "": the
// upgraded containers running again and ready, the resized ones running
// with the new cpu and memory (the kubelet reports them in the
// container's status) and no resize pending.
func (u upgrading) waitingFor(pod *corev1.Pod) string {
	for _, c := range pod.Status.Conditions {
		switch {
		case len(u.resizes) == 0 || c.Status != corev1.ConditionTrue:
		case c.Type == corev1.PodResizePending:
			return fmt.Sprintf("the resize is pending: %s %s", c.Reason, c.Message)
		case c.Type == corev1.PodResizeInProgress && c.Reason == corev1.PodReasonError:
			return fmt.Sprintf("the kubelet fails to resize it: %s", c.Message)
		}
	}
	for _, rs := range u.resizes {
		cs := containerStatus(pod, rs.Name)
		if cs.Resources == nil || !conformance.SameCPUMemory(*cs.Resources, rs.To) {
			return fmt.Sprintf("container %s does not run with its new cpu and memory yet", rs.Name)
		}
	}
	for _, im := range u.images {
		cs := containerStatus(pod, im.Name)
		switch {
		case cs.ContainerID == u.before[im.Name] || cs.State.Running == nil:
			state := "not running"
			if w := cs.State.Waiting; w != nil {
				state = strings.TrimSpace(w.Reason + " " + w.Message)
			}
			return fmt.Sprintf("container %s has not run on %s (%s)", im.Name, im.To, state)
		case !cs.Ready:
			return fmt.Sprintf("container %s runs %s but is not ready", im.Name, im.To)
		}
	}
	return ""
}

// containerStatus is the status of the Pod's container or native
// sidecar of that name; empty if it has none yet.
func containerStatus(pod *corev1.Pod, name string) corev1.ContainerStatus {
	for _, cs := range slices.Concat(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses) {
		if cs.Name == name {
			return cs
		}
	}
	return corev1.ContainerStatus{}
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func describe(images []conformance.Image) string {
	var parts []string
	for _, im := range images {
		parts = append(parts, im.Name+" "+im.From+" -> "+im.To)
	}
	return strings.Join(parts, ", ")
}

// infeasible reports whether the kubelet will not carry out the Pod's
// resize: waiting on does not help.
func infeasible(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodResizePending && c.Status == corev1.ConditionTrue && c.Reason == corev1.PodReasonInfeasible {
			return true
		}
	}
	return false
}

func describeResizes(resizes []conformance.Resize) string {
	var parts []string
	for _, rs := range resizes {
		parts = append(parts, fmt.Sprintf("%s %s -> %s", rs.Name, quantities(rs.From), quantities(rs.To)))
	}
	return strings.Join(parts, ", ")
}

// quantities reads "cpu 5m/50m memory 8Mi/32Mi": request/limit.
func quantities(r corev1.ResourceRequirements) string {
	var parts []string
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, lim := r.Requests[name], r.Limits[name]
		parts = append(parts, fmt.Sprintf("%s %s/%s", name, req.String(), lim.String()))
	}
	return strings.Join(parts, " ")
}
