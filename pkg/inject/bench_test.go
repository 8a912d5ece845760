package inject_test

import (
	"encoding/json"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/pkg/patch"
)

// HugePod is 50 containers with 200 env vars each, the shape that made
// other injectors take seconds.
func HugePod() []byte {
	pod := corev1.Pod{}
	pod.APIVersion, pod.Kind = "v1", "Pod"
	pod.Name = "huge"
	pod.Annotations = map[string]string{inject.InjectAnnotation: "log-shipper"}
	for i := range 50 {
		c := corev1.Container{Name: fmt.Sprintf("c%d", i), Image: "registry.example.com/app:1.0.0"}
		for j := range 200 {
			c.Env = append(c.Env, corev1.EnvVar{Name: fmt.Sprintf("VAR_%d", j), Value: fmt.Sprintf("value-%d-%d", i, j)})
		}
		pod.Spec.Containers = append(pod.Spec.Containers, c)
	}
	raw, _ := json.Marshal(pod)
	return raw
}

func benchmarkInject(b *testing.B, raw []byte) {
	cat := testCatalog(b)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		pod := &corev1.Pod{}
		if err := json.Unmarshal(raw, pod); err != nil {
			b.Fatal(err)
		}
		res, err := inject.Pod(pod, nil, cat)
		if err != nil || res.Plan == nil {
			b.Fatalf("nothing injected: %v", err)
		}
		if _, err := patch.Marshal(patch.ForPod(pod, res.Plan)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeOnly is the floor: decoding the Pod, which every webhook does.
func benchmarkDecode(b *testing.B, raw []byte) {
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		pod := &corev1.Pod{}
		if err := json.Unmarshal(raw, pod); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTypicalPod(b *testing.B) {
	raw, _ := readCase(b, goldenDir+"/typical-replicaset-pod.yaml")
	b.Run("decode-only", func(b *testing.B) { benchmarkDecode(b, raw) })
	b.Run("decode-inject-patch", func(b *testing.B) { benchmarkInject(b, raw) })
}

func BenchmarkHugePod(b *testing.B) {
	raw := HugePod()
	b.Run("decode-only", func(b *testing.B) { benchmarkDecode(b, raw) })
	b.Run("decode-inject-patch", func(b *testing.B) { benchmarkInject(b, raw) })
}
