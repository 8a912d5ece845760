package inject

import (
	"encoding/json"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Plan is what to add to a Pod: additions only, in a fixed order.
type Plan struct {
	// InitContainers are appended to spec.initContainers: the templates'
	// init containers and native sidecars.
	InitContainers []corev1.Container
	// Containers are appended to spec.containers.
	Containers []corev1.Container
	// Volumes are appended to spec.volumes; volumes the Pod already has
	// with the same definition are reused and not listed.
	Volumes []corev1.Volume
	// Apps holds the mounts and env for each target app container.
	Apps []AppAdditions
	// ImagePullSecrets are appended to spec.imagePullSecrets.
	ImagePullSecrets []corev1.LocalObjectReference
	// PodResources, when set, holds the new values of the pod-level
	// requests and limits the Pod sets (spec.resources), raised by the
	// sidecars' share; the others are left alone.
	PodResources *corev1.ResourceRequirements
	// Status is the new value of the status annotation: the templates
	// the Pod carries, verified or injected now.
	Status Status
	// DefaultContainer, when set, is the value of the annotation
	// kubectl.kubernetes.io/default-container, which the Pod lacks: the
	// first target app container, so that `kubectl logs` and `kubectl
	// exec` keep landing in the app once sidecars sit beside it.
	DefaultContainer string
}

// AppAdditions are added to one app container.
type AppAdditions struct {
	// Index of the container in spec.containers.
	Index        int
	VolumeMounts []corev1.VolumeMount
	Env          []corev1.EnvVar
}

// Status is the JSON value of the status annotation.
type Status struct {
	Templates []Injected `json:"templates"`
}

// Injected names one injected template and what the Pod held of it once
// injected: Held, the JSON of it (see held); the webhook signs the entry
// (see Keys) at the time Signed (RFC 3339) with MAC. The compiled
// admission policies, which cannot sign, write Held alone. Hash is what
// releases before Held wrote: the status hash of the held JSON,
// recomputed from the Pod to verify it.
type Injected struct {
	Name   string `json:"name"`
	Hash   string `json:"hash,omitempty"`
	Held   string `json:"held,omitempty"`
	Signed string `json:"signed,omitempty"`
	MAC    string `json:"mac,omitempty"`
}

// String returns the annotation value.
func (s Status) String() string {
	if s.Templates == nil {
		s.Templates = []Injected{}
	}
	b, _ := json.Marshal(s) // two strings per entry always marshal
	return string(b)
}

// Result is the engine's answer for an admitted Pod.
type Result struct {
	// Plan is nil when the Pod is admitted unchanged.
	Plan *Plan
	// Injected names the templates this Plan adds, in order.
	Injected []string
	// Verified names the templates the Pod already carries, as its status
	// annotation says and its content shows.
	Verified []string
	// Warnings are non-fatal remarks for the user (admission warnings).
	Warnings []string
}

// Denial is the user's mistake: the Pod must not be admitted as it is.
// Its message says what is wrong and how to fix it.
type Denial struct {
	Message string
}

func (d *Denial) Error() string { return d.Message }

// maxDenial caps a denial's message. Denials quote values briefly
// already; the cap holds for what they quote from elsewhere (a parser's
// error that repeats its input).
const maxDenial = 4096

func deny(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if len(msg) > maxDenial {
		msg = strings.ToValidUTF8(msg[:maxDenial], "") + "... (cut)"
	}
	return &Denial{Message: msg}
}
