package admission

import (
	"errors"
	"fmt"
	"net/http"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podpatterns/sidecar-injector/pkg/manifest"
)

// Reviews are decoded with encoding/json v2 (go-json-experiment/json), the
// decoder the offline tools use too: member names are case-sensitive and
// a duplicate name is an error, as in the API server's decoder, and its
// errors carry the JSON pointer that manifest.FieldError words for a
// person.

// podReview is the part of an admissionv1.AdmissionReview the webhook
// reads; old objects, options, groups and the request kinds are skipped.
type podReview struct {
	metav1.TypeMeta `json:",inline"`
	Request         *podRequest `json:"request,omitempty"`
}

type podRequest struct {
	UID         types.UID               `json:"uid"`
	Kind        metav1.GroupVersionKind `json:"kind"`
	SubResource string                  `json:"subResource,omitempty"`
	Namespace   string                  `json:"namespace,omitempty"`
	Operation   admissionv1.Operation   `json:"operation"`
	UserInfo    struct {
		Username string `json:"username"`
	} `json:"userInfo"`
	DryRun *bool          `json:"dryRun,omitempty"`
	Object jsontext.Value `json:"object,omitempty"`
}

// podObject is the Pod as sent, with pointers that tell whether its
// metadata and spec were there at all: the patch addresses into both.
type podObject struct {
	Metadata *metav1.ObjectMeta `json:"metadata"`
	Spec     *corev1.PodSpec    `json:"spec"`
}

// maxUIDBytes caps a request UID the answer echoes: the API server's are
// 36 bytes.
const maxUIDBytes = 256

// apiVersion is the one AdmissionReview version the webhook speaks.
var apiVersion = admissionv1.SchemeGroupVersion.String()

// decode reads a review for Pods. It fails with a status code and an
// error for the user; a.uid and a.req are set as soon as they are known.
func decode(body []byte, a *answer) (*podRequest, int, error) {
	review := &podReview{}
	// Duplicate names inside the object are refused when the Pod is
	// decoded, with the request's UID known by then.
	if err := jsonv2.Unmarshal(body, review, jsontext.AllowDuplicateNames(true)); err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("decoding AdmissionReview: %w", manifest.FieldError(err))
	}
	if r := review.Request; r != nil {
		if len(r.UID) > maxUIDBytes {
			return nil, http.StatusBadRequest, fmt.Errorf("request uid of %d bytes; the API server sends at most %d", len(r.UID), maxUIDBytes)
		}
		a.uid, a.req = r.UID, r
	}
	if gv := review.APIVersion; gv != apiVersion || review.Kind != "AdmissionReview" {
		return nil, http.StatusBadRequest, fmt.Errorf("unsupported kind %s, apiVersion %s; this webhook speaks admission.k8s.io/v1 AdmissionReview", brief(review.Kind), brief(gv))
	}
	req := review.Request
	if req == nil {
		return nil, http.StatusBadRequest, errors.New("AdmissionReview has no request")
	}
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.SubResource != "" {
		return nil, http.StatusBadRequest, fmt.Errorf("this webhook handles Pods; got %s %s", brief(req.Kind.String()), brief(req.SubResource))
	}
	return req, http.StatusOK, nil
}

// pod decodes the request's object. A Pod without metadata or spec, or
// with a container without a name (a null decodes as one), is refused:
// the patch could not address into them. (The API server never sends
// one; it decodes, defaults and re-encodes every object first.)
func (r *podRequest) pod() (*corev1.Pod, error) {
	if len(r.Object) == 0 || string(r.Object) == "null" {
		return nil, errors.New("CREATE request has no object")
	}
	o := &podObject{}
	if err := jsonv2.Unmarshal(r.Object, o); err != nil {
		return nil, fmt.Errorf("decoding Pod: %w", manifest.FieldError(err))
	}
	switch {
	case o.Metadata == nil:
		return nil, errors.New("decoding Pod: the Pod has no metadata")
	case o.Spec == nil:
		return nil, errors.New("decoding Pod: the Pod has no spec")
	}
	for _, list := range []struct {
		field string
		names []string
	}{{"containers", containerNames(o.Spec.Containers)}, {"initContainers", containerNames(o.Spec.InitContainers)}} {
		for i, name := range list.names {
			if name == "" {
				return nil, fmt.Errorf("decoding Pod: spec.%s[%d] has no name", list.field, i)
			}
		}
	}
	return &corev1.Pod{ObjectMeta: *o.Metadata, Spec: *o.Spec}, nil
}

func containerNames(cs []corev1.Container) []string {
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = c.Name
	}
	return names
}
