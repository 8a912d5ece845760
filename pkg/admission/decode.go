package admission

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// podReview is admissionv1.AdmissionReview with the request's object
// decoded straight into a Pod: one pass over the body instead of a pass
// that copies the object out and a second that decodes it.
type podReview struct {
	metav1.TypeMeta `json:",inline"`
	Request         *podRequest `json:"request,omitempty"`
}

type podRequest struct {
	admissionv1.AdmissionRequest
	// Object shadows AdmissionRequest.Object: the shallower field wins.
	Object *corev1.Pod `json:"object,omitempty"`
}

// decode reads a review for a Pod CREATE. It fails with a status code and
// an error for the user; a.uid and a.req are set as soon as they are known.
func decode(body []byte, a *answer) (*podRequest, int, error) {
	review := &podReview{}
	fast := json.Unmarshal(body, review)
	if fast != nil {
		// The Pod part or the review is malformed: decode the review
		// alone to keep the UID and say which.
		generic := &admissionv1.AdmissionReview{}
		if err := json.Unmarshal(body, generic); err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("decoding AdmissionReview: %w", err)
		}
		review.TypeMeta = generic.TypeMeta
		if generic.Request != nil {
			review.Request = &podRequest{AdmissionRequest: *generic.Request}
		}
	}
	if review.Request != nil {
		a.uid, a.req = review.Request.UID, &review.Request.AdmissionRequest
	}
	if gv := review.APIVersion; gv != admissionv1.SchemeGroupVersion.String() || review.Kind != "AdmissionReview" {
		return nil, http.StatusBadRequest, fmt.Errorf("unsupported %s %q; this webhook speaks admission.k8s.io/v1 AdmissionReview", review.Kind, gv)
	}
	req := review.Request
	if req == nil {
		return nil, http.StatusBadRequest, errors.New("AdmissionReview has no request")
	}
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.SubResource != "" {
		return nil, http.StatusBadRequest, fmt.Errorf("this webhook handles Pods; got %s %s", req.Kind.String(), req.SubResource)
	}
	if fast != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("decoding Pod: %w", fast)
	}
	return req, http.StatusOK, nil
}
