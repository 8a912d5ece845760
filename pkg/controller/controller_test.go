package controller

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/conformance"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/pkg/inject/injecttest"
	"github.com/podpatterns/sidecar-injector/pkg/patch/patchtest"
)

const ns = "shop"

func parse(t *testing.T, from, to string) *catalog.Catalog {
	t.Helper()
	cat, err := catalog.Parse(catalog.Source{Name: "default.yaml", Data: []byte(strings.Replace(string(catalog.DefaultYAML()), from, to, 1))})
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// injectedPod is a Pod of owner (a ReplicaSet of Deployment deploy, or a
// Job, or none) asking for content-filler, injected with cat.
func injectedPod(t *testing.T, cat *catalog.Catalog, name, kind, owner string) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns,
		Annotations: map[string]string{inject.InjectAnnotation: "content-filler"}}}
	p.Spec.Containers = []corev1.Container{{Name: "web", Image: "nginx:1.27"}}
	switch kind {
	case "Deployment":
		p.Labels = map[string]string{"pod-template-hash": "abc"}
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: owner + "-abc", UID: types.UID("rs-" + owner), Controller: new(true)}}
	case "DaemonSet":
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: owner, UID: types.UID("uid-" + owner), Controller: new(true)}}
	case "Job":
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: owner, UID: "u", Controller: new(true)}}
	}
	return patchtest.Admitted(t, p, nil, cat)
}

// replicaSet is the ReplicaSet of Deployment deploy that its Pods name.
func replicaSet(deploy string) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: deploy + "-abc", Namespace: ns, UID: types.UID("rs-" + deploy),
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: deploy, UID: types.UID("uid-" + deploy), Controller: new(true)}}}}
}

// deployment is a Deployment whose last rollout is complete, with its
// ReplicaSet.
func deployment(name string) *appsv1.Deployment {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Generation: 1, UID: types.UID("uid-" + name)}}
	d.Spec.Replicas = new(int32(1))
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1}
	return d
}

// daemonSet is a DaemonSet whose last rollout is complete.
func daemonSet(name string) *appsv1.DaemonSet {
	d := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Generation: 1, UID: types.UID("uid-" + name)}}
	d.Status = appsv1.DaemonSetStatus{ObservedGeneration: 1, DesiredNumberScheduled: 1, UpdatedNumberScheduled: 1, NumberAvailable: 1}
	return d
}

type fleet struct {
	shapes   *shapes
	r        *Reconciler
	client   client.Client
	recorder *record.FakeRecorder
}

func newFleet(t *testing.T, cat *catalog.Catalog, o Options, objs ...client.Object) *fleet {
	t.Helper()
	opted := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{inject.InjectionLabel: "enabled"}}}
	for _, o := range objs {
		if d, ok := o.(*appsv1.Deployment); ok && !strings.HasPrefix(d.Name, "no-rs-") {
			objs = append(objs, replicaSet(d.Name))
		}
	}
	c := fake.NewClientBuilder().WithObjects(append(objs, opted)...).WithStatusSubresource(&appsv1.Deployment{}).Build()
	rec := record.NewFakeRecorder(100)
	o.Catalog = func() *catalog.Catalog { return cat }
	o.AuditInterval, o.Log, o.Keys = time.Minute, logr.Discard(), injecttest.Keys
	if o.MaxConcurrentRestarts == 0 {
		o.MaxConcurrentRestarts = 1
	}
	if o.Repair == "" {
		o.Repair = RepairOff
	}
	if o.MaxUnavailable == 0 {
		o.MaxUnavailable = 1
	}
	if o.UpgradeTimeout == 0 {
		o.UpgradeTimeout = time.Minute
	}
	return &fleet{shapes: newShapes(o.Keys), r: NewReconciler(c, c, nil, rec, NewMetrics(prometheus.NewRegistry()), o), client: c, recorder: rec}
}

func with[T any](o T, change func(T)) T { change(o); return o }

// pass gives the reconciler the client's Pods as the informer would, then
// runs a resync and a repair pass.
func (f *fleet) pass(t *testing.T) {
	t.Helper()
	f.sync(t)
	if err := f.r.Resync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := f.r.RepairPass(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func (f *fleet) reconcile(t *testing.T, req reconcile.Request) {
	t.Helper()
	if _, err := f.r.Reconcile(context.Background(), req); err != nil {
		t.Fatal(err)
	}
}

// sync gives the reconciler the client's Pods as the informer would.
func (f *fleet) sync(t *testing.T) {
	t.Helper()
	var pods corev1.PodList
	if err := f.client.List(context.Background(), &pods); err != nil {
		t.Fatal(err)
	}
	store := toolscache.NewIndexer(toolscache.MetaNamespaceKeyFunc, toolscache.Indexers{toolscache.NamespaceIndex: toolscache.MetaNamespaceIndexFunc})
	for i := range pods.Items {
		p, err := f.shapes.transform(&pods.Items[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	f.r.Pods = store
}

// restarted names the Deployments, then the DaemonSets, whose pod
// template carries a restartedAt annotation.
func (f *fleet) restarted(t *testing.T) []string {
	t.Helper()
	var list appsv1.DeploymentList
	if err := f.client.List(context.Background(), &list); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range list.Items {
		if _, ok := d.Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"]; ok {
			names = append(names, d.Name)
		}
	}
	var daemons appsv1.DaemonSetList
	if err := f.client.List(context.Background(), &daemons); err != nil {
		t.Fatal(err)
	}
	for _, d := range daemons.Items {
		if _, ok := d.Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"]; ok {
			names = append(names, d.Name)
		}
	}
	return names
}

func TestRepair(t *testing.T) {
	old := parse(t, "", "")
	cat := parse(t, "docker.io/library/busybox:1.37.0", "docker.io/library/busybox:1.38.0")
	midRollout := deployment("a-web")
	midRollout.Generation = 2

	for name, c := range map[string]struct {
		objs []client.Object
		o    Options
		want []string
	}{
		"stale Pods of two Deployments: the first in name order is restarted, one at a time": {
			[]client.Object{deployment("b-web"), deployment("a-web"), injectedPod(t, old, "b-1", "Deployment", "b-web"), injectedPod(t, old, "a-1", "Deployment", "a-web")},
			Options{Repair: RepairRestart}, []string{"a-web"}},
		"two at a time when allowed": {
			[]client.Object{deployment("b-web"), deployment("a-web"), injectedPod(t, old, "b-1", "Deployment", "b-web"), injectedPod(t, old, "a-1", "Deployment", "a-web")},
			Options{Repair: RepairRestart, MaxConcurrentRestarts: 2}, []string{"a-web", "b-web"}},
		"a Deployment mid-rollout is left alone and the next is restarted": {
			[]client.Object{midRollout, deployment("b-web"), injectedPod(t, old, "a-1", "Deployment", "a-web"), injectedPod(t, old, "b-1", "Deployment", "b-web")},
			Options{Repair: RepairRestart}, []string{"b-web"}},
		"current Pods restart nothing": {
			[]client.Object{deployment("a-web"), injectedPod(t, cat, "a-1", "Deployment", "a-web")},
			Options{Repair: RepairRestart}, nil},
		"a dry run restarts nothing": {
			[]client.Object{deployment("a-web"), injectedPod(t, old, "a-1", "Deployment", "a-web")},
			Options{Repair: RepairRestart, DryRun: true}, nil},
		"without repair nothing is restarted": {
			[]client.Object{deployment("a-web"), injectedPod(t, old, "a-1", "Deployment", "a-web")},
			Options{}, nil},
		"a Pod naming the ReplicaSet by another UID restarts nothing": {
			[]client.Object{deployment("a-web"), with(injectedPod(t, old, "a-1", "Deployment", "a-web"), func(p *corev1.Pod) { p.OwnerReferences[0].UID = "forged" })},
			Options{Repair: RepairRestart}, nil},
		"a Pod naming a ReplicaSet that is not the Deployment's restarts nothing": {
			[]client.Object{deployment("no-rs-web"), injectedPod(t, old, "a-1", "Deployment", "no-rs-web"), with(replicaSet("no-rs-web"), func(rs *appsv1.ReplicaSet) { rs.OwnerReferences[0].UID = "another-deployment" })},
			Options{Repair: RepairRestart}, nil},
		"a Pod naming a ReplicaSet that does not exist restarts nothing": {
			[]client.Object{deployment("no-rs-web"), injectedPod(t, old, "a-1", "Deployment", "no-rs-web")},
			Options{Repair: RepairRestart}, nil},
		"a DaemonSet its Pods name by UID is restarted": {
			[]client.Object{daemonSet("agent"), injectedPod(t, old, "agent-1", "DaemonSet", "agent")},
			Options{Repair: RepairRestart}, []string{"agent"}},
		"a DaemonSet its Pods name by another UID is not": {
			[]client.Object{daemonSet("agent"), with(injectedPod(t, old, "agent-1", "DaemonSet", "agent"), func(p *corev1.Pod) { p.OwnerReferences[0].UID = "forged" })},
			Options{Repair: RepairRestart}, nil},
		"a bare Pod and a Job are never restarted": {
			[]client.Object{injectedPod(t, old, "bare", "", ""), injectedPod(t, old, "job-1", "Job", "nightly")},
			Options{Repair: RepairRestart}, nil},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFleet(t, cat, c.o, c.objs...)
			f.pass(t)
			if got := f.restarted(t); strings.Join(got, ",") != strings.Join(c.want, ",") {
				t.Errorf("restarted %v, want %v", got, c.want)
			}
		})
	}
}

// The next rollout waits until the one in progress has finished, as
// kubectl rollout status judges it.
func TestOneRolloutAtATime(t *testing.T) {
	old := parse(t, "", "")
	cat := parse(t, "docker.io/library/busybox:1.37.0", "docker.io/library/busybox:1.38.0")
	f := newFleet(t, cat, Options{Repair: RepairRestart},
		deployment("a-web"), deployment("b-web"), injectedPod(t, old, "a-1", "Deployment", "a-web"), injectedPod(t, old, "b-1", "Deployment", "b-web"))
	f.pass(t)
	// The restart bumps the generation; the Deployment controller has
	// not caught up yet.
	a := &appsv1.Deployment{}
	if err := f.client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "a-web"}, a); err != nil {
		t.Fatal(err)
	}
	a.Generation = 2
	if err := f.client.Update(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	f.pass(t)
	if got := f.restarted(t); strings.Join(got, ",") != "a-web" {
		t.Fatalf("while a-web rolls out: restarted %v, want a-web alone", got)
	}
	// The rollout completes: a-web's Pod is replaced by a current one.
	a.Status.ObservedGeneration = 2
	if err := f.client.Status().Update(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	if err := f.client.Delete(context.Background(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "a-1"}}); err != nil {
		t.Fatal(err)
	}
	if err := f.client.Create(context.Background(), injectedPod(t, cat, "a-2", "Deployment", "a-web")); err != nil {
		t.Fatal(err)
	}
	f.pass(t)
	if got := f.restarted(t); strings.Join(got, ",") != "a-web,b-web" {
		t.Errorf("once a-web has rolled out: restarted %v, want a-web,b-web", got)
	}
}

// One Event per owner and change of state, on the owner itself, and the
// gauges count Pods by namespace, template and state.
func TestEventsAndGauges(t *testing.T) {
	old := parse(t, "", "")
	cat := parse(t, "docker.io/library/busybox:1.37.0", "docker.io/library/busybox:1.38.0")
	f := newFleet(t, cat, Options{}, deployment("a-web"),
		injectedPod(t, old, "a-1", "Deployment", "a-web"), injectedPod(t, old, "a-2", "Deployment", "a-web"), injectedPod(t, cat, "bare", "", ""))
	f.pass(t)
	f.pass(t)
	var events []string
	for len(f.recorder.Events) > 0 {
		events = append(events, <-f.recorder.Events)
	}
	if len(events) != 1 || !strings.Contains(events[0], "SidecarsStale Pods of Deployment a-web are stale") {
		t.Errorf("events %q; want one SidecarsStale on Deployment a-web", events)
	}
	for labels, want := range map[[3]string]float64{
		{ns, "content-filler", "stale"}:   2,
		{ns, "content-filler", "current"}: 1,
	} {
		if got := testutil.ToFloat64(f.r.Metrics.pods.WithLabelValues(labels[:]...)); got != want {
			t.Errorf("sidecar_injector_pods%v = %v, want %v", labels, got, want)
		}
	}
}

// A Pod event reclassifies that Pod alone, a namespace event the
// namespace's Pods: the gauges follow without a resync.
func TestEventsAreIncremental(t *testing.T) {
	old := parse(t, "", "")
	cat := parse(t, "docker.io/library/busybox:1.37.0", "docker.io/library/busybox:1.38.0")
	f := newFleet(t, cat, Options{})
	f.pass(t)
	stale := func() float64 {
		return testutil.ToFloat64(f.r.Metrics.pods.WithLabelValues(ns, "content-filler", "stale"))
	}
	series := func() int { return testutil.CollectAndCount(f.r.Metrics.pods) }
	for _, name := range []string{"a-1", "a-2"} {
		if err := f.client.Create(context.Background(), injectedPod(t, old, name, "Deployment", "a-web")); err != nil {
			t.Fatal(err)
		}
	}
	f.sync(t)
	f.reconcile(t, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: "a-1"}})
	if got := stale(); got != 1 {
		t.Errorf("after a-1's event: stale %v, want 1 (a-2's event is yet to come)", got)
	}
	f.reconcile(t, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: "a-2"}})
	if got := stale(); got != 2 {
		t.Errorf("after a-2's event: stale %v, want 2", got)
	}
	if err := f.client.Delete(context.Background(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "a-1"}}); err != nil {
		t.Fatal(err)
	}
	f.sync(t)
	f.reconcile(t, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: "a-1"}})
	if got := stale(); got != 1 {
		t.Errorf("after a-1's deletion: stale %v, want 1", got)
	}
	n := &corev1.Namespace{}
	if err := f.client.Get(context.Background(), client.ObjectKey{Name: ns}, n); err != nil {
		t.Fatal(err)
	}
	n.Labels = nil
	if err := f.client.Update(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	f.reconcile(t, reconcile.Request{NamespacedName: types.NamespacedName{Name: ns}})
	if got := series(); got != 0 {
		t.Errorf("the namespace opted out: %d series left, want none", got)
	}
}

// A Pod that asks for nothing, and one whose state counts last in
// conformance.States, are counted like any other: the owner's tally has a
// place for every state.
func TestEveryStateIsCounted(t *testing.T) {
	cat := parse(t, "docker.io/library/busybox:1.37.0", "docker.io/library/busybox:1.38.0")
	plain := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "plain", Namespace: ns}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}}}
	f := newFleet(t, cat, Options{}, plain)
	f.pass(t)
	if got := testutil.ToFloat64(f.r.Metrics.pods.WithLabelValues(ns, "", "none")); got != 1 {
		t.Errorf("sidecar_injector_pods{state=none} = %v, want 1", got)
	}
	if numStates != len(conformance.States) {
		t.Errorf("numStates is %d, conformance.States has %d", numStates, len(conformance.States))
	}
}

// The sidecars' requests and limits are summed by namespace and template,
// follow Pods as they come and go, and leave no series behind.
func TestSidecarResources(t *testing.T) {
	cat := parse(t, "docker.io/library/busybox:1.37.0", "docker.io/library/busybox:1.38.0")
	f := newFleet(t, cat, Options{}, injectedPod(t, cat, "a-1", "", ""), injectedPod(t, cat, "a-2", "", ""))
	f.pass(t)
	value := func(resource, kind string) float64 {
		return testutil.ToFloat64(f.r.Metrics.resources.WithLabelValues(ns, "content-filler", resource, kind))
	}
	// content-filler requests 5m and 8Mi, limits 50m and 32Mi.
	for _, c := range []struct {
		resource, kind string
		want           float64
	}{{"cpu", "request", 0.010}, {"cpu", "limit", 0.100}, {"memory", "request", 16 << 20}, {"memory", "limit", 64 << 20}} {
		if got := value(c.resource, c.kind); got != c.want {
			t.Errorf("sidecar_injector_sidecar_resources{%s,%s} = %v, want %v", c.resource, c.kind, got, c.want)
		}
	}
	for _, name := range []string{"a-1", "a-2"} {
		if err := f.client.Delete(context.Background(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}); err != nil {
			t.Fatal(err)
		}
	}
	f.pass(t)
	if n := testutil.CollectAndCount(f.r.Metrics.resources); n != 0 {
		t.Errorf("%d series left after the Pods went", n)
	}
}
