package inject_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/pkg/inject/injecttest"
	"github.com/podpatterns/sidecar-injector/pkg/patch"
)

// FuzzPod: for arbitrary pods and requests the engine never panics, the
// patch always applies, a second run plans nothing, and the result keeps
// container names unique, every mount backed by a volume and ports unique.
func FuzzPod(f *testing.F) {
	inputs, _ := filepath.Glob(filepath.Join(goldenDir, "*.yaml"))
	for _, in := range inputs {
		text, _ := os.ReadFile(in)
		raw, err := yaml.YAMLToJSON(text)
		if err == nil {
			f.Add(raw, "content-filler, log-shipper", "", "team=a")
		}
	}
	cat := testCatalog(f)
	f.Fuzz(func(t *testing.T, podJSON []byte, request, targets, nsLabel string) {
		pod := &corev1.Pod{}
		if json.Unmarshal(podJSON, pod) != nil {
			return
		}
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		if request != "" {
			pod.Annotations[inject.InjectAnnotation] = request
		}
		if targets != "" {
			pod.Annotations[inject.TargetContainersAnnotation] = targets
		}
		raw, err := json.Marshal(pod)
		if err != nil {
			return
		}
		k, v, _ := strings.Cut(nsLabel, "=")
		labels := map[string]string{k: v}
		res, err := inject.Pod(pod, labels, cat, injecttest.Keys)
		var denial *inject.Denial
		if errors.As(err, &denial) {
			return
		}
		if err != nil {
			t.Fatalf("engine error that is not a denial: %v", err)
		}
		if res.Plan == nil {
			return
		}
		out, err := patch.Apply(raw, patch.ForPod(pod, res.Plan))
		if err != nil {
			t.Fatalf("patch does not apply: %v", err)
		}
		after := &corev1.Pod{}
		if err := json.Unmarshal(out, after); err != nil {
			t.Fatalf("patched pod does not decode: %v", err)
		}
		for name, check := range map[string]func(*corev1.Pod) error{
			"unique container names":   uniqueNames,
			"mounts backed by volumes": mountsBacked,
			"unique ports":             uniquePorts,
		} {
			if check(pod) == nil {
				if err := check(after); err != nil {
					t.Errorf("%s: held before injection, broken after: %v", name, err)
				}
			}
		}
		again, err := inject.Pod(after, labels, cat, injecttest.Keys)
		if err != nil {
			t.Fatalf("second run denied: %v", err)
		}
		if again.Plan != nil {
			t.Fatalf("second run plans %v again", again.Injected)
		}
	})
}

func allContainers(p *corev1.Pod) []corev1.Container {
	return append(append([]corev1.Container(nil), p.Spec.InitContainers...), p.Spec.Containers...)
}

func uniqueNames(p *corev1.Pod) error {
	seen := map[string]bool{}
	for _, c := range allContainers(p) {
		if seen[c.Name] {
			return fmt.Errorf("container %q twice", c.Name)
		}
		seen[c.Name] = true
	}
	return nil
}

func mountsBacked(p *corev1.Pod) error {
	volumes := map[string]bool{}
	for _, v := range p.Spec.Volumes {
		volumes[v.Name] = true
	}
	for _, c := range allContainers(p) {
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				return fmt.Errorf("container %q mounts missing volume %q", c.Name, m.Name)
			}
		}
	}
	return nil
}

func uniquePorts(p *corev1.Pod) error {
	seen := map[string]bool{}
	for _, c := range allContainers(p) {
		for _, port := range c.Ports {
			key := fmt.Sprintf("%d/%s", port.ContainerPort, port.Protocol)
			if seen[key] {
				return fmt.Errorf("port %s twice", key)
			}
			seen[key] = true
		}
	}
	return nil
}

func TestStatusStringIsTheAnnotationsFormat(t *testing.T) {
	for name, c := range map[string]struct {
		status inject.Status
		want   string
	}{
		"two entries, in order": {inject.Status{Templates: []inject.Injected{{Name: "log-shipper", Hash: "0a1b"}, {Name: "ambassador", Hash: "ff"}}},
			`{"templates":[{"name":"log-shipper","hash":"0a1b"},{"name":"ambassador","hash":"ff"}]}`},
		"no entries is an empty list, not null": {inject.Status{}, `{"templates":[]}`},
	} {
		t.Run(name, func(t *testing.T) {
			if got := c.status.String(); got != c.want {
				t.Errorf("%s, want %s", got, c.want)
			}
		})
	}
}

// Two bad parameter annotations: the denial names the same one every time.
func TestDenialIsDeterministic(t *testing.T) {
	cat := testCatalog(t)
	pod := &corev1.Pod{}
	pod.Annotations = map[string]string{
		inject.InjectAnnotation:                          "log-shipper",
		inject.ParameterAnnotation("log-shipper", "zzz"): "x",
		inject.ParameterAnnotation("log-shipper", "aaa"): "x",
		inject.ParameterAnnotation("log-shipper", "mmm"): "x",
	}
	pod.Spec.Containers = []corev1.Container{{Name: "app", Image: "app:1"}}
	var first string
	for i := range 50 {
		_, err := inject.Pod(pod, nil, cat, injecttest.Keys)
		if err == nil {
			t.Fatal("unknown parameters accepted")
		}
		if i == 0 {
			first = err.Error()
		} else if err.Error() != first {
			t.Fatalf("denial changed between runs:\n%s\n%s", first, err)
		}
	}
	if !strings.Contains(first, `has no parameter "aaa"`) {
		t.Errorf("denial %q should name the first bad annotation in order", first)
	}
}
