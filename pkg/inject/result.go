package inject

import (
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// Plan is what to add to a Pod: additions only, in a fixed order. Its
// lists and the containers in them may be the catalog's own content,
// shared by every request: read a plan, never modify it.
type Plan struct {
	// InitContainers are appended to spec.initContainers: the templates'
	// init containers and native sidecars.
	InitContainers []corev1.Container
	// Containers are appended to spec.containers.
	Containers []corev1.Container
	// InitContainerJSON, ContainerJSON and VolumeJSON hold, index for
	// index, each item's JSON where the catalog prepared it, or nil.
	InitContainerJSON, ContainerJSON, VolumeJSON [][]byte
	// Volumes are appended to spec.volumes; volumes the Pod already has
	// with the same definition are reused and not listed.
	Volumes []corev1.Volume
	// Apps holds the mounts and env for each target app container.
	Apps []AppAdditions
	// ImagePullSecrets are appended to spec.imagePullSecrets.
	ImagePullSecrets []corev1.LocalObjectReference
	// Status is the new value of the status annotation.
	Status Status
}

// AppAdditions are added to one app container.
type AppAdditions struct {
	// Index of the container in spec.containers.
	Index        int
	VolumeMounts []corev1.VolumeMount
	Env          []corev1.EnvVar
	// VolumeMountJSON and EnvJSON hold each item's prepared JSON, or nil.
	VolumeMountJSON, EnvJSON [][]byte
}

// Status is the JSON value of the status annotation.
type Status struct {
	Templates []Injected `json:"templates"`
}

// Injected names one injected template and a hash of what it added.
type Injected struct {
	Name string `json:"name"`
	Hash string `json:"hash"`
}

// String returns the annotation value, as encoding/json writes it.
func (s Status) String() string {
	return string(s.AppendJSON(make([]byte, 0, 16+48*len(s.Templates))))
}

// AppendJSON appends the annotation value to b.
func (s Status) AppendJSON(b []byte) []byte {
	b = append(b, `{"templates":[`...)
	for i, t := range s.Templates {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = strconv.AppendQuote(b, t.Name) // catalog names are DNS labels
		b = append(b, `,"hash":`...)
		b = strconv.AppendQuote(b, t.Hash) // hex
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// Result is the engine's answer for an admitted Pod.
type Result struct {
	// Plan is nil when nothing is to be injected.
	Plan *Plan
	// Injected names the templates this Plan adds, in order.
	Injected []string
	// Warnings are non-fatal remarks for the user (admission warnings).
	Warnings []string
}

// Denial is the user's mistake: the Pod must not be admitted as it is.
// Its message says what is wrong and how to fix it.
type Denial struct {
	Message string
}

func (d *Denial) Error() string { return d.Message }

func deny(format string, args ...any) error {
	return &Denial{Message: fmt.Sprintf(format, args...)}
}
