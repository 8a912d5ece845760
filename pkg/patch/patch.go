package patch

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/mattbaird/jsonpatch"
	corev1 "k8s.io/api/core/v1"

	"github.com/podpatterns/sidecar-injector/pkg/inject"
)

// Operation is one JSON Patch operation.
type Operation = jsonpatch.JsonPatchOperation

// ForPod returns the operations that apply plan to pod, in a fixed order:
// volumes, init containers, containers, app mounts and env, image pull
// secrets, then the status annotation. pod must be the Pod the plan was
// made for; only whether its arrays and maps exist is read.
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
	return SetAnnotation(ops, pod.Annotations, inject.StatusAnnotation, plan.Status.String())
}

// SetAnnotation adds an operation that sets one annotation, creating the
// map when the object has none.
func SetAnnotation(ops []Operation, annotations map[string]string, key, value string) []Operation {
	if annotations == nil {
		return append(ops, jsonpatch.NewPatch("add", "/metadata/annotations", map[string]string{key: value}))
	}
	return append(ops, jsonpatch.NewPatch("add", "/metadata/annotations/"+Escape(key), value))
}

// appendAll appends items to the array at path, which holds have elements:
// one "add" of the whole array when it is empty or missing (an add on an
// existing member replaces it), else one "/-" append per item.
func appendAll[T any](ops []Operation, path string, have int, items []T) []Operation {
	if len(items) == 0 {
		return ops
	}
	if have == 0 {
		return append(ops, jsonpatch.NewPatch("add", path, items))
	}
	for i := range items {
		ops = append(ops, jsonpatch.NewPatch("add", path+"/-", items[i]))
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

// Marshal serializes ops as a JSON array, escaping every string.
func Marshal(ops []Operation) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(512 * (len(ops) + 1))
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	buf.WriteByte('[')
	for i := range ops {
		if i > 0 {
			buf.WriteByte(',')
		}
		if err := enc.Encode(op{ops[i].Operation, ops[i].Path, ops[i].Value}); err != nil {
			return nil, err
		}
		buf.Truncate(buf.Len() - 1) // Encode's newline
	}
	buf.WriteByte(']')
	return buf.Bytes(), nil
}
