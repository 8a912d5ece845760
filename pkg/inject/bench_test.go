package inject_test

import (
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/pkg/inject/injecttest"
	"github.com/podpatterns/sidecar-injector/pkg/patch"
	"github.com/podpatterns/sidecar-injector/pkg/patch/patchtest"
)

// benchmarkInject runs the engine and the patch. With decode, every
// iteration decodes the Pod first, as the webhook does; without, they run
// on one decoded Pod (Pod does not modify it).
func benchmarkInject(b *testing.B, raw []byte, decode bool) {
	cat := testCatalog(b)
	pod := &corev1.Pod{}
	if err := json.Unmarshal(raw, pod); err != nil {
		b.Fatal(err)
	}
	if decode {
		b.SetBytes(int64(len(raw)))
	}
	b.ReportAllocs()
	for b.Loop() {
		if decode {
			pod = &corev1.Pod{}
			if err := json.Unmarshal(raw, pod); err != nil {
				b.Fatal(err)
			}
		}
		res, err := inject.Pod(pod, nil, cat, injecttest.Keys)
		if err != nil || res.Plan == nil {
			b.Fatalf("nothing injected: %v", err)
		}
		if data, err := patch.Marshal(patch.ForPod(pod, res.Plan)); err != nil || len(data) == 0 {
			b.Fatal("no patch")
		}
	}
}

// benchmarkDecode is the floor: decoding the Pod, which every webhook does.
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
	raw, _ := injecttest.ReadCase(b, goldenDir+"/typical-replicaset-pod.yaml")
	b.Run("decode-only", func(b *testing.B) { benchmarkDecode(b, raw) })
	b.Run("decode-inject-patch", func(b *testing.B) { benchmarkInject(b, raw, true) })
	b.Run("inject-patch", func(b *testing.B) { benchmarkInject(b, raw, false) })
}

func BenchmarkHugePod(b *testing.B) {
	raw := injecttest.HugePod()
	b.Run("decode-only", func(b *testing.B) { benchmarkDecode(b, raw) })
	b.Run("decode-inject-patch", func(b *testing.B) { benchmarkInject(b, raw, true) })
	b.Run("inject-patch", func(b *testing.B) { benchmarkInject(b, raw, false) })
}

// BenchmarkReinvocation is the webhook called again on a Pod it has just
// injected: every entry verified (its MAC, the Pod holding what it
// lists, today's rendering) and nothing added. Compare with decode-only
// of the same run.
func BenchmarkReinvocation(b *testing.B) {
	typical, _ := injecttest.ReadCase(b, goldenDir+"/typical-replicaset-pod.yaml")
	for name, raw := range map[string][]byte{"typical": typical, "huge": injecttest.HugePod()} {
		pod := &corev1.Pod{}
		if err := json.Unmarshal(raw, pod); err != nil {
			b.Fatal(err)
		}
		injected, err := json.Marshal(patchtest.Admitted(b, pod, nil, testCatalog(b)))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name+"/decode-only", func(b *testing.B) { benchmarkDecode(b, injected) })
		b.Run(name+"/decode-reinvoke", func(b *testing.B) {
			cat := testCatalog(b)
			b.SetBytes(int64(len(injected)))
			b.ReportAllocs()
			for b.Loop() {
				pod := &corev1.Pod{}
				if err := json.Unmarshal(injected, pod); err != nil {
					b.Fatal(err)
				}
				if res, err := inject.Pod(pod, nil, cat, injecttest.Keys); err != nil || res.Plan != nil {
					b.Fatalf("a reinvocation changed the Pod: %v, %+v", err, res)
				}
			}
		})
	}
}
