package conformance

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/pkg/inject/injecttest"
)

// A catalog that moves only sidecars' cpu and memory (alone or with
// images) resizes its stale Pods in place: a classic sidecar and a native
// one, each to the catalog's values; the resized Pod classifies current,
// carries the status the webhook writes for a new Pod, and a reinvocation
// keeps it as it is.
func TestResizeInPlace(t *testing.T) {
	cat := parse(t, "")
	moved := parse(t, "",
		"requests: {cpu: 20m, memory: 32Mi}\n      limits: {cpu: 200m, memory: 96Mi}", "requests: {cpu: 40m, memory: 48Mi}\n      limits: {cpu: 300m, memory: 128Mi}",
		"requests: {cpu: 5m, memory: 8Mi}\n      limits: {cpu: 50m, memory: 32Mi}", "requests: {cpu: 10m, memory: 8Mi}\n      limits: {cpu: 50m, memory: 24Mi}",
		"docker.io/library/busybox:1.37.0", "docker.io/library/busybox:1.37.1")
	request := func() *corev1.Pod { return pod("log-shipper,content-filler") }
	running := injected(t, request(), nil, cat)
	up, err := InPlace(running, nil, moved, injecttest.Keys)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"/spec/initContainers/0": "cpu 40m-300m, memory 48Mi-128Mi", "/spec/containers/1": "cpu 10m-50m, memory 8Mi-24Mi"}
	if len(up.Resizes) != 2 || len(up.Images) != 1 {
		t.Fatalf("resizes %+v, images %+v; want two resizes and one image", up.Resizes, up.Images)
	}
	upgraded := running.DeepCopy()
	for _, rs := range up.Resizes {
		if got := describeResources(rs.To); got != want[rs.Path()] {
			t.Errorf("%s (%s) to %s, want %s", rs.Path(), rs.Name, got, want[rs.Path()])
		}
		_, c := find(upgraded, rs.Name)
		c.Resources = rs.To
	}
	for _, im := range up.Images {
		_, c := find(upgraded, im.Name)
		c.Image = im.To
	}
	upgraded.Annotations[inject.StatusAnnotation] = up.Status
	if got := Classify(upgraded, nil, moved, injecttest.Keys); got.State != Current {
		t.Errorf("resized Pod is %s: %+v", got.State, got.Templates)
	}
	if fresh := injected(t, request(), nil, moved); up.Status != fresh.Annotations[inject.StatusAnnotation] {
		t.Errorf("status %s, the webhook writes %s for a new Pod", up.Status, fresh.Annotations[inject.StatusAnnotation])
	}
	if res, err := inject.Pod(upgraded, nil, moved, injecttest.Keys); err != nil || res.Plan != nil {
		t.Errorf("a reinvocation on the resized Pod changes it: %+v, %v", res, err)
	}
}

// What Kubernetes would refuse to resize, or resize with a restart, is a
// rollout, saying why.
func TestResizeRefusals(t *testing.T) {
	cat := parse(t, "")
	running := injected(t, pod("content-filler"), nil, cat)
	grown := parse(t, "", "requests: {cpu: 5m, memory: 8Mi}", "requests: {cpu: 10m, memory: 8Mi}")
	guaranteed := running.DeepCopy() // every container's limits equal its requests
	for i := range guaranteed.Spec.Containers {
		guaranteed.Spec.Containers[i].Resources = corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
		}
	}
	toGuaranteed := parse(t, "", "requests: {cpu: 5m, memory: 8Mi}", "requests: {cpu: 50m, memory: 32Mi}")
	podLevel := running.DeepCopy()
	podLevel.Spec.Resources = &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}
	restarts := running.DeepCopy()
	_, c := find(restarts, "content-filler")
	c.ResizePolicy = []corev1.ContainerResizePolicy{{ResourceName: corev1.ResourceCPU, RestartPolicy: corev1.RestartContainer}}
	for name, tc := range map[string]struct {
		pod    *corev1.Pod
		cat    *catalog.Catalog
		reason string
	}{
		"pod-level resources":    {podLevel, grown, "the Pod sets pod-level resources"},
		"a restarting policy":    {restarts, grown, "its resizePolicy restarts it when cpu changes"},
		"a QoS class that moves": {runningWithAppLimits(running), toGuaranteed, "from QoS class Burstable to Guaranteed"},
	} {
		t.Run(name, func(t *testing.T) {
			up, err := InPlace(tc.pod, nil, tc.cat, injecttest.Keys)
			if err == nil || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("upgrade %+v, error %v; want an error holding %q", up, err, tc.reason)
			}
		})
	}
	if _, err := InPlace(guaranteed, nil, cat, injecttest.Keys); err == nil {
		t.Error("a Pod whose sidecar differs from its status entry resized; want it tampered, not stale")
	}
}

// runningWithAppLimits is the Pod with its app container's limits equal
// to its requests, so only the sidecar keeps it from Guaranteed.
func runningWithAppLimits(running *corev1.Pod) *corev1.Pod {
	p := running.DeepCopy()
	_, c := find(p, "web")
	c.Resources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
	}
	return p
}

func describeResources(r corev1.ResourceRequirements) string {
	cpuReq, cpuLim := r.Requests[corev1.ResourceCPU], r.Limits[corev1.ResourceCPU]
	memReq, memLim := r.Requests[corev1.ResourceMemory], r.Limits[corev1.ResourceMemory]
	return "cpu " + cpuReq.String() + "-" + cpuLim.String() + ", memory " + memReq.String() + "-" + memLim.String()
}

// A resource the admission chain added to a sidecar (a LimitRange's
// ephemeral-storage) stays through the resize: only cpu and memory move.
func TestResizeKeepsWhatTheChainAdded(t *testing.T) {
	running := injected(t, pod("content-filler"), nil, parse(t, ""))
	_, c := find(running, "content-filler")
	c.Resources.Limits[corev1.ResourceEphemeralStorage] = resource.MustParse("1Gi")
	up, err := InPlace(running, nil, parse(t, "", "requests: {cpu: 5m, memory: 8Mi}", "requests: {cpu: 10m, memory: 8Mi}"), injecttest.Keys)
	if err != nil {
		t.Fatal(err)
	}
	if len(up.Resizes) != 1 {
		t.Fatalf("resizes %+v; want one", up.Resizes)
	}
	to := up.Resizes[0].To
	if q := to.Limits[corev1.ResourceEphemeralStorage]; q.String() != "1Gi" {
		t.Errorf("ephemeral-storage limit %s after the resize; want 1Gi kept", q.String())
	}
	if q := to.Requests[corev1.ResourceCPU]; q.String() != "10m" {
		t.Errorf("cpu request %s; want 10m", q.String())
	}
}
