// Package admissiontest builds AdmissionReviews as the API server sends
// them, for the tests and benchmarks of the handler, the server, the
// offline tools and the image.
package admissiontest

import "encoding/json"

// Review wraps a Pod's JSON in an admission.k8s.io/v1 AdmissionReview for
// the given operation, as the API server sends it.
func Review(uid, operation string, pod []byte) []byte {
	b, err := json.Marshal(map[string]any{
		"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
		"request": map[string]any{
			"uid": uid, "operation": operation, "namespace": "default",
			"kind":     map[string]string{"group": "", "version": "v1", "kind": "Pod"},
			"resource": map[string]string{"group": "", "version": "v1", "resource": "pods"},
			"userInfo": map[string]any{"username": "alice"},
			"object":   json.RawMessage(pod),
		},
	})
	if err != nil {
		panic(err) // pod is not JSON: a test defect
	}
	return b
}
