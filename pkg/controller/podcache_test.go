package controller

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/conformance"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/pkg/inject/injecttest"
	"github.com/podpatterns/sidecar-injector/pkg/patch/patchtest"
)

// withIdentity is the Pod as one replica of a workload is stored: a
// name, a UID, a node, and the service account token volume, under a
// name of its own, mounted into every container.
func withIdentity(p *corev1.Pod, suffix string) *corev1.Pod {
	p = p.DeepCopy()
	p.Name, p.UID, p.Spec.NodeName, p.Spec.Hostname = "web-"+suffix, types.UID("uid-"+suffix), "node-"+suffix, "web-"+suffix
	token := "kube-api-access-" + suffix
	p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: token, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{}}})
	for _, list := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range list {
			list[i].VolumeMounts = append(list[i].VolumeMounts, corev1.VolumeMount{Name: token, MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true})
		}
	}
	return p
}

// Classify gives every golden Pod of the engine, before and after
// injection, and its shape the same result, in an opted-in namespace
// and in one a policy matches; two replicas share one shape.
func TestAShapeClassifiesAsItsPod(t *testing.T) {
	extra, err := os.ReadFile("../inject/testdata/catalog.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.Parse(catalog.Source{Name: "default.yaml", Data: catalog.DefaultYAML()}, catalog.Source{Name: "catalog.yaml", Data: extra})
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("../inject/testdata/golden/*")
	if len(files) < 100 {
		t.Fatalf("%d golden files; the engine's testdata moved?", len(files))
	}
	s := newShapes(injecttest.Keys)
	compared := 0
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		pod := &corev1.Pod{}
		if err := yaml.Unmarshal(data, pod); err != nil || pod.Kind != "Pod" {
			continue // a denial
		}
		a, b := withIdentity(pod, "abcde"), withIdentity(pod, "fghij")
		for _, labels := range []map[string]string{{inject.InjectionLabel: "enabled"}, {inject.InjectionLabel: "enabled", "env": "prod", "team": "payments"}} {
			want := conformance.Classify(a, labels, cat, injecttest.Keys)
			if got := conformance.Classify(s.shapeOf(a), labels, cat, s.vouched); !reflect.DeepEqual(got, want) {
				t.Errorf("%s: its shape is %+v, the Pod %+v", file, got, want)
			}
			compared++
		}
		pa, _ := s.transform(a)
		pb, _ := s.transform(b)
		if pa.(*cachedPod).shape != pb.(*cachedPod).shape {
			t.Errorf("%s: two replicas have two shapes", filepath.Base(file))
		}
	}
	if compared < 200 {
		t.Errorf("compared %d classifications, want every golden Pod's", compared)
	}
	if !strings.Contains(s.shapeOf(withIdentity(&corev1.Pod{}, "x")).Spec.Volumes[0].Name, tokenVolume) {
		t.Error("the token volume lost its prefix")
	}
}

// A shape no cached Pod points to any more leaves the table: a fleet
// that changes its Pods' content does not grow the table without end.
func TestShapesGoWithTheirPods(t *testing.T) {
	s := newShapes(nil)
	for i := range 100 {
		p := &corev1.Pod{}
		p.Spec.Containers = []corev1.Container{{Name: "web", Image: fmt.Sprintf("web:%d", i)}}
		if _, err := s.transform(p); err != nil {
			t.Fatal(err)
		}
	}
	for range 50 {
		runtime.GC()
		if live(s) == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%d shapes left once no Pod points to them", live(s))
}

// live is the number of shapes in the table.
func live(s *shapes) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// The webhook signs each Pod's status at the time it injects it, yet the
// replicas of a workload injected minutes apart share one shape, which
// classifies as each of them does; a replica under a forged signature
// gets a shape of its own, tampered. Without keys (policy mode), the
// signed replicas share a shape too, unverified.
func TestReplicasSignedApartShareAShape(t *testing.T) {
	cat, err := catalog.Default()
	if err != nil {
		t.Fatal(err)
	}
	admitted := func(keys *inject.Keys, suffix string) *corev1.Pod {
		p := &corev1.Pod{}
		p.Annotations = map[string]string{inject.InjectAnnotation: "content-filler"}
		p.Spec.Containers = []corev1.Container{{Name: "web", Image: "nginx:1.27"}}
		return withIdentity(patchtest.AdmittedWith(t, p, nil, cat, keys), suffix)
	}
	early := admitted(injecttest.KeysAt(injecttest.SignedAt), "early")
	late := admitted(injecttest.KeysAt(injecttest.SignedAt.Add(time.Hour)), "later")
	forger, err := inject.NewKeys([]byte("a key the app team made up, 32 bytes or more"))
	if err != nil {
		t.Fatal(err)
	}
	forged := admitted(forger, "forged")
	if early.Annotations[inject.StatusAnnotation] == late.Annotations[inject.StatusAnnotation] {
		t.Fatal("the two replicas carry one status; the test proves nothing")
	}
	for _, c := range []struct {
		keys        *inject.Keys
		want, other conformance.State
	}{{injecttest.Keys, conformance.Current, conformance.Tampered}, {nil, conformance.Unverified, conformance.Unverified}} {
		s := newShapes(c.keys)
		shapeOf := func(p *corev1.Pod) *shape {
			cp, _ := s.transform(p)
			return cp.(*cachedPod).shape
		}
		state := func(sh *shape) conformance.State {
			return sh.classify("shop", 1, func(pod *corev1.Pod, keys *inject.Keys) conformance.Result {
				return conformance.Classify(pod, nil, cat, keys)
			}).State
		}
		a, b, f := shapeOf(early), shapeOf(late), shapeOf(forged)
		if a != b {
			t.Errorf("keys %v: replicas signed an hour apart have two shapes", c.keys != nil)
		}
		if got := state(a); got != c.want || conformance.Classify(late, nil, cat, c.keys).State != c.want {
			t.Errorf("keys %v: the shape is %s, the Pod %s; want %s", c.keys != nil, got, conformance.Classify(late, nil, cat, c.keys).State, c.want)
		}
		if got := state(f); got != c.other || conformance.Classify(forged, nil, cat, c.keys).State != c.other {
			t.Errorf("keys %v: the forged replica's shape is %s; want %s", c.keys != nil, got, c.other)
		}
	}
}
