// Package injecttest builds the Pods that the engine's, the handler's
// and the offline tools' tests and benchmarks share.
package injecttest

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/podpatterns/sidecar-injector/pkg/inject"
)

// HugePod is the JSON of a Pod of 50 containers with 200 env vars each
// asking for log-shipper: the shape that made other injectors take seconds.
func HugePod() []byte {
	pod := corev1.Pod{}
	pod.APIVersion, pod.Kind, pod.Name = "v1", "Pod", "huge"
	pod.Annotations = map[string]string{"sidecars.podpatterns.io/inject": "log-shipper"}
	for i := range 50 {
		c := corev1.Container{Name: fmt.Sprintf("c%d", i), Image: "registry.example.com/app:1.0.0"}
		for j := range 200 {
			c.Env = append(c.Env, corev1.EnvVar{Name: fmt.Sprintf("VAR_%d", j), Value: fmt.Sprintf("value-%d-%d", i, j)})
		}
		pod.Spec.Containers = append(pod.Spec.Containers, c)
	}
	raw, _ := json.Marshal(pod) // API types always marshal
	return raw
}

// ReadCase reads a golden input Pod of the engine and its namespace
// labels, given on a first line "# namespace-labels: k=v,k2=v2".
func ReadCase(t testing.TB, path string) ([]byte, map[string]string) {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{}
	if first, _, _ := strings.Cut(string(text), "\n"); strings.HasPrefix(first, "# namespace-labels:") {
		for _, kv := range strings.Split(strings.TrimSpace(strings.TrimPrefix(first, "# namespace-labels:")), ",") {
			k, v, _ := strings.Cut(kv, "=")
			labels[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	raw, err := yaml.YAMLToJSON(text)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return raw, labels
}

// Keys are the status keys of the tests: the webhook's, as Admitted
// signs with them, on a clock stopped at SignedAt.
var Keys = KeysAt(SignedAt)

// SignedAt is when Keys sign.
var SignedAt = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// KeysAt are Keys on a clock stopped at now.
func KeysAt(now time.Time) *inject.Keys {
	k, err := inject.NewKeys([]byte("the status key of the tests, 32 bytes and more"))
	if err != nil {
		panic(err)
	}
	k.Now = func() time.Time { return now }
	return k
}
