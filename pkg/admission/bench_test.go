package admission

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/podpatterns/sidecar-injector/pkg/admission/admissiontest"
	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject/injecttest"
)

// typicalReview is the committed sample, a ReplicaSet-created Pod asking
// for log-shipper, compacted as the API server sends it.
func typicalReview(tb testing.TB) []byte { return compacted(tb, "review.json") }

// apiserverReview is what kube-apiserver v1.37 sent for test/apiload's
// Pod, managed fields and defaults included.
func apiserverReview(tb testing.TB) []byte { return compacted(tb, "review-apiserver.json") }

func compacted(tb testing.TB, name string) []byte {
	data, err := os.ReadFile("../../test/testdata/" + name)
	if err != nil {
		tb.Fatal(err)
	}
	var b bytes.Buffer
	if err := json.Compact(&b, data); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

// hugeReview is 50 containers with 200 env vars each.
func hugeReview() []byte { return admissiontest.Review("u", "CREATE", injecttest.HugePod()) }

// floor reads the body and answers a fixed "allowed": what any webhook
// must at least do.
var floor = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"","allowed":true}}`))
})

func benchHandler(b *testing.B, h http.Handler, body []byte) {
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatal(rec.Body.String())
		}
	}
}

// decodeOnly decodes the review and its Pod in one pass, the full Pod as
// every webhook built on the API types does.
func decodeOnly(b *testing.B, body []byte) {
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var review struct {
			Request *struct {
				admissionv1.AdmissionRequest
				Object *corev1.Pod `json:"object"`
			} `json:"request"`
		}
		if err := json.Unmarshal(body, &review); err != nil || review.Request.Object == nil {
			b.Fatal(err)
		}
	}
}

// decodeV2 is decodeOnly with encoding/json v2 (go-json-experiment/json),
// the decoder the handler uses.
func decodeV2(b *testing.B, body []byte) {
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var review podReview
		if err := jsonv2.Unmarshal(body, &review); err != nil || review.Request.Object == nil {
			b.Fatal(err)
		}
	}
}

func injector(b *testing.B) *Handler {
	c, err := catalog.Default()
	if err != nil {
		b.Fatal(err)
	}
	return &Handler{Catalog: func() *catalog.Catalog { return c }, Log: logr.Discard()}
}

// Compare each "handler" figure with the "floor", "decode" (encoding/json)
// and "decode-v2" figures of the same run; docs/performance.md has the
// ratios.
func BenchmarkReview(b *testing.B) {
	for name, body := range map[string][]byte{"typical": typicalReview(b), "apiserver": apiserverReview(b), "huge": hugeReview()} {
		b.Run(name+"/floor", func(b *testing.B) { benchHandler(b, floor, body) })
		b.Run(name+"/decode", func(b *testing.B) { decodeOnly(b, body) })
		b.Run(name+"/decode-v2", func(b *testing.B) { decodeV2(b, body) })
		b.Run(name+"/handler", func(b *testing.B) { benchHandler(b, injector(b), body) })
	}
}
