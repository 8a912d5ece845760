package inject_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/podpatterns/sidecar-injector/pkg/inject"
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
		k, v, _ := cut(nsLabel)
		labels := map[string]string{k: v}
		res, err := inject.Pod(pod, labels, cat)
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
		out, err := apply(raw, patch.ForPod(pod, res.Plan))
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
		again, err := inject.Pod(after, labels, cat)
		if err != nil {
			t.Fatalf("second run denied: %v", err)
		}
		if again.Plan != nil {
			t.Fatalf("second run plans %v again", again.Injected)
		}
	})
}

func cut(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '=' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
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

func TestStatusStringIsJSON(t *testing.T) {
	s := inject.Status{Templates: []inject.Injected{{Name: "log-shipper", Hash: "0a1b"}, {Name: "ambassador", Hash: "ff"}}}
	want, _ := json.Marshal(s)
	if s.String() != string(want) {
		t.Errorf("%s, want %s", s.String(), want)
	}
	if (inject.Status{}).String() != `{"templates":[]}` {
		t.Errorf("empty status %s", inject.Status{}.String())
	}
}
