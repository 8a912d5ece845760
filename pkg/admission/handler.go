package admission

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/pkg/patch"
)

// DefaultMaxRequestBytes caps a request body. The API server refuses
// objects over 3 MiB, so a review is well within 6 MiB.
const DefaultMaxRequestBytes = 6 << 20

// Path is where the API server sends Pod reviews.
const Path = "/mutate-pods"

// NamespaceLabels returns a namespace's labels, from a cache.
type NamespaceLabels interface {
	Labels(namespace string) map[string]string
}

// NamespaceLabelsFunc adapts a function to NamespaceLabels.
type NamespaceLabelsFunc func(string) map[string]string

// Labels calls f.
func (f NamespaceLabelsFunc) Labels(ns string) map[string]string { return f(ns) }

var _ NamespaceLabels = NamespaceLabelsFunc(nil)

// Handler answers AdmissionReviews for Pods on Path.
type Handler struct {
	// Catalog returns the catalog in force; called once per request.
	Catalog func() *catalog.Catalog
	// Namespaces gives namespace labels for policies; nil means none.
	Namespaces NamespaceLabels
	// Metrics, when set, count each request once.
	Metrics *Metrics
	// Log receives one debug line per request and every error.
	Log logr.Logger
	// MaxRequestBytes defaults to DefaultMaxRequestBytes if zero.
	MaxRequestBytes int64
}

// Request bodies, patches and responses are read and written through
// pooled buffers: a typical review is 2 to 5 KiB, its answer 2 to 3 KiB.
var (
	bufPool  = sync.Pool{New: func() any { return new(bytes.Buffer) }}
	respPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}
)

// jsonContentType is the answer's Content-Type header value, shared by
// every answer.
var jsonContentType = []string{"application/json"}

// getBuf returns an empty pooled buffer.
func getBuf() *[]byte {
	b := respPool.Get().(*[]byte)
	*b = (*b)[:0]
	return b
}

// putBuf pools b unless a huge review grew it.
func putBuf(b *[]byte) {
	if cap(*b) <= 64<<10 {
		respPool.Put(b)
	}
}

// ServeHTTP implements http.Handler. It always answers with an
// AdmissionReview, carrying the request UID when there is one.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if h.Metrics != nil {
		h.Metrics.InFlight.Inc()
		defer h.Metrics.InFlight.Dec()
	}
	a := &answer{}
	defer func() {
		if p := recover(); p != nil {
			a.fail(http.StatusInternalServerError, fmt.Errorf("internal error: %v", p))
			h.Log.Error(fmt.Errorf("%v", p), "Panic while handling an admission request", "uid", a.uid)
		}
		h.finish(w, a, start)
	}()
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer bufPool.Put(buf)
	h.serve(r, buf, a)
}

func (h *Handler) serve(r *http.Request, buf *bytes.Buffer, a *answer) {
	if r.Method != http.MethodPost {
		a.fail(http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed; send POST", r.Method))
		return
	}
	// The API server sends exactly "application/json"; anything else is
	// parsed for parameters such as a charset.
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		if mt, _, _ := mime.ParseMediaType(ct); mt != "application/json" {
			a.fail(http.StatusUnsupportedMediaType, fmt.Errorf("content type %q not supported; send application/json", ct))
			return
		}
	}
	limit := h.MaxRequestBytes
	if limit <= 0 {
		limit = DefaultMaxRequestBytes
	}
	if _, err := buf.ReadFrom(io.LimitReader(r.Body, limit+1)); err != nil {
		a.fail(http.StatusBadRequest, fmt.Errorf("reading request body: %w", err))
		return
	}
	if int64(buf.Len()) > limit {
		a.fail(http.StatusRequestEntityTooLarge, fmt.Errorf("request body over the limit of %d bytes", limit))
		return
	}
	req, code, err := decode(buf.Bytes(), a)
	if err != nil {
		a.fail(code, err)
		return
	}
	if req.Operation != admissionv1.Create {
		a.skip()
		return
	}
	if req.Object == nil {
		a.fail(http.StatusBadRequest, errors.New("CREATE request has no object"))
		return
	}
	pod, err := req.Object.pod()
	if err != nil {
		a.fail(http.StatusBadRequest, fmt.Errorf("decoding Pod: %w", err))
		return
	}
	a.pod = pod
	h.admit(req, pod, a)
}

func (h *Handler) admit(req *podRequest, pod *corev1.Pod, a *answer) {
	var labels map[string]string
	if h.Namespaces != nil {
		labels = h.Namespaces.Labels(req.Namespace)
	}
	res, err := inject.PodNamedVolumes(pod, req.Object.volume, labels, h.Catalog())
	if err != nil {
		a.refuse(err)
		return
	}
	a.resp.Allowed = true
	a.resp.Warnings = res.Warnings
	if res.Plan == nil {
		a.outcome = Skipped
		return
	}
	a.patch = getBuf()
	*a.patch = patch.AppendPod(*a.patch, pod, res.Plan)
	a.resp.Patch, a.resp.PatchType = *a.patch, &jsonPatch
	a.outcome = Injected
	a.injected = res.Injected
}

// jsonPatch is every answer's patch type; answers only read it.
var jsonPatch = admissionv1.PatchTypeJSONPatch

// answer is the response being built for one request.
type answer struct {
	uid      types.UID
	req      *podRequest
	pod      *corev1.Pod
	resp     admissionv1.AdmissionResponse
	outcome  Outcome
	injected []string
	patch    *[]byte // pooled; resp.Patch until the answer is written
	status   int
	err      error
	length   [1]string // the Content-Length header's value
}

func (a *answer) skip() {
	a.resp.Allowed = true
	a.outcome = Skipped
}

// fail answers a fault. Faults that are not the API server's (a panic, an
// encoding error) are 500; malformed requests are 4xx. The review itself
// goes back with HTTP 200 when it could be read, as the API server expects.
func (a *answer) fail(code int, err error) {
	a.outcome, a.err = Error, err
	a.resp.Allowed = false
	a.resp.Patch, a.resp.PatchType, a.resp.Warnings = nil, nil, nil
	a.resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: int32(code), Message: err.Error()}
	if a.req == nil && code != http.StatusInternalServerError {
		a.status = code
	}
}

// refuse answers an error from the engine: a denial, a part of the Pod
// that turned out malformed, or a fault of the webhook's own.
func (a *answer) refuse(err error) {
	var denial *inject.Denial
	var malformed malformedPod
	switch {
	case errors.As(err, &denial):
		a.outcome = Denied
		a.resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden, Message: denial.Message}
	case errors.As(err, &malformed):
		a.fail(http.StatusBadRequest, fmt.Errorf("decoding Pod: %w", err))
	default:
		a.fail(http.StatusInternalServerError, err)
	}
}

func (h *Handler) finish(w http.ResponseWriter, a *answer, start time.Time) {
	a.resp.UID = a.uid
	out := getBuf()
	*out = appendReview(*out, &a.resp)
	if a.patch != nil {
		putBuf(a.patch)
	}
	// The keys are canonical already, and the value slices are net/http's
	// to copy, never to change. With the length known, net/http sends the
	// answer in one write instead of switching to chunked encoding past
	// 2 KiB.
	header := w.Header()
	header["Content-Type"] = jsonContentType
	a.length[0] = strconv.Itoa(len(*out))
	header["Content-Length"] = a.length[:]
	if a.status != 0 {
		w.WriteHeader(a.status)
	}
	_, _ = w.Write(*out)
	putBuf(out)
	elapsed := time.Since(start)
	if h.Metrics != nil {
		h.Metrics.count(a.outcome)
		h.Metrics.Duration.Observe(elapsed.Seconds())
		for _, t := range a.injected {
			h.Metrics.injected(t)
		}
	}
	h.logRequest(a, elapsed)
}

func (h *Handler) logRequest(a *answer, elapsed time.Duration) {
	if a.outcome != Error && !h.Log.V(1).Enabled() {
		return
	}
	kv := []any{"uid", a.uid, "outcome", a.outcome, "duration", elapsed}
	if a.req != nil {
		kv = append(kv, "namespace", a.req.Namespace, "user", a.req.UserInfo.Username)
		if a.req.DryRun != nil && *a.req.DryRun {
			kv = append(kv, "dryRun", true)
		}
	}
	if a.pod != nil {
		name := a.pod.Name
		if name == "" {
			name = a.pod.GenerateName
		}
		kv = append(kv, "pod", name)
	}
	if len(a.injected) > 0 {
		kv = append(kv, "templates", strings.Join(a.injected, ","))
	}
	switch a.outcome {
	case Error:
		h.Log.Error(a.err, "Admission request failed", kv...)
	case Denied:
		h.Log.V(1).Info("Admission request", append(kv, "reason", a.resp.Result.Message)...)
	default:
		h.Log.V(1).Info("Admission request", kv...)
	}
}
