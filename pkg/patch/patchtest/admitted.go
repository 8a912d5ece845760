// Package patchtest admits Pods in tests as the webhook does: the
// engine's plan applied as the JSON Patch the API server applies.
package patchtest

import (
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/pkg/inject/injecttest"
	"github.com/podpatterns/sidecar-injector/pkg/patch"
)

// Admitted is pod as the webhook admits it with cat, for a namespace with
// nsLabels: the engine's plan applied as a JSON Patch, as the API server
// applies it. The test fails when nothing is injected.
func Admitted(t testing.TB, pod *corev1.Pod, nsLabels map[string]string, cat *catalog.Catalog) *corev1.Pod {
	t.Helper()
	return AdmittedWith(t, pod, nsLabels, cat, injecttest.Keys)
}

// AdmittedWith is Admitted by a webhook that signs with keys.
func AdmittedWith(t testing.TB, pod *corev1.Pod, nsLabels map[string]string, cat *catalog.Catalog, keys *inject.Keys) *corev1.Pod {
	t.Helper()
	res, err := inject.Pod(pod, nsLabels, cat, keys)
	if err != nil || res.Plan == nil {
		t.Fatalf("nothing injected: %v", err)
	}
	raw, _ := json.Marshal(pod) // API types always marshal
	out, err := patch.Apply(raw, patch.ForPod(pod, res.Plan))
	if err != nil {
		t.Fatal(err)
	}
	after := &corev1.Pod{}
	if err := json.Unmarshal(out, after); err != nil {
		t.Fatal(err)
	}
	return after
}
