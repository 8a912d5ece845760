package workload

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/go-logr/logr"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/yaml"

	"github.com/podpatterns/sidecar-injector/pkg/admission"
	"github.com/podpatterns/sidecar-injector/pkg/admission/admissiontest"
	"github.com/podpatterns/sidecar-injector/pkg/catalog"
)

// The offline tool and the server give the same Pod, byte for byte, for
// every golden input of the engine.
func TestInjectMatchesTheServer(t *testing.T) {
	cat, h := server(t)
	compared := 0
	for in, raw := range goldenPods(t) {
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

// server is the default catalog and the webhook's handler serving it.
func server(t *testing.T) (*catalog.Catalog, http.Handler) {
	t.Helper()
	cat, err := catalog.Default()
	if err != nil {
		t.Fatal(err)
	}
	return cat, &admission.Handler{Catalog: func() *catalog.Catalog { return cat }, Log: logr.Discard()}
}

// goldenPods yields the engine's golden input Pods as JSON, by file.
func goldenPods(t *testing.T) func(func(string, []byte) bool) {
	t.Helper()
	inputs, _ := filepath.Glob("../inject/testdata/golden/*.yaml")
	return func(yield func(string, []byte) bool) {
		for _, in := range inputs {
			text, _ := os.ReadFile(in)
			raw, err := yaml.YAMLToJSON(text)
			if err != nil {
				t.Fatal(err)
			}
			if !yield(in, raw) {
				return
			}
		}
	}
}

func serve(t *testing.T, h http.Handler, raw []byte) ([]byte, bool) {
	t.Helper()
	review := admissiontest.Review("u", "CREATE", raw)
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

// The offline tool decodes as the API server does, so its answer is the
// server's: case-sensitive names, a null pod template metadata, and a Pod
// kind of another API group left alone.
func TestInjectDecodesLikeTheAPIServer(t *testing.T) {
	cat, h := server(t)

	capital := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","Annotations":{"sidecars.podpatterns.io/inject":"content-filler"}},"spec":{"containers":[{"name":"web","image":"nginx","Ports":[{"containerPort":80}]}]}}`)
	offline, err := Inject(capital, nil, cat)
	if err != nil {
		t.Fatal(err)
	}
	served, _ := serve(t, h, capital)
	if !bytes.Equal(offline.Out, served) || len(offline.Injected) != 0 {
		t.Errorf("capitalised members: offline injected %v, want the server's answer (nothing):\n%s\n%s", offline.Injected, offline.Out, served)
	}

	nullMeta := []byte(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},"spec":{"template":{"metadata":null,"spec":{"containers":[{"name":"web","image":"nginx"}]}}}}`)
	res, err := Inject(nullMeta, map[string]string{}, withDefault(t, "content-filler"))
	if err != nil {
		t.Fatalf("a pod template with null metadata: %v", err)
	}
	if len(res.Injected) != 1 || !bytes.Contains(res.Out, []byte(`"sidecars.podpatterns.io/status"`)) {
		t.Errorf("a pod template with null metadata: injected %v\n%s", res.Injected, res.Out)
	}

	foreign := []byte(`{"apiVersion":"example.com/v1","kind":"Pod","metadata":{"name":"x","annotations":{"sidecars.podpatterns.io/inject":"content-filler"}},"spec":{"containers":[{"name":"web"}]}}`)
	res, err = Inject(foreign, nil, cat)
	if err != nil || !bytes.Equal(res.Out, foreign) || len(res.Injected) != 0 {
		t.Errorf("a Pod of another API group: %v, injected %v", err, res.Injected)
	}
}

// withDefault is the default catalog with a policy defaulting name everywhere.
func withDefault(t *testing.T, name string) *catalog.Catalog {
	t.Helper()
	cat, err := catalog.Parse(
		catalog.Source{Name: "default.yaml", Data: catalog.DefaultYAML()},
		catalog.Source{Name: "policy.yaml", Data: []byte("apiVersion: sidecars.podpatterns.io/v1alpha1\nkind: Catalog\npolicies:\n- name: all\n  namespaceSelector: {}\n  defaults: [" + name + "]\n")},
	)
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// A ReplicationController's Pods get from the offline tool what the
// server gives them: every golden Pod, as an RC's template.
func TestReplicationControllerMatchesTheServer(t *testing.T) {
	cat, h := server(t)
	compared := 0
	for in, raw := range goldenPods(t) {
		var pod map[string]any
		if err := json.Unmarshal(raw, &pod); err != nil {
			t.Fatal(err)
		}
		template := map[string]any{"metadata": pod["metadata"], "spec": pod["spec"]}
		rc, _ := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "ReplicationController", "metadata": map[string]any{"name": "rc"}, "spec": map[string]any{"template": template}})
		offline, err := Inject(rc, nil, cat)
		templateJSON, _ := json.Marshal(template)
		served, denied := serve(t, h, templateJSON)
		if IsDenial(err) != denied {
			t.Errorf("%s: offline denial %v, server denial %v", in, err, denied)
			continue
		}
		if denied {
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		var got struct {
			Spec struct {
				Template any `json:"template"`
			} `json:"spec"`
		}
		var want any
		if err := json.Unmarshal(offline.Out, &got); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(served, &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.Spec.Template, want) {
			t.Errorf("%s: the RC's template differs from the served Pod:\n%s\n%s", in, offline.Out, served)
		}
		compared++
	}
	if compared < 20 {
		t.Errorf("compared only %d pods", compared)
	}
}
