package admission

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/yaml"

	"github.com/podpatterns/sidecar-injector/pkg/admission/admissiontest"
	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject/injecttest"
)

func newTestServer(t *testing.T, h *Handler) *httptest.Server {
	t.Helper()
	if h.Catalog == nil {
		c, err := catalog.Default()
		if err != nil {
			t.Fatal(err)
		}
		h.Catalog = func() *catalog.Catalog { return c }
	}
	h.Log = logr.Discard()
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// Review builds an AdmissionReview JSON for a Pod given as YAML.
func review(t *testing.T, uid, op, podYAML string) []byte {
	t.Helper()
	obj, err := yaml.YAMLToJSON([]byte(podYAML))
	if err != nil {
		t.Fatal(err)
	}
	return admissiontest.Review(uid, op, obj)
}

func post(t *testing.T, srv *httptest.Server, contentType string, body io.Reader) (int, *admissionv1.AdmissionReview) {
	t.Helper()
	resp, err := srv.Client().Post(srv.URL+Path, contentType, body)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := &admissionv1.AdmissionReview{}
	data, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(data, out); err != nil {
		t.Fatalf("answer is not an AdmissionReview (HTTP %d): %s", resp.StatusCode, data)
	}
	if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" || out.Response == nil {
		t.Fatalf("answer is not a v1 AdmissionReview with a response: %s", data)
	}
	return resp.StatusCode, out
}

const nginxPod = `
apiVersion: v1
kind: Pod
metadata:
  name: web
  annotations:
    sidecars.podpatterns.io/inject: content-filler
spec:
  containers:
  - name: nginx
    image: nginx:1.27
    ports:
    - containerPort: 80
`

// The handler's patch, applied to the raw request object, gives exactly
// the engine's golden output.
func TestInjectedPodMatchesGolden(t *testing.T) {
	srv := newTestServer(t, &Handler{Keys: injecttest.Keys})
	body := review(t, "uid-1", "CREATE", nginxPod)
	code, out := post(t, srv, "application/json", bytes.NewReader(body))
	if code != http.StatusOK || !out.Response.Allowed || out.Response.UID != "uid-1" {
		t.Fatalf("HTTP %d, response %+v", code, out.Response)
	}
	if out.Response.PatchType == nil || *out.Response.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("patch type %v", out.Response.PatchType)
	}
	p, err := jsonpatch.DecodePatch(out.Response.Patch)
	if err != nil {
		t.Fatal(err)
	}
	obj, _ := yaml.YAMLToJSON([]byte(nginxPod))
	got, err := p.Apply(obj)
	if err != nil {
		t.Fatal(err)
	}
	golden, err := os.ReadFile("../inject/testdata/golden/content-filler-nginx.yaml.injected")
	if err != nil {
		t.Fatal(err)
	}
	want, err := yaml.YAMLToJSON(golden) // comment lines are YAML comments
	if err != nil {
		t.Fatal(err)
	}
	gotYAML, _ := yaml.JSONToYAML(got)
	wantYAML, _ := yaml.JSONToYAML(want)
	if !bytes.Equal(gotYAML, wantYAML) {
		t.Errorf("served pod differs from the golden one:\n--- got\n%s\n--- want\n%s", gotYAML, wantYAML)
	}
}

func TestBadInputGetsAClearAnswer(t *testing.T) {
	srv := newTestServer(t, &Handler{MaxRequestBytes: 64 << 10})
	pod := review(t, "uid-7", "CREATE", nginxPod)
	for name, tc := range map[string]struct {
		contentType string
		body        []byte
		code        int
		uid         string
		message     string
	}{
		"an oversized review is denied, naming the limit": {
			"application/json", append(append([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","object":{"x":"`), bytes.Repeat([]byte("a"), 70<<10)...), []byte(`"}}}`)...),
			200, "u", "over the injector's limit of 65536 bytes"},
		"an oversized body that is no review is refused with 413": {
			"application/json", append(append([]byte(`{"request":{"object":{"x":"`), bytes.Repeat([]byte("a"), 70<<10)...), []byte(`"}}}`)...),
			413, "", "over the injector's limit of 65536 bytes"},
		"an oversized review's UID is read only from its start": {
			"application/json", append(append([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"object":{"x":"`), bytes.Repeat([]byte("a"), 70<<10)...), []byte(`"},"uid":"late"}}`)...),
			413, "", "over the injector's limit of 65536 bytes"},
		"broken JSON is refused with 400":                 {"application/json", []byte(`{"apiVersion": "admission.k8s.io/v1", "request": {`), 400, "", "decoding AdmissionReview"},
		"the wrong content type is refused with 415":      {"text/plain", pod, 415, "", `content type "text/plain" not supported`},
		"a review with no request is refused":             {"application/json", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), 400, "", "has no request"},
		"an unknown review version keeps the UID":         {"application/json", bytes.Replace(pod, []byte(`admission.k8s.io/v1"`), []byte(`admission.k8s.io/v1beta1"`), 1), 200, "uid-7", `unsupported kind "AdmissionReview", apiVersion "admission.k8s.io/v1beta1"`},
		"a non-Pod object keeps the UID":                  {"application/json", bytes.Replace(pod, []byte(`"kind":"Pod"`), []byte(`"kind":"Deployment"`), 1), 200, "uid-7", "this webhook handles Pods"},
		"an undecodable pod keeps the UID":                {"application/json", bytes.Replace(pod, []byte(`"containers":[`), []byte(`"containers":[7,`), 1), 200, "uid-7", "decoding Pod"},
		"a null container is refused":                     {"application/json", bytes.Replace(pod, []byte(`"containers":[`), []byte(`"containers":[null,`), 1), 200, "uid-7", "decoding Pod: spec.containers[0] has no name"},
		"a Pod without a spec is refused":                 {"application/json", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"kind":"Pod"},"operation":"CREATE","object":{"metadata":{}}}}`), 200, "u", "decoding Pod: the Pod has no spec"},
		"a malformed volume a template shares is refused": {"application/json", bytes.Replace(pod, []byte(`"containers":[`), []byte(`"volumes":[{"name":"shared-content","emptyDir":7}],"containers":[`), 1), 200, "uid-7", "decoding Pod: spec.volumes[0].emptyDir: a number, want an object"},
		"a duplicate member name is refused":              {"application/json", bytes.Replace(pod, []byte(`"containers":[`), []byte(`"restartPolicy":"Always","restartPolicy":"Never","containers":[`), 1), 200, "uid-7", `duplicate object member name "restartPolicy"`},
	} {
		t.Run(name, func(t *testing.T) {
			code, out := post(t, srv, tc.contentType, bytes.NewReader(tc.body))
			if code != tc.code {
				t.Errorf("HTTP %d, want %d", code, tc.code)
			}
			r := out.Response
			if r.Allowed || r.Result == nil || !strings.Contains(r.Result.Message, tc.message) {
				t.Errorf("response %+v, want refused with %q", r, tc.message)
			}
			if string(r.UID) != tc.uid {
				t.Errorf("UID %q, want %q", r.UID, tc.uid)
			}
		})
	}
}

func TestNonCreateIsAllowedUntouched(t *testing.T) {
	srv := newTestServer(t, &Handler{})
	_, out := post(t, srv, "application/json", bytes.NewReader(review(t, "u2", "UPDATE", nginxPod)))
	if !out.Response.Allowed || out.Response.Patch != nil || out.Response.UID != "u2" {
		t.Errorf("UPDATE: %+v", out.Response)
	}
}

// A content type with parameters or in another case gets the same patch
// as plain application/json (whose Pod TestInjectedPodMatchesGolden
// checks).
func TestContentTypeParametersAreAccepted(t *testing.T) {
	srv := newTestServer(t, &Handler{})
	body := review(t, "u5", "CREATE", nginxPod)
	_, plain := post(t, srv, "application/json", bytes.NewReader(body))
	if len(plain.Response.Patch) == 0 {
		t.Fatalf("no patch for application/json: %+v", plain.Response)
	}
	for _, ct := range []string{"application/json; charset=utf-8", "Application/JSON"} {
		code, out := post(t, srv, ct, bytes.NewReader(body))
		if code != http.StatusOK || !out.Response.Allowed || !bytes.Equal(out.Response.Patch, plain.Response.Patch) {
			t.Errorf("%s: HTTP %d, patch %s, want %s", ct, code, out.Response.Patch, plain.Response.Patch)
		}
	}
}

func TestDryRunGetsTheSameAnswer(t *testing.T) {
	srv := newTestServer(t, &Handler{})
	body := review(t, "u3", "CREATE", nginxPod)
	_, plain := post(t, srv, "application/json", bytes.NewReader(body))
	dry := bytes.Replace(body, []byte(`"uid":"u3"`), []byte(`"uid":"u3","dryRun":true`), 1)
	_, dryOut := post(t, srv, "application/json", bytes.NewReader(dry))
	if !bytes.Equal(plain.Response.Patch, dryOut.Response.Patch) || len(dryOut.Response.Patch) == 0 {
		t.Errorf("dry-run patch %s differs from %s", dryOut.Response.Patch, plain.Response.Patch)
	}
}

func TestDenialNamesTheChoices(t *testing.T) {
	srv := newTestServer(t, &Handler{})
	body := review(t, "u4", "CREATE", strings.Replace(nginxPod, "content-filler", "content-filer", 1))
	code, out := post(t, srv, "application/json", bytes.NewReader(body))
	r := out.Response
	if code != 200 || r.Allowed || r.Result.Code != 403 || r.UID != "u4" {
		t.Fatalf("HTTP %d %+v", code, r)
	}
	if want := `template "content-filer" not found in the catalog; have "ambassador", "content-filler", "log-shipper", "metrics-adapter"`; r.Result.Message != want {
		t.Errorf("message %q, want %q", r.Result.Message, want)
	}
}

func TestPanicIsRecovered(t *testing.T) {
	srv := newTestServer(t, &Handler{Catalog: func() *catalog.Catalog { panic("boom") }})
	code, out := post(t, srv, "application/json", bytes.NewReader(review(t, "u5", "CREATE", nginxPod)))
	if code != 200 || out.Response.Allowed || out.Response.UID != "u5" || !strings.Contains(out.Response.Result.Message, "boom") {
		t.Errorf("HTTP %d %+v", code, out.Response)
	}
	// and the server still answers
	_, again := post(t, srv, "application/json", bytes.NewReader(review(t, "u6", "UPDATE", nginxPod)))
	if !again.Response.Allowed {
		t.Error("server broken after a panic")
	}
}

// Many requests at once share the catalog's rendered content; each must
// get the same answer as a request alone (run with -race to check the
// sharing).
func TestConcurrentRequestsShareNothingMutable(t *testing.T) {
	srv := newTestServer(t, &Handler{})
	appUser := strings.Replace(nginxPod, "content-filler", "log-shipper, content-filler", 1) + "    securityContext: {runAsUser: 1000}\n"
	bodies := [][]byte{review(t, "a", "CREATE", nginxPod), review(t, "b", "CREATE", appUser)}
	want := make([][]byte, len(bodies))
	for i, b := range bodies {
		_, out := post(t, srv, "application/json", bytes.NewReader(b))
		want[i] = out.Response.Patch
	}
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			for n := range 40 {
				i := (g + n) % len(bodies)
				resp, err := srv.Client().Post(srv.URL+Path, "application/json", bytes.NewReader(bodies[i]))
				if err != nil {
					errs <- err
					return
				}
				out := &admissionv1.AdmissionReview{}
				err = json.NewDecoder(resp.Body).Decode(out)
				resp.Body.Close()
				if err != nil || !bytes.Equal(out.Response.Patch, want[i]) {
					errs <- fmt.Errorf("request %d of goroutine %d: patch differs from the lone answer (%v)", n, g, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
