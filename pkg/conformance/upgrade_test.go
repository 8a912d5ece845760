package conformance

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/pkg/inject/injecttest"
)

// A catalog that moves only images upgrades its stale Pods in place: the
// upgraded Pod classifies current, carries the status the webhook writes
// for a new Pod, and a reinvocation keeps it as it is. Anything more than
// an image needs a new Pod, and says what.
func TestInPlace(t *testing.T) {
	cat := parse(t, "")
	moved := parse(t, "", "docker.io/library/busybox:1.37.0", "docker.io/library/busybox:1.37.1",
		"cr.fluentbit.io/fluent/fluent-bit:3.2.10", "cr.fluentbit.io/fluent/fluent-bit:3.2.11")
	request := func() *corev1.Pod { return pod("log-shipper,content-filler") }
	running := injected(t, request(), nil, cat)

	up, err := InPlace(running, nil, moved, injecttest.Keys)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"/spec/initContainers/0": "cr.fluentbit.io/fluent/fluent-bit:3.2.11", "/spec/containers/1": "docker.io/library/busybox:1.37.1"}
	if len(up.Images) != len(want) {
		t.Fatalf("images %+v, want %v", up.Images, want)
	}
	upgraded := running.DeepCopy()
	for _, im := range up.Images {
		if want[im.Path()] != im.To {
			t.Errorf("%s (%s) to %q, want %q", im.Path(), im.Name, im.To, want[im.Path()])
		}
		c := &upgraded.Spec.Containers
		if im.Init {
			c = &upgraded.Spec.InitContainers
		}
		if (*c)[im.Index].Name != im.Name || (*c)[im.Index].Image != im.From {
			t.Fatalf("%s is %s %s, the upgrade says %s %s", im.Path(), (*c)[im.Index].Name, (*c)[im.Index].Image, im.Name, im.From)
		}
		(*c)[im.Index].Image = im.To
	}
	upgraded.Annotations[inject.StatusAnnotation] = up.Status
	if got := Classify(upgraded, nil, moved, injecttest.Keys); got.State != Current {
		t.Errorf("upgraded Pod is %s: %+v", got.State, got.Templates)
	}
	fresh := injected(t, request(), nil, moved)
	if up.Status != fresh.Annotations[inject.StatusAnnotation] {
		t.Errorf("status %s, the webhook writes %s for a new Pod", up.Status, fresh.Annotations[inject.StatusAnnotation])
	}
	if res, err := inject.Pod(upgraded, nil, moved, injecttest.Keys); err != nil || res.Plan != nil {
		t.Errorf("a reinvocation on the upgraded Pod changes it: %+v, %v", res, err)
	}

	newArgs := parse(t, "", "docker.io/library/busybox:1.37.0", "docker.io/library/busybox:1.37.1", "sleep 10", "sleep 11")
	latest := parse(t, "", "docker.io/library/busybox:1.37.0", "docker.io/library/busybox:latest")
	defaulted := running.DeepCopy() // the pull policy as the API server sets it
	for i := range defaulted.Spec.Containers {
		defaulted.Spec.Containers[i].ImagePullPolicy = corev1.PullIfNotPresent
	}
	tampered := running.DeepCopy()
	tampered.Spec.Containers[1].Args = []string{"evil"}
	for name, c := range map[string]struct {
		pod    *corev1.Pod
		cat    *catalog.Catalog
		reason string
	}{
		"args as well as the image":                  {running, newArgs, `more than images, cpu and memory differ: content-filler: containers "content-filler" differs at .args[0]`},
		"an image whose default pull policy differs": {defaulted, latest, `container "content-filler" pulls IfNotPresent, the default for docker.io/library/busybox:1.37.0; docker.io/library/busybox:latest defaults to Always`},
		"a current Pod":                              {running, cat, "it is current, not stale"},
		"a tampered Pod":                             {tampered, moved, "it is tampered, not stale"},
	} {
		t.Run(name, func(t *testing.T) {
			up, err := InPlace(c.pod, nil, c.cat, injecttest.Keys)
			if err == nil || !strings.Contains(err.Error(), c.reason) {
				t.Errorf("upgrade %+v, error %v; want an error holding %q", up, err, c.reason)
			}
		})
	}
}
