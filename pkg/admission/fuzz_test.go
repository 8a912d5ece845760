package admission

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-logr/logr"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
)

// FuzzReview sends arbitrary bodies to the handler. Whatever comes in, the
// answer is a v1 AdmissionReview, and an allowed answer's patch applies to
// the object that was sent. Run longer with
//
//	go test ./pkg/admission -run XXX -fuzz FuzzReview -fuzztime 60s -fuzzminimizetime 1x
//
// (minimizing each new 2 KiB input under coverage instrumentation takes
// minutes, during which the fuzzer reports no executions.)
func FuzzReview(f *testing.F) {
	typical := typicalReview(f)
	f.Add(typical)
	f.Add(bytes.Replace(typical, []byte(`"log-shipper"`), []byte(`"log-shipper,ambassador"`), 1))
	f.Add(bytes.Replace(typical, []byte(`"name":"checkout"`), []byte(`"name":"checkout","name":"checkout"`), 1))
	f.Add(bytes.Replace(typical, []byte(`"containers":[`), []byte(`"containers":[null,`), 1))
	f.Add(bytes.Replace(typical, []byte(`"annotations":{`), []byte(`"annotations":{"sidecars.podpatterns.io/status":"{\"templates\":[{\"name\":\"log-shipper\",\"hash\":\"x\"}]}",`), 1))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"kind":"Pod","version":"v1"},"operation":"CREATE","object":{}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{"kind":"Pod"},"object":{"metadata":{"annotations":{"sidecars.podpatterns.io/inject":"log-shipper"}}},"operation":"CREATE"}}`))
	f.Add([]byte("{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{\"uid\":\"u\",\"object\":{\"metadata\":{\"annotations\":{\"sidecars.podpatterns.io/inject\":\"\xff\"}}}}}")) // invalid UTF-8
	c, err := catalog.Default()
	if err != nil {
		f.Fatal(err)
	}
	h := &Handler{Catalog: func() *catalog.Catalog { return c }, Log: logr.Discard(),
		Namespaces: NamespaceLabelsFunc(func(context.Context, string) (map[string]string, error) { return nil, nil })}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		out := &admissionv1.AdmissionReview{}
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil || out.Response == nil || out.Kind != "AdmissionReview" {
			t.Fatalf("HTTP %d, answer is not an AdmissionReview: %v: %s", rec.Code, err, rec.Body.Bytes())
		}
		if out.Response.Result != nil && out.Response.Result.Code >= 500 {
			t.Fatalf("internal error: %s", out.Response.Result.Message)
		}
		if !out.Response.Allowed || out.Response.Patch == nil {
			return
		}
		var in admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &in); err != nil {
			t.Fatalf("a patch for a body that does not decode: %v", err)
		}
		p, err := jsonpatch.DecodePatch(out.Response.Patch)
		if err != nil {
			t.Fatalf("the patch does not decode: %v\npatch: %s", err, out.Response.Patch)
		}
		if _, err := p.Apply(in.Request.Object.Raw); err != nil {
			t.Fatalf("the patch does not apply: %v\npatch: %s", err, out.Response.Patch)
		}
	})
}
