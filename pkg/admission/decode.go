package admission

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

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
// It is decoded by unmarshalReview (scan.go) with the semantics of
// encoding/json v2 (go-json-experiment/json, the module the standard
// library's json/v2 comes from) into these types, which match those of
// the API server's own decoder where it matters here: member names are
// case-sensitive, and duplicate names are an error rather than
// last-one-wins. The json tags say what each field is read from; FuzzScan
// checks the scanner against jsonv2.Unmarshal over them.
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
	DryRun *bool    `json:"dryRun,omitempty"`
	Object *podView `json:"object,omitempty"`
}

// podView holds the parts of a Pod the engine and the patch read; the
// rest of the object (images, commands, resources, probes, status...) is
// skipped rather than parsed, which halves the cost of the decode. The
// patch touches only what it adds, so nothing skipped is lost.
// TestInjectMatchesTheServer (pkg/workload) holds this list to the engine:
// the offline tool decodes whole Pods and must get the same bytes.
type podView struct {
	Metadata *podMeta `json:"metadata"`
	Spec     *podSpec `json:"spec"`

	built corev1.Pod // pod's result, allocated with the view
}

type podMeta struct {
	Name         string            `json:"name"`
	GenerateName string            `json:"generateName"`
	Annotations  map[string]string `json:"annotations"`
}

type podSpec struct {
	Containers          []*containerView              `json:"containers"`
	InitContainers      []*containerView              `json:"initContainers"`
	EphemeralContainers []named                       `json:"ephemeralContainers"`
	Volumes             []volumeView                  `json:"volumes"`
	ImagePullSecrets    []corev1.LocalObjectReference `json:"imagePullSecrets"`
	RestartPolicy       corev1.RestartPolicy          `json:"restartPolicy"`
	SecurityContext     *corev1.PodSecurityContext    `json:"securityContext"`
}

type containerView struct {
	Name            string                         `json:"name"`
	Ports           []corev1.ContainerPort         `json:"ports"`
	VolumeMounts    []corev1.VolumeMount           `json:"volumeMounts"`
	Env             []named                        `json:"env"`
	SecurityContext *corev1.SecurityContext        `json:"securityContext"`
	RestartPolicy   *corev1.ContainerRestartPolicy `json:"restartPolicy"`
}

// named is an object of which only the name is read.
type named struct {
	Name string `json:"name"`
}

// volumeView is a volume of which only the name is read; the rest is kept
// as it came and decoded only when a template adds a volume of the same
// name, for the engine to compare the two. Decoding every Pod's projected
// service-account volume was a third of the review's decode.
//
// JSON is checked to be well-formed but not to fit corev1.Volume until
// it is decoded; the scanner leaves it pointing into the request body.
type volumeView struct {
	Name string
	JSON jsontext.Value
}

// UnmarshalJSONFrom is how jsonv2 reads a volumeView.
func (v *volumeView) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	raw, err := dec.ReadValue()
	if err != nil {
		return err
	}
	var n named
	if err := jsonv2.Unmarshal(raw, &n); err != nil {
		return err
	}
	v.Name, v.JSON = n.Name, bytes.Clone(raw)
	return nil
}

// volume decodes the Pod's volume i in full, for inject.PodNamedVolumes.
func (v *podView) volume(i int) (*corev1.Volume, error) {
	vol := &corev1.Volume{}
	if err := jsonv2.Unmarshal(v.Spec.Volumes[i].JSON, vol); err != nil {
		return nil, malformedPod{fmt.Errorf("spec.volumes[%d]: %w", i, err)}
	}
	return vol, nil
}

// malformedPod is a part of the Pod, decoded late, that does not fit its
// type: the request's fault, not the webhook's.
type malformedPod struct{ error }

func (e malformedPod) Unwrap() error { return e.error }

// pod is the view as a Pod holding just those fields, built inside the
// view; its volumes carry only their names (see volume). A Pod without
// metadata or spec, or with a null container, is refused: the patch could
// not address into them. (The API server never sends such a Pod; it
// decodes and re-encodes every object first.)
func (v *podView) pod() (*corev1.Pod, error) {
	switch {
	case v.Metadata == nil:
		return nil, errors.New("the Pod has no metadata")
	case v.Spec == nil:
		return nil, errors.New("the Pod has no spec")
	}
	p := &v.built
	p.Name, p.GenerateName, p.Annotations = v.Metadata.Name, v.Metadata.GenerateName, v.Metadata.Annotations
	s := &p.Spec
	var err error
	if s.Containers, err = containers("containers", v.Spec.Containers); err != nil {
		return nil, err
	}
	if s.InitContainers, err = containers("initContainers", v.Spec.InitContainers); err != nil {
		return nil, err
	}
	for _, e := range v.Spec.EphemeralContainers {
		s.EphemeralContainers = append(s.EphemeralContainers, corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: e.Name}})
	}
	if v.Spec.Volumes != nil {
		s.Volumes = make([]corev1.Volume, len(v.Spec.Volumes))
		for i, vol := range v.Spec.Volumes {
			s.Volumes[i].Name = vol.Name
		}
	}
	s.ImagePullSecrets = v.Spec.ImagePullSecrets
	s.RestartPolicy, s.SecurityContext = v.Spec.RestartPolicy, v.Spec.SecurityContext
	return p, nil
}

func containers(field string, views []*containerView) ([]corev1.Container, error) {
	if views == nil {
		return nil, nil
	}
	out := make([]corev1.Container, len(views))
	for i, v := range views {
		if v == nil {
			return nil, fmt.Errorf("spec.%s[%d] is null", field, i)
		}
		c := &out[i]
		c.Name, c.Ports, c.VolumeMounts, c.SecurityContext, c.RestartPolicy = v.Name, v.Ports, v.VolumeMounts, v.SecurityContext, v.RestartPolicy
		if v.Env != nil {
			c.Env = make([]corev1.EnvVar, len(v.Env))
			for j, e := range v.Env {
				c.Env[j].Name = e.Name
			}
		}
	}
	return out, nil
}

// apiVersion is the one AdmissionReview version the webhook speaks.
var apiVersion = admissionv1.SchemeGroupVersion.String()

// decode reads a review for a Pod CREATE. It fails with a status code and
// an error for the user; a.uid and a.req are set as soon as they are known.
func decode(body []byte, a *answer) (*podRequest, int, error) {
	review := &podReview{}
	fast := unmarshalReview(body, review)
	if fast != nil {
		// The Pod part or the review is malformed: decode the review
		// alone to keep the UID and say which.
		generic := &admissionv1.AdmissionReview{}
		if err := json.Unmarshal(body, generic); err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("decoding AdmissionReview: %w", err)
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
	if fast != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("decoding Pod: %w", fast)
	}
	return req, http.StatusOK, nil
}
