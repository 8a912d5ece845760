package admission

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
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

// Path is where the API server sends Pod reviews.
const Path = "/mutate-pods"

// NamespaceLabels returns a namespace's labels. An error means they could
// not be read, and the request fails rather than go on without them.
type NamespaceLabels interface {
	Labels(ctx context.Context, namespace string) (map[string]string, error)
}

// NamespaceLabelsFunc adapts a function to NamespaceLabels.
type NamespaceLabelsFunc func(context.Context, string) (map[string]string, error)

// Labels calls f.
func (f NamespaceLabelsFunc) Labels(ctx context.Context, ns string) (map[string]string, error) {
	return f(ctx, ns)
}

var _ NamespaceLabels = NamespaceLabelsFunc(nil)

// ResourceRules returns a namespace's LimitRanges and ResourceQuotas. An
// error means they could not be read, and the request fails.
type ResourceRules interface {
	ResourceRules(ctx context.Context, namespace string) (inject.Rules, error)
}

// Handler answers AdmissionReviews for Pods on Path.
type Handler struct {
	// Catalog returns the catalog in force; called once per request.
	Catalog func() *catalog.Catalog
	// Keys sign the status entries of what is injected and verify those
	// a Pod arrives with.
	Keys *inject.Keys
	// Namespaces gives namespace labels for policies; nil means every
	// namespace is unlabelled (no cluster at all, as in `make run`).
	Namespaces NamespaceLabels
	// Rules gives the namespace's LimitRanges and ResourceQuotas, which
	// what is injected is checked against; nil means none.
	Rules ResourceRules
	// Metrics, when set, count each request once.
	Metrics *Metrics
	// Log receives one debug line per request and every error.
	Log logr.Logger
	// MaxRequestBytes defaults to DefaultMaxRequestBytes if zero.
	MaxRequestBytes int64
	// MaxBytesInFlight defaults to DefaultMaxBytesInFlight if zero.
	MaxBytesInFlight int64

	inFlight atomic.Int64 // the budget in use: large bodies being read, and what decoding them may cost
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
	body := &budgetReader{h: h}
	defer func() {
		if p := recover(); p != nil {
			a.fail(http.StatusInternalServerError, fmt.Errorf("internal error: %v", p))
			h.Log.Error(fmt.Errorf("%v", p), "Panic while handling an admission request", "uid", a.uid)
		}
		h.finish(w, a, start)
		body.release() // last: what was decoded from it lives until now
	}()
	h.serve(r, body, a)
}

func (h *Handler) serve(r *http.Request, body *budgetReader, a *answer) {
	if r.Method != http.MethodPost {
		a.reject(http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed; send POST", r.Method))
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		if mt, _, _ := mime.ParseMediaType(ct); mt != "application/json" {
			a.reject(http.StatusUnsupportedMediaType, fmt.Errorf("content type %s not supported; send application/json", brief(ct)))
			return
		}
	}
	if err := h.read(r, body); err != nil {
		var tooLarge *tooLargeError
		var tooMany *tooManyValuesError
		switch {
		case errors.As(err, &tooLarge), errors.As(err, &tooMany):
			a.tooLarge(peekUID(body.buf.Bytes()), err)
		case errors.Is(err, errBusy):
			a.reject(http.StatusServiceUnavailable, err)
		default:
			a.reject(http.StatusBadRequest, fmt.Errorf("reading request body: %w", err))
		}
		return
	}
	req, code, err := decode(body.buf.Bytes(), a)
	if err != nil {
		a.reject(code, err)
		return
	}
	if req.Operation != admissionv1.Create {
		a.skip()
		return
	}
	pod, err := req.pod()
	if err != nil {
		a.reject(http.StatusBadRequest, err)
		return
	}
	a.pod = pod
	h.admit(r.Context(), req, pod, a)
}

func (h *Handler) admit(ctx context.Context, req *podRequest, pod *corev1.Pod, a *answer) {
	var labels map[string]string
	if h.Namespaces != nil {
		var err error
		if labels, err = h.Namespaces.Labels(ctx, req.Namespace); err != nil {
			// Without its labels no policy can be applied: an HTTP error
			// lets the webhook's failurePolicy decide, never "no policy".
			a.fail(http.StatusServiceUnavailable, fmt.Errorf("reading the labels of namespace %q: %w", req.Namespace, err))
			return
		}
	}
	if gone(ctx, a) {
		return
	}
	cat := h.Catalog()
	res, err := inject.Pod(pod, labels, cat, h.Keys)
	if err == nil && res.Plan != nil && h.Rules != nil {
		var rules inject.Rules
		if rules, err = h.Rules.ResourceRules(ctx, req.Namespace); err != nil {
			a.fail(http.StatusServiceUnavailable, fmt.Errorf("reading the resource rules of namespace %q: %w", req.Namespace, err))
			return
		}
		var warnings []string
		warnings, err = inject.CheckRules(pod, res.Plan, cat, rules)
		res.Warnings = append(res.Warnings, warnings...)
	}
	if err != nil {
		a.refuse(err)
		return
	}
	a.resp.Allowed = true
	a.resp.Warnings = res.Warnings
	a.outcome = Skipped
	if res.Plan == nil || gone(ctx, a) {
		return
	}
	data, err := patch.Marshal(patch.ForPod(pod, res.Plan))
	if err != nil {
		a.fail(http.StatusInternalServerError, fmt.Errorf("encoding the patch: %w", err))
		return
	}
	pt := admissionv1.PatchTypeJSONPatch
	a.resp.Patch, a.resp.PatchType = data, &pt
	if len(res.Injected) > 0 {
		a.outcome = Injected
		a.injected = res.Injected
	}
}

// gone stops the work on a request whose caller has given up (the API
// server's webhook timeout, a client gone): nobody reads the answer.
func gone(ctx context.Context, a *answer) bool {
	if err := ctx.Err(); err != nil {
		a.reject(http.StatusServiceUnavailable, fmt.Errorf("the caller gave up: %w", err))
		return true
	}
	return false
}

// answer is the response being built for one request.
type answer struct {
	uid      types.UID
	req      *podRequest
	pod      *corev1.Pod
	resp     admissionv1.AdmissionResponse
	outcome  Outcome
	injected []string
	status   int
	err      error
}

func (a *answer) skip() {
	a.resp.Allowed = true
	a.outcome = Skipped
}

// fail answers a fault. Faults that are not the API server's (a panic, an
// encoding error) are 500; malformed requests are 4xx. The review itself
// goes back with HTTP 200 when it could be read, as the API server expects;
// 503 (the webhook cannot decide now) is always an HTTP error, so the
// webhook's failurePolicy applies.
func (a *answer) fail(code int, err error) {
	a.answerError(code, err)
	a.outcome = Error
}

// reject answers a request the webhook cannot take, the client's fault
// rather than the webhook's (a malformed or oversized review, a wrong
// method or kind): counted as invalid, apart from the webhook's own
// errors, so that the errors alert means what its runbook says.
func (a *answer) reject(code int, err error) {
	a.answerError(code, err)
	a.outcome = Invalid
}

func (a *answer) answerError(code int, err error) {
	a.err = err
	a.resp.Allowed = false
	a.resp.Patch, a.resp.PatchType, a.resp.Warnings = nil, nil, nil
	a.resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: int32(code), Message: err.Error()}
	if (a.req == nil && code != http.StatusInternalServerError) || code == http.StatusServiceUnavailable {
		a.status = code
	}
}

// tooLarge answers a body over a limit. A review from the API server
// (it has a UID) gets a denial with HTTP 200, so the person creating the
// Pod reads which limit it broke and by how much; anything else, an HTTP
// 413.
func (a *answer) tooLarge(uid types.UID, err error) {
	if uid == "" {
		a.reject(http.StatusRequestEntityTooLarge, err)
		return
	}
	a.uid, a.err, a.outcome = uid, err, Denied
	a.resp.Allowed = false
	a.resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusRequestEntityTooLarge, Reason: metav1.StatusReasonRequestEntityTooLarge, Message: err.Error()}
}

// refuse answers an error from the engine: a denial, or a fault of the
// webhook's own.
func (a *answer) refuse(err error) {
	var denial *inject.Denial
	if errors.As(err, &denial) {
		a.outcome = Denied
		a.resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden, Message: denial.Message}
		return
	}
	a.fail(http.StatusInternalServerError, err)
}

func (h *Handler) finish(w http.ResponseWriter, a *answer, start time.Time) {
	a.resp.UID = a.uid
	review := admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: apiVersion, Kind: "AdmissionReview"}, Response: &a.resp}
	w.Header().Set("Content-Type", "application/json")
	if a.status != 0 {
		w.WriteHeader(a.status)
	}
	if err := json.NewEncoder(w).Encode(&review); err != nil {
		h.Log.V(1).Info("Writing the answer failed", "uid", a.uid, "error", err.Error()) // the client went away
	}
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
	case Invalid:
		h.Log.V(1).Info("Admission request refused", append(kv, "reason", brief(a.err.Error()))...)
	case Denied:
		h.Log.V(1).Info("Admission request", append(kv, "reason", brief(a.resp.Result.Message))...)
	default:
		h.Log.V(1).Info("Admission request", kv...)
	}
}

// brief quotes s, or its first 256 bytes and how long it was, for an
// answer or a log line: a request holds what its sender wrote.
func brief(s string) string {
	const n = 256
	if len(s) <= n {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%q... (%d bytes)", strings.ToValidUTF8(s[:n], ""), len(s))
}
