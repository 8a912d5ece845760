package controller

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/conformance"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/pkg/inject/injecttest"
)

const (
	oldImage = "docker.io/library/busybox:1.37.0"
	newImage = "docker.io/library/busybox:1.38.0"
)

// running is the Pod as the kubelet reports it: every container running
// and ready under a container ID of generation gen.
func running(p *corev1.Pod, gen string) *corev1.Pod {
	p.UID = types.UID("pod-" + p.Name)
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	for _, c := range p.Spec.Containers {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, Ready: true, ContainerID: "containerd://" + c.Name + "-" + gen,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
		})
	}
	return p
}

func (f *fleet) get(t *testing.T, name string) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{}
	if err := f.client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// filler is the image of the Pod's content-filler.
func (f *fleet) filler(t *testing.T, name string) string {
	t.Helper()
	for _, c := range f.get(t, name).Spec.Containers {
		if c.Name == "content-filler" {
			return c.Image
		}
	}
	t.Fatalf("%s has no content-filler", name)
	return ""
}

// restartedBy plays the kubelet: the upgraded containers run again,
// ready, under new IDs.
func (f *fleet) restartedBy(t *testing.T, name, gen string) {
	t.Helper()
	p := running(f.get(t, name), gen)
	if err := f.client.Status().Update(context.Background(), p); err != nil {
		t.Fatal(err)
	}
}

func (f *fleet) events() []string {
	var out []string
	for len(f.recorder.Events) > 0 {
		out = append(out, <-f.recorder.Events)
	}
	return out
}

func upgraded(f *fleet, result string) float64 {
	return testutil.ToFloat64(f.r.Metrics.upgrades.WithLabelValues(result))
}

// One Pod of a Deployment at a time: its image and status are patched,
// the next waits until the upgraded container runs again and is ready;
// the upgraded Pods carry the status the webhook writes for a new Pod and
// classify current; the Deployment is never restarted.
func TestInPlaceOnePodAtATime(t *testing.T) {
	old, cat := parse(t, "", ""), parse(t, oldImage, newImage)
	f := newFleet(t, cat, Options{Repair: RepairInPlace}, deployment("a-web"),
		running(injectedPod(t, old, "a-1", "Deployment", "a-web"), "1"), running(injectedPod(t, old, "a-2", "Deployment", "a-web"), "1"))
	f.pass(t)
	if got := []string{f.filler(t, "a-1"), f.filler(t, "a-2")}; got[0] != newImage || got[1] != oldImage {
		t.Fatalf("after the first pass: images %v, want a-1 upgraded alone", got)
	}
	f.pass(t)
	if got := f.filler(t, "a-2"); got != oldImage {
		t.Fatalf("a-2 upgraded while a-1's new container has not run yet")
	}
	f.restartedBy(t, "a-1", "2")
	f.pass(t)
	if got := f.filler(t, "a-2"); got != newImage {
		t.Fatalf("a-2 is still on %s once a-1's container is ready again", got)
	}
	if got := upgraded(f, "success"); got != 1 {
		t.Errorf("upgrades success %v, want 1", got)
	}
	f.currentAsNew(t, cat, "a-1", "a-2")
	if got := f.restarted(t); len(got) != 0 {
		t.Errorf("restarted %v; in place restarts nothing", got)
	}
}

// A container that does not come back ready in time stops its
// workload's upgrade: an Event on the workload, the halted gauge, and its
// other Pods left alone; another workload goes on.
func TestInPlaceStopsWhenAContainerIsNotReady(t *testing.T) {
	old, cat := parse(t, "", ""), parse(t, oldImage, newImage)
	f := newFleet(t, cat, Options{Repair: RepairInPlace, UpgradeTimeout: time.Nanosecond}, deployment("a-web"),
		running(injectedPod(t, old, "a-1", "Deployment", "a-web"), "1"), running(injectedPod(t, old, "a-2", "Deployment", "a-web"), "1"))
	f.pass(t)
	f.events()
	f.pass(t)
	f.pass(t)
	if got := f.filler(t, "a-2"); got != oldImage {
		t.Errorf("a-2 upgraded after a-1's upgrade stopped")
	}
	events := f.events()
	if len(events) != 1 || !strings.Contains(events[0], "SidecarUpgradeHalted In-place upgrade of Deployment a-web stopped: Pod a-1: container content-filler has not run on "+newImage) {
		t.Errorf("events %q, want one SidecarUpgradeHalted naming a-1's container", events)
	}
	if got := testutil.ToFloat64(f.r.Metrics.halted); got != 1 {
		t.Errorf("halted gauge %v, want 1", got)
	}
	if got := upgraded(f, "halted"); got != 1 {
		t.Errorf("upgrades halted %v, want 1", got)
	}
}

// What cannot be upgraded in place: more than an image says so and, in
// auto mode, is rolled out; a bare Pod waits for --upgrade-bare-pods; a
// dry run patches nothing.
func TestInPlaceModes(t *testing.T) {
	old := parse(t, "", "")
	cat := parse(t, oldImage, newImage)
	newArgs := parse(t, "sleep 10", "sleep 11")
	for name, c := range map[string]struct {
		cat       *catalog.Catalog
		o         Options
		pod       *corev1.Pod
		image     string // the filler's image after a pass
		restarted string
		event     string
	}{
		"new args in in-place mode: an Event, no restart": {newArgs, Options{Repair: RepairInPlace}, injectedPod(t, old, "a-1", "Deployment", "a-web"),
			oldImage, "", `SidecarsNeedRestart Pods of Deployment a-web cannot be upgraded in place: Pod a-1: no template container's image, cpu or memory differs: content-filler: the catalog now renders it differently (containers "content-filler" differs at .args[0]); kubectl rollout restart deployment/a-web -n shop repairs them`},
		"new args in auto mode: a rollout":   {newArgs, Options{Repair: RepairAuto}, injectedPod(t, old, "a-1", "Deployment", "a-web"), oldImage, "a-web", ""},
		"a new image in auto mode: in place": {cat, Options{Repair: RepairAuto}, injectedPod(t, old, "a-1", "Deployment", "a-web"), newImage, "", ""},
		"a bare Pod by default: left alone": {cat, Options{Repair: RepairAuto}, injectedPod(t, old, "a-1", "", ""), oldImage, "",
			"SidecarsNeedRestart Pods of Pod a-1 cannot be upgraded in place: Pod a-1 is not a Deployment, StatefulSet or DaemonSet: its Pods are upgraded in place only with --upgrade-bare-pods"},
		"a bare Pod when asked: upgraded": {cat, Options{Repair: RepairInPlace, UpgradeBarePods: true}, injectedPod(t, old, "a-1", "", ""), newImage, "", ""},
		"a dry run: nothing patched":      {cat, Options{Repair: RepairInPlace, DryRun: true}, injectedPod(t, old, "a-1", "Deployment", "a-web"), oldImage, "", ""},
		"a forged owner: nothing patched": {cat, Options{Repair: RepairInPlace}, with(injectedPod(t, old, "a-1", "Deployment", "a-web"), func(p *corev1.Pod) { p.OwnerReferences[0].UID = "forged" }), oldImage, "", ""},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFleet(t, c.cat, c.o, deployment("a-web"), running(c.pod, "1"))
			f.pass(t)
			f.pass(t)
			if got := f.filler(t, "a-1"); got != c.image {
				t.Errorf("image %s, want %s", got, c.image)
			}
			if got := strings.Join(f.restarted(t), ","); got != c.restarted {
				t.Errorf("restarted %q, want %q", got, c.restarted)
			}
			var said []string
			for _, e := range f.events() {
				if !strings.Contains(e, "SidecarsStale") {
					said = append(said, e)
				}
			}
			if c.event == "" && len(said) > 0 || c.event != "" && (len(said) != 1 || !strings.Contains(said[0], c.event)) {
				t.Errorf("events %q, want %q once", said, c.event)
			}
			if c.o.DryRun && upgraded(f, "dry-run") != 1 {
				t.Errorf("dry-run upgrades %v, want 1 however many passes", upgraded(f, "dry-run"))
			}
			if forged := strings.Contains(name, "forged"); forged && upgraded(f, "unproven") != 1 {
				t.Errorf("unproven upgrades %v, want 1 however many passes", upgraded(f, "unproven"))
			}
		})
	}
}

// A workload with a tampered Pod beside a stale one is rolled out in auto
// mode, not upgraded in place Pod by Pod.
func TestInPlaceOnlyWhenEveryPodIsStale(t *testing.T) {
	old, cat := parse(t, "", ""), parse(t, oldImage, newImage)
	tampered := injectedPod(t, old, "a-2", "Deployment", "a-web")
	tampered.Spec.Containers[1].Args = []string{"evil"}
	f := newFleet(t, cat, Options{Repair: RepairAuto}, deployment("a-web"),
		running(injectedPod(t, old, "a-1", "Deployment", "a-web"), "1"), running(tampered, "1"))
	f.pass(t)
	if got := f.filler(t, "a-1"); got != oldImage {
		t.Errorf("a-1 upgraded in place to %s beside a tampered Pod", got)
	}
	if got := strings.Join(f.restarted(t), ","); got != "a-web" {
		t.Errorf("restarted %q, want a-web", got)
	}
}

// A Pod that changes between the controller's read and its patch (its
// owner's team edits the sidecar meanwhile) is left as the team left it:
// the patch tests what it read.
func TestInPlaceLeavesAPodThatChangedMeanwhile(t *testing.T) {
	old, cat := parse(t, "", ""), parse(t, oldImage, newImage)
	f := newFleet(t, cat, Options{Repair: RepairInPlace}, deployment("a-web"), running(injectedPod(t, old, "a-1", "Deployment", "a-web"), "1"))
	inner := f.client.(client.WithWatch)
	f.r.Client = interceptor.NewClient(inner, interceptor.Funcs{Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
		if pod, ok := obj.(*corev1.Pod); ok {
			edited := &corev1.Pod{}
			if err := c.Get(ctx, client.ObjectKeyFromObject(pod), edited); err != nil {
				return err
			}
			edited.Spec.Containers[1].Image = "registry.example.com/their-own:1"
			if err := c.Update(ctx, edited); err != nil {
				return err
			}
		}
		return c.Patch(ctx, obj, patch, opts...)
	}})
	f.pass(t)
	if got := f.filler(t, "a-1"); got != "registry.example.com/their-own:1" {
		t.Errorf("image %s, want the team's edit kept", got)
	}
	if got := upgraded(f, "failure"); got != 1 {
		t.Errorf("failed upgrades %v, want 1", got)
	}
	if f.r.inPlace.inFlight() != 0 {
		t.Errorf("an upgrade is followed that never started")
	}
}

// currentAsNew holds the Pods to what the webhook makes of a new Pod
// under cat: its status annotation, and current.
func (f *fleet) currentAsNew(t *testing.T, cat *catalog.Catalog, names ...string) {
	t.Helper()
	fresh := injectedPod(t, cat, "new", "Deployment", "a-web")
	for _, name := range names {
		p := f.get(t, name)
		if p.Annotations[inject.StatusAnnotation] != fresh.Annotations[inject.StatusAnnotation] {
			t.Errorf("%s status %s; a new Pod gets %s", name, p.Annotations[inject.StatusAnnotation], fresh.Annotations[inject.StatusAnnotation])
		}
		if got := conformance.Classify(p, map[string]string{inject.InjectionLabel: "enabled"}, cat, injecttest.Keys); got.State != conformance.Current {
			t.Errorf("%s is %s after the upgrade: %+v", name, got.State, got.Templates)
		}
	}
}

// resizedBy is the kubelet carrying out the Pod's resize: each
// container's status reports the resources its spec asks for now.
func (f *fleet) resizedBy(t *testing.T, name string) {
	t.Helper()
	p := f.get(t, name)
	for i := range p.Status.ContainerStatuses {
		cs := &p.Status.ContainerStatuses[i]
		for _, c := range p.Spec.Containers {
			if c.Name == cs.Name {
				cs.Resources = c.Resources.DeepCopy()
			}
		}
	}
	if err := f.client.Status().Update(context.Background(), p); err != nil {
		t.Fatal(err)
	}
}

// A catalog that moves only a sidecar's cpu and memory resizes the Pods
// in place, one at a time as for images: the same Pods, the same
// containers (no new container ID), the new values in the spec, the
// status the webhook writes, current; the next Pod only once the kubelet
// reports the first one's resize done.
func TestResizeInPlace(t *testing.T) {
	old := parse(t, "", "")
	cat := parse(t, "requests: {cpu: 5m, memory: 8Mi}\n      limits: {cpu: 50m, memory: 32Mi}", "requests: {cpu: 10m, memory: 16Mi}\n      limits: {cpu: 100m, memory: 48Mi}")
	f := newFleet(t, cat, Options{Repair: RepairInPlace}, deployment("a-web"),
		running(injectedPod(t, old, "a-1", "Deployment", "a-web"), "1"), running(injectedPod(t, old, "a-2", "Deployment", "a-web"), "1"))
	limit := func(name string) string {
		for _, c := range f.get(t, name).Spec.Containers {
			if c.Name == "content-filler" {
				return c.Resources.Limits.Memory().String()
			}
		}
		return ""
	}
	f.pass(t)
	if got := []string{limit("a-1"), limit("a-2")}; got[0] != "48Mi" || got[1] != "32Mi" {
		t.Fatalf("after the first pass: memory limits %v, want a-1 resized alone", got)
	}
	f.pass(t)
	if got := limit("a-2"); got != "32Mi" {
		t.Fatalf("a-2 resized while a-1's resize is not reported done")
	}
	f.resizedBy(t, "a-1")
	f.pass(t)
	f.resizedBy(t, "a-2")
	f.pass(t)
	if got := limit("a-2"); got != "48Mi" {
		t.Fatalf("a-2's memory limit %s once a-1's resize is done, want 48Mi", got)
	}
	f.currentAsNew(t, cat, "a-1", "a-2")
	for _, name := range []string{"a-1", "a-2"} {
		p := f.get(t, name)
		for _, cs := range p.Status.ContainerStatuses {
			if !strings.HasSuffix(cs.ContainerID, "-1") {
				t.Errorf("%s: container %s is %s; a resize starts no container", name, cs.Name, cs.ContainerID)
			}
		}
	}
	if got := upgraded(f, "success"); got != 2 {
		t.Errorf("upgrades success %v, want 2", got)
	}
	if got := f.restarted(t); len(got) != 0 {
		t.Errorf("restarted %v; a resize restarts nothing", got)
	}
}

// A resize the kubelet reports infeasible stops the workload's upgrade at
// once, naming the Pod and the kubelet's reason.
func TestResizeInfeasibleHalts(t *testing.T) {
	old := parse(t, "", "")
	cat := parse(t, "limits: {cpu: 50m, memory: 32Mi}", "limits: {cpu: 50m, memory: 64Gi}")
	f := newFleet(t, cat, Options{Repair: RepairInPlace}, deployment("a-web"),
		running(injectedPod(t, old, "a-1", "Deployment", "a-web"), "1"), running(injectedPod(t, old, "a-2", "Deployment", "a-web"), "1"))
	f.pass(t)
	f.events()
	p := f.get(t, "a-1")
	p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.PodResizePending, Status: corev1.ConditionTrue, Reason: corev1.PodReasonInfeasible, Message: "Node didn't have enough capacity: memory"})
	if err := f.client.Status().Update(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	f.pass(t)
	events := f.events()
	if len(events) != 1 || !strings.Contains(events[0], "SidecarUpgradeHalted In-place upgrade of Deployment a-web stopped: Pod a-1: the resize is pending: Infeasible Node didn't have enough capacity: memory") {
		t.Errorf("events %q, want one SidecarUpgradeHalted with the kubelet's reason", events)
	}
}

// A resize the kubelet keeps failing (a memory limit below what the
// container uses: PodResizeInProgress with an error) is waited out once,
// up to --upgrade-timeout, then stops the workload's upgrade; it is not
// patched again.
func TestResizeThatKeepsFailingIsNotLoopedOn(t *testing.T) {
	old := parse(t, "", "")
	cat := parse(t, "limits: {cpu: 50m, memory: 32Mi}", "limits: {cpu: 50m, memory: 16Mi}")
	f := newFleet(t, cat, Options{Repair: RepairInPlace, UpgradeTimeout: time.Nanosecond}, deployment("a-web"),
		running(injectedPod(t, old, "a-1", "Deployment", "a-web"), "1"))
	patches := 0
	f.client = interceptor.NewClient(f.client.(client.WithWatch), interceptor.Funcs{
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
			if sub == "resize" {
				patches++
			}
			return c.SubResource(sub).Patch(ctx, obj, p, opts...)
		},
	})
	f.r.Client = f.client
	f.pass(t)
	p := f.get(t, "a-1")
	p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.PodResizeInProgress, Status: corev1.ConditionTrue, Reason: corev1.PodReasonError, Message: "memory limit below usage"})
	if err := f.client.Status().Update(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	f.events()
	for range 3 {
		f.pass(t)
	}
	if patches != 1 {
		t.Errorf("the resize was patched %d times; want once", patches)
	}
	if events := f.events(); len(events) != 1 || !strings.Contains(events[0], "SidecarUpgradeHalted") || !strings.Contains(events[0], "the kubelet fails to resize it: memory limit below usage") {
		t.Errorf("events %q; want one SidecarUpgradeHalted saying the resize did not take", events)
	}
}

// A resize the admission chain refuses (a LimitRange's maximum) stops the
// workload's upgrade, naming the refusal, and is not asked again.
func TestResizeTheChainRefusesHalts(t *testing.T) {
	old := parse(t, "", "")
	cat := parse(t, "limits: {cpu: 50m, memory: 32Mi}", "limits: {cpu: 50m, memory: 64Mi}")
	f := newFleet(t, cat, Options{Repair: RepairInPlace}, deployment("a-web"),
		running(injectedPod(t, old, "a-1", "Deployment", "a-web"), "1"))
	patches := 0
	f.r.Client = interceptor.NewClient(f.client.(client.WithWatch), interceptor.Funcs{
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
			patches++
			return apierrors.NewForbidden(corev1.Resource("pods"), obj.GetName(), errors.New("maximum memory usage per Container is 48Mi, but limit is 64Mi"))
		},
	})
	for range 3 {
		f.pass(t)
	}
	if patches != 1 {
		t.Errorf("the resize was asked %d times; want once", patches)
	}
	var halted []string
	for _, e := range f.events() {
		if strings.Contains(e, "SidecarUpgradeHalted") {
			halted = append(halted, e)
		}
	}
	if len(halted) != 1 || !strings.Contains(halted[0], "the API server refuses the resize") || !strings.Contains(halted[0], "maximum memory usage per Container is 48Mi") {
		t.Errorf("events %q; want one SidecarUpgradeHalted naming the refusal", halted)
	}
	if got := f.get(t, "a-1"); conformance.Classify(got, map[string]string{inject.InjectionLabel: "enabled"}, cat, injecttest.Keys).State != conformance.Stale {
		t.Error("a-1 changed although its resize was refused")
	}
}
