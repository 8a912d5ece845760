package patch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/mattbaird/jsonpatch"
	jsonpatchv4 "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"

	"github.com/podpatterns/sidecar-injector/pkg/inject"
)

// Operation is one JSON Patch operation.
type Operation = jsonpatch.JsonPatchOperation

// ForPod returns the operations that apply plan to pod, in a fixed order:
// volumes, init containers, containers, app mounts and env, image pull
// secrets, then the status annotation. pod must be the Pod the plan was
// made for; only whether its arrays and maps exist is read. A nil plan
// gives no operations.
func ForPod(pod *corev1.Pod, plan *inject.Plan) []Operation {
	if plan == nil {
		return nil
	}
	var ops []Operation
	ops = appendAll(ops, "/spec/volumes", len(pod.Spec.Volumes), plan.Volumes)
	ops = appendAll(ops, "/spec/initContainers", len(pod.Spec.InitContainers), plan.InitContainers)
	ops = appendAll(ops, "/spec/containers", len(pod.Spec.Containers), plan.Containers)
	for _, app := range plan.Apps {
		c := &pod.Spec.Containers[app.Index]
		base := "/spec/containers/" + strconv.Itoa(app.Index)
		ops = appendAll(ops, base+"/volumeMounts", len(c.VolumeMounts), app.VolumeMounts)
		ops = appendAll(ops, base+"/env", len(c.Env), app.Env)
	}
	ops = appendAll(ops, "/spec/imagePullSecrets", len(pod.Spec.ImagePullSecrets), plan.ImagePullSecrets)
	if r := plan.PodResources; r != nil { // values the Pod sets: an add replaces each
		for _, list := range []struct {
			path   string
			values corev1.ResourceList
		}{{"/spec/resources/requests/", r.Requests}, {"/spec/resources/limits/", r.Limits}} {
			for _, name := range slices.Sorted(maps.Keys(list.values)) {
				v := list.values[name]
				ops = append(ops, jsonpatch.NewPatch("add", list.path+Escape(string(name)), v.String()))
			}
		}
	}
	set := map[string]string{inject.StatusAnnotation: plan.Status.String()}
	if plan.DefaultContainer != "" {
		set[inject.DefaultContainerAnnotation] = plan.DefaultContainer
	}
	return append(ops, Annotations(pod.Annotations, set)...)
}

// appendAll adds items to the array at path, which holds have elements:
// one "add" of the whole array when it is empty or missing (an add on an
// existing member replaces it), else one "/-" append per item.
func appendAll[T any](ops []Operation, path string, have int, items []T) []Operation {
	if len(items) == 0 {
		return ops
	}
	if have == 0 {
		return append(ops, jsonpatch.NewPatch("add", path, items))
	}
	for _, item := range items {
		ops = append(ops, jsonpatch.NewPatch("add", path+"/-", item))
	}
	return ops
}

// Annotations sets annotations on an object that has the given ones, in
// key order, creating the map when the object has none. An empty map is
// created afresh too: encoders omit it, so the object may not hold it.
func Annotations(have, set map[string]string) []Operation {
	if len(have) == 0 {
		return []Operation{jsonpatch.NewPatch("add", "/metadata/annotations", set)}
	}
	var ops []Operation
	for _, key := range slices.Sorted(maps.Keys(set)) {
		ops = append(ops, jsonpatch.NewPatch("add", "/metadata/annotations/"+Escape(key), set[key]))
	}
	return ops
}

var escaper = strings.NewReplacer("~", "~0", "/", "~1")

// Escape escapes one RFC 6901 reference token.
func Escape(token string) string { return escaper.Replace(token) }

// op is the wire form of an operation. jsonpatch's own MarshalJSON writes
// the path with %s, without JSON escaping, so a key holding a quote or a
// backslash would break the document.
type op struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// Marshal serializes ops as a JSON array, escaping every string. HTML
// characters stay as they are, so "<" in a value reads as "<".
func Marshal(ops []Operation) ([]byte, error) {
	wire := make([]op, len(ops))
	for i, o := range ops {
		wire[i] = op{o.Operation, o.Path, o.Value}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(wire); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// Apply applies ops to a JSON document with the library the API server
// applies admission patches with, so what it returns is what would be
// stored.
func Apply(doc []byte, ops []Operation) ([]byte, error) {
	data, err := Marshal(ops)
	if err != nil {
		return nil, err
	}
	p, err := jsonpatchv4.DecodePatch(data)
	if err != nil {
		return nil, fmt.Errorf("decoding patch %s: %w", data, err)
	}
	return p.Apply(doc)
}
