package admission

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podpatterns/sidecar-injector/pkg/admission/admissiontest"
	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject/injecttest"
)

// serveDirect calls the handler in-process and decodes its answer.
func serveDirect(t *testing.T, h http.Handler, req *http.Request) (int, *admissionv1.AdmissionResponse) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	out := &admissionv1.AdmissionReview{}
	if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil || out.Response == nil {
		t.Fatalf("HTTP %d, not an AdmissionReview: %v: %s", rec.Code, err, rec.Body.Bytes())
	}
	return rec.Code, out.Response
}

func testHandler(t *testing.T) *Handler {
	t.Helper()
	c, err := catalog.Default()
	if err != nil {
		t.Fatal(err)
	}
	return &Handler{Catalog: func() *catalog.Catalog { return c }, Log: logr.Discard()}
}

// unread fails the test if the handler reads the body.
type unread struct{ t *testing.T }

func (u unread) Read([]byte) (int, error) {
	u.t.Error("the body was read")
	return 0, io.EOF
}

// endless is a review that never ends; it counts what is read of it.
type endless struct {
	start []byte
	read  int
}

func (e *endless) Read(p []byte) (int, error) {
	n := copy(p, e.start[min(e.read, len(e.start)):])
	for i := n; i < len(p); i++ {
		p[i] = ' '
	}
	e.read += len(p)
	return len(p), nil
}

// A review whose Content-Length is over the limit is denied after reading
// only its start, where the UID is: the API server shows the person the
// limit, not a bare 413.
func TestAnOversizedContentLengthIsDeniedBeforeReading(t *testing.T) {
	h := testHandler(t)
	body := &endless{start: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-1",`)}
	req := httptest.NewRequest(http.MethodPost, Path, body)
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = DefaultMaxRequestBytes + 1
	code, r := serveDirect(t, h, req)
	if code != http.StatusOK || r.Allowed || r.UID != "u-1" || r.Result.Code != http.StatusRequestEntityTooLarge || !strings.Contains(r.Result.Message, "over the injector's limit of 6291456 bytes") {
		t.Errorf("HTTP %d %+v, want a denial with code 413 naming the limit", code, r)
	}
	if body.read > 8<<10 {
		t.Errorf("%d bytes read of an oversized body", body.read)
	}
}

// A large body that does not fit the in-flight budget is refused at once,
// while a typical review is still served.
func TestLargeBodiesCannotCrowdOutReviews(t *testing.T) {
	h := testHandler(t)
	h.MaxBytesInFlight = 1 << 20
	// A large body that arrives slowly holds most of the budget.
	pr, pw := io.Pipe()
	defer pw.Close()
	slow := httptest.NewRequest(http.MethodPost, Path, pr)
	slow.Header.Set("Content-Type", "application/json")
	slow.ContentLength = 900 << 10
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.ServeHTTP(httptest.NewRecorder(), slow)
	}()
	if _, err := pw.Write([]byte(`{"apiVersion":`)); err != nil { // the handler is reading now
		t.Fatal(err)
	}

	large := httptest.NewRequest(http.MethodPost, Path, unread{t})
	large.Header.Set("Content-Type", "application/json")
	large.ContentLength = 400 << 10
	start := time.Now()
	code, r := serveDirect(t, h, large)
	if code != http.StatusServiceUnavailable || r.Allowed || !strings.Contains(r.Result.Message, "retry later") {
		t.Errorf("second large body: HTTP %d %+v, want 503", code, r)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("refusing took %s", d)
	}

	typical := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(typicalReview(t)))
	typical.Header.Set("Content-Type", "application/json")
	code, r = serveDirect(t, h, typical)
	if code != http.StatusOK || !r.Allowed || r.Patch == nil {
		t.Errorf("typical review while the budget is spent: HTTP %d %+v", code, r)
	}
	pw.CloseWithError(errors.New("client gone"))
	<-done
	if n := h.inFlight.Load(); n != 0 {
		t.Errorf("%d bytes still counted in flight after every request ended", n)
	}
}

// When a namespace's labels cannot be read the answer is an HTTP error,
// so the webhook's failurePolicy decides; never "no policy applies".
func TestNamespaceLookupFailureFailsClosed(t *testing.T) {
	h := testHandler(t)
	var gotCtx context.Context
	h.Namespaces = NamespaceLabelsFunc(func(ctx context.Context, ns string) (map[string]string, error) {
		gotCtx = ctx
		return nil, errors.New("the API server is unreachable")
	})
	req := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(typicalReview(t)))
	req.Header.Set("Content-Type", "application/json")
	code, r := serveDirect(t, h, req)
	if code != http.StatusServiceUnavailable || r.Allowed || r.Patch != nil || !strings.Contains(r.Result.Message, "unreachable") {
		t.Errorf("HTTP %d %+v, want a 503 error", code, r)
	}
	if gotCtx != req.Context() {
		t.Error("the lookup did not get the request's context")
	}
}

// What a sender writes comes back briefly or not at all: a huge UID is
// not echoed, a huge kind or value is quoted in part, and each such
// request counts as the client's fault (invalid), never as the webhook's
// error that pages someone. The happy case: a real review's UID is
// echoed.
func TestHostileReviewsAreAnsweredBriefly(t *testing.T) {
	huge := strings.Repeat("x", 5<<20)
	base := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"%s","kind":{"group":"","version":"v1","kind":"%s"},"operation":"CREATE","object":{"metadata":{"annotations":{"sidecars.podpatterns.io/inject":"%s"}},"spec":{"containers":[{"name":"app","image":"app:1"}]}}}}`
	for name, c := range map[string]struct {
		uid, kind, inject string
		wantUID           string
		outcome           Outcome
	}{
		"a real review":                  {"u-1", "Pod", "content-filler", "u-1", Injected},
		"a 5 MB uid and a wrong kind":    {huge, "Deployment", "content-filler", "", Invalid},
		"a 5 MB kind":                    {"u-2", huge, "content-filler", "u-2", Invalid},
		"a 5 MB template name is denied": {"u-3", "Pod", huge, "u-3", Denied},
	} {
		t.Run(name, func(t *testing.T) {
			h := testHandler(t)
			reg := prometheus.NewRegistry()
			h.Metrics = NewMetrics(reg)
			body := fmt.Sprintf(base, c.uid, c.kind, c.inject)
			req := httptest.NewRequest(http.MethodPost, Path, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Body.Len() > 16<<10 {
				t.Errorf("a %d-byte review got a %d-byte answer", len(body), rec.Body.Len())
			}
			out := &admissionv1.AdmissionReview{}
			if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil || out.Response == nil {
				t.Fatalf("not an AdmissionReview: %v", err)
			}
			if string(out.Response.UID) != c.wantUID {
				t.Errorf("uid %.40q, want %q", out.Response.UID, c.wantUID)
			}
			if got := testutil.ToFloat64(h.Metrics.Requests.WithLabelValues(string(c.outcome))); got != 1 {
				t.Errorf("outcome %s counted %v times, want 1", c.outcome, got)
			}
		})
	}
}

// A review is charged for what decoding it may cost, not for its bytes:
// `[{},{},...]` is refused after a token count, before any of it is
// decoded, and a body that fits the count but not the budget waits its
// turn. The happy case: the huge Pod of 50 containers with 200 env vars
// each is decoded and injected.
func TestDecodeAmplificationIsRefusedBeforeDecoding(t *testing.T) {
	emptyObjects := func(field string, bytes int) []byte {
		list := strings.Repeat("{},", bytes/3)
		return []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE","object":{"metadata":{},"spec":{"containers":[{"name":"app","image":"app:1"}],"` + field + `":[` + list + `{}]}}}}`)
	}
	for name, c := range map[string]struct {
		body    []byte
		code    int
		message string
	}{
		"5.85 MB of empty init containers":    {emptyObjects("initContainers", 5_850_000), http.StatusOK, "more than 262144 JSON objects and arrays"},
		"3 MB of empty tolerations":           {emptyObjects("tolerations", 3_000_000), http.StatusOK, "more than 262144 JSON objects and arrays"},
		"1 MB of empty managedFields":         {bytes.Replace(emptyObjects("tolerations", 3), []byte(`"metadata":{}`), []byte(`"metadata":{"managedFields":[`+strings.Repeat("{},", 330_000)+`{}]}`), 1), http.StatusOK, "more than 262144 JSON objects and arrays"},
		"a nameless init container":           {emptyObjects("initContainers", 3), http.StatusOK, "spec.initContainers[0] has no name"},
		"the huge Pod":                        {admissiontest.Review("u", "CREATE", injecttest.HugePod()), http.StatusOK, ""},
		"the huge Pod with its managedFields": {admissiontest.Review("u", "CREATE", withManagedFields(t, injecttest.HugePod())), http.StatusOK, ""},
	} {
		t.Run(name, func(t *testing.T) {
			h := testHandler(t)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			req := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(c.body))
			req.Header.Set("Content-Type", "application/json")
			code, r := serveDirect(t, h, req)
			runtime.ReadMemStats(&after)
			if code != c.code {
				t.Errorf("HTTP %d, want %d: %+v", code, c.code, r.Result)
			}
			if c.message == "" {
				if !r.Allowed || r.Patch == nil {
					t.Errorf("not injected: %+v", r.Result)
				}
			} else if r.Allowed || !strings.Contains(r.Result.Message, c.message) {
				t.Errorf("answer %+v, want refused with %q", r.Result, c.message)
			}
			// What the request allocated: its body, read and buffered,
			// and a bounded decode; never a kilobyte per byte of body.
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
				t.Errorf("the request allocated %d MiB", alloc>>20)
			}
		})
	}
}

// While one large review holds the budget, another that needs it too is
// answered at once with 503, and an ordinary review is served.
func TestTheDecodeBudgetIsShared(t *testing.T) {
	h := testHandler(t)
	h.MaxBytesInFlight = 10 << 20
	body := func(objects int) *http.Request {
		list := strings.Repeat(`{"key":"k"},`, objects)
		req := httptest.NewRequest(http.MethodPost, Path, strings.NewReader(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE","object":{"metadata":{},"spec":{"containers":[{"name":"app","image":"app:1"}],"tolerations":[`+list+`{}]}}}}`))
		req.Header.Set("Content-Type", "application/json")
		return req
	}
	held := &budgetReader{h: h}
	if !held.charge(8 << 20) { // another review decoding now
		t.Fatal("the budget is spent already")
	}
	defer held.release()
	if code, r := serveDirect(t, h, body(4000)); code != http.StatusServiceUnavailable || r.Allowed {
		t.Errorf("a review needing 3.5 MiB with 2 left: HTTP %d %+v, want 503", code, r.Result)
	}
	if code, r := serveDirect(t, h, body(100)); code != http.StatusOK || !r.Allowed {
		t.Errorf("an ordinary review: HTTP %d %+v, want it served", code, r.Result)
	}
}

// A request whose caller has given up is not worked on: no engine, no
// patch, counted as the client's (invalid), never as an injection.
func TestAGoneCallerStopsTheWork(t *testing.T) {
	h := testHandler(t)
	h.Metrics = NewMetrics(prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, Path, bytes.NewReader(review(t, "u", "CREATE", nginxPod)))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || testutil.ToFloat64(h.Metrics.Requests.WithLabelValues(string(Invalid))) != 1 || testutil.ToFloat64(h.Metrics.Requests.WithLabelValues(string(Injected))) != 0 {
		t.Errorf("HTTP %d; want 503, counted invalid and not injected", rec.Code)
	}
}

// withManagedFields adds the managedFields kube-apiserver sends with a
// Pod created by kubectl: an entry per manager whose fieldsV1 holds four
// to five objects per env var.
func withManagedFields(t *testing.T, raw []byte) []byte {
	t.Helper()
	pod := &corev1.Pod{}
	if err := json.Unmarshal(raw, pod); err != nil {
		t.Fatal(err)
	}
	containers := map[string]any{}
	for _, c := range pod.Spec.Containers {
		env := map[string]any{}
		for _, e := range c.Env {
			env[fmt.Sprintf(`k:{"name":%q}`, e.Name)] = map[string]any{".": map[string]any{}, "f:name": map[string]any{}, "f:value": map[string]any{}}
		}
		containers[fmt.Sprintf(`k:{"name":%q}`, c.Name)] = map[string]any{".": map[string]any{}, "f:env": env, "f:image": map[string]any{}, "f:name": map[string]any{}}
	}
	fields, err := json.Marshal(map[string]any{"f:spec": map[string]any{"f:containers": containers}})
	if err != nil {
		t.Fatal(err)
	}
	pod.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: fields}}}
	out, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
