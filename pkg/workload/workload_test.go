package workload

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-logr/logr"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/yaml"

	"github.com/podpatterns/sidecar-injector/pkg/admission"
	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/test/fixtures"
)

// The offline tool and the server give the same Pod, byte for byte, for
// every golden input of the engine.
func TestInjectMatchesTheServer(t *testing.T) {
	cat, err := catalog.Default()
	if err != nil {
		t.Fatal(err)
	}
	h := &admission.Handler{Catalog: func() *catalog.Catalog { return cat }, Log: logr.Discard()}
	inputs, _ := filepath.Glob("../inject/testdata/golden/*.yaml")
	compared := 0
	for _, in := range inputs {
		text, _ := os.ReadFile(in)
		raw, err := yaml.YAMLToJSON(text)
		if err != nil {
			t.Fatal(err)
		}
		offline, err := Inject(raw, nil, cat)
		served, denied := serve(t, h, raw)
		if IsDenial(err) != denied {
			t.Errorf("%s: offline denial %v, server denial %v", in, err, denied)
			continue
		}
		if err != nil && !IsDenial(err) {
			t.Fatalf("%s: %v", in, err)
		}
		if denied {
			continue
		}
		if !bytes.Equal(offline.Out, served) {
			t.Errorf("%s: offline and server results differ:\n%s\n%s", in, offline.Out, served)
		}
		compared++
	}
	if compared < 20 {
		t.Errorf("compared only %d pods", compared)
	}
}

func serve(t *testing.T, h http.Handler, raw []byte) ([]byte, bool) {
	t.Helper()
	review := fixtures.Review("u", "CREATE", raw)
	req := httptest.NewRequest(http.MethodPost, admission.Path, bytes.NewReader(review))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	out := &admissionv1.AdmissionReview{}
	if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
		t.Fatal(err)
	}
	if !out.Response.Allowed {
		return nil, true
	}
	if out.Response.Patch == nil {
		return raw, false
	}
	p, err := jsonpatch.DecodePatch(out.Response.Patch)
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Apply(raw)
	if err != nil {
		t.Fatal(err)
	}
	return res, false
}
