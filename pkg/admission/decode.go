package admission

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// podReview is admissionv1.AdmissionReview with the request's object
// decoded straight into a Pod: one pass over the body instead of a pass
// that copies the object out and a second that decodes it.
//
// It is decoded with encoding/json v2 (go-json-experiment/json, the
// module the standard library's json/v2 comes from), whose defaults match
// the API server's own decoder where it matters here: member names are
// case-sensitive, and a duplicate name is an error rather than
// last-one-wins.
type podReview struct {
	metav1.TypeMeta `json:",inline"`
	Request         *podRequest `json:"request,omitempty"`
}

// podRequest is the part of admissionv1.AdmissionRequest the webhook
// reads; old objects, options, groups and the request kinds are skipped.
type podRequest struct {
	UID         types.UID               `json:"uid"`
	Kind        metav1.GroupVersionKind `json:"kind"`
	SubResource string                  `json:"subResource,omitempty"`
	Namespace   string                  `json:"namespace,omitempty"`
	Operation   admissionv1.Operation   `json:"operation"`
	UserInfo    struct {
		Username string `json:"username"`
	} `json:"userInfo"`
	DryRun *bool      `json:"dryRun,omitempty"`
	Object *podObject `json:"object,omitempty"`
}

// podObject is the Pod as sent, with pointers that tell whether its
// metadata and spec were there at all: the patch addresses into both.
type podObject struct {
	Metadata *metav1.ObjectMeta `json:"metadata"`
	Spec     *corev1.PodSpec    `json:"spec"`
}

// pod returns the object as a Pod. A Pod without metadata or spec, or
// with a container without a name (a null decodes as one), is refused:
// the patch could not address into them. (The API server never sends
// one; it decodes, defaults and re-encodes every object first.)
func (o *podObject) pod() (*corev1.Pod, error) {
	switch {
	case o.Metadata == nil:
		return nil, errors.New("the Pod has no metadata")
	case o.Spec == nil:
		return nil, errors.New("the Pod has no spec")
	}
	for i, c := range o.Spec.Containers {
		if c.Name == "" {
			return nil, fmt.Errorf("spec.containers[%d] has no name", i)
		}
	}
	return &corev1.Pod{ObjectMeta: *o.Metadata, Spec: *o.Spec}, nil
}

// apiVersion is the one AdmissionReview version the webhook speaks.
var apiVersion = admissionv1.SchemeGroupVersion.String()

// decode reads a review for a Pod CREATE. It fails with a status code and
// an error for the user; a.uid and a.req are set as soon as they are known.
func decode(body []byte, a *answer) (*podRequest, int, error) {
	review := &podReview{}
	podErr := describe(jsonv2.Unmarshal(body, review))
	if podErr != nil {
		// The Pod part or the review is malformed: decode the review
		// alone to keep the UID and say which.
		*review = podReview{}
		generic := &admissionv1.AdmissionReview{}
		if err := json.Unmarshal(body, generic); err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("decoding AdmissionReview: %w", podErr)
		}
		review.TypeMeta = generic.TypeMeta
		if r := generic.Request; r != nil {
			review.Request = &podRequest{UID: r.UID, Kind: r.Kind, SubResource: r.SubResource, Namespace: r.Namespace, Operation: r.Operation, DryRun: r.DryRun}
			review.Request.UserInfo.Username = r.UserInfo.Username
		}
	}
	if review.Request != nil {
		a.uid, a.req = review.Request.UID, review.Request
	}
	if gv := review.APIVersion; gv != apiVersion || review.Kind != "AdmissionReview" {
		return nil, http.StatusBadRequest, fmt.Errorf("unsupported %s %q; this webhook speaks admission.k8s.io/v1 AdmissionReview", review.Kind, gv)
	}
	req := review.Request
	if req == nil {
		return nil, http.StatusBadRequest, errors.New("AdmissionReview has no request")
	}
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.SubResource != "" {
		return nil, http.StatusBadRequest, fmt.Errorf("this webhook handles Pods; got %s %s", req.Kind.String(), req.SubResource)
	}
	if podErr != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("decoding Pod: %w", podErr)
	}
	return req, http.StatusOK, nil
}

// describe says where in the review a value of the wrong kind is, as a
// JSON pointer, what it is and what was wanted; jsontext's syntax errors
// say where already.
func describe(err error) error {
	var se *jsonv2.SemanticError
	if !errors.As(err, &se) || se.JSONKind == 0 || se.GoType == nil {
		return err
	}
	where := string(se.JSONPointer)
	if where == "" {
		where = "the review"
	}
	msg := fmt.Sprintf("%s is %s, want %s", where, kinds[se.JSONKind], wants(se.GoType))
	var inner *jsonv2.SemanticError
	if se.Err != nil && !errors.As(se.Err, &inner) {
		msg += ": " + se.Err.Error()
	}
	return errors.New(msg)
}

var kinds = map[jsontext.Kind]string{'n': "null", 't': "a boolean", 'f': "a boolean", '"': "a string", '0': "a number", '{': "an object", '[': "an array"}

// wants names the JSON a Go type is read from.
func wants(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	}
	return t.String()
}
