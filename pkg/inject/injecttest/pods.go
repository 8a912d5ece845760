// Package injecttest builds the Pods that the engine's, the handler's
// and the offline tools' tests and benchmarks share.
package injecttest

import (
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
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
