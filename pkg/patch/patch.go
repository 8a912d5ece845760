package patch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/mattbaird/jsonpatch"
	jsonpatchv4 "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
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
	ops := make([]Operation, 0, 8)
	ops = appendAll(ops, "/spec/volumes", len(pod.Spec.Volumes), plan.Volumes, plan.VolumeJSON)
	ops = appendAll(ops, "/spec/initContainers", len(pod.Spec.InitContainers), plan.InitContainers, plan.InitContainerJSON)
	ops = appendAll(ops, "/spec/containers", len(pod.Spec.Containers), plan.Containers, plan.ContainerJSON)
	for _, app := range plan.Apps {
		c := &pod.Spec.Containers[app.Index]
		base := "/spec/containers/" + strconv.Itoa(app.Index)
		ops = appendAll(ops, base+"/volumeMounts", len(c.VolumeMounts), app.VolumeMounts, app.VolumeMountJSON)
		ops = appendAll(ops, base+"/env", len(c.Env), app.Env, app.EnvJSON)
	}
	ops = appendAll(ops, "/spec/imagePullSecrets", len(pod.Spec.ImagePullSecrets), plan.ImagePullSecrets, nil)
	return SetAnnotation(ops, pod.Annotations, inject.StatusAnnotation, plan.Status.String())
}

// SetAnnotation adds an operation that sets one annotation, creating the
// map when the object has none.
func SetAnnotation(ops []Operation, annotations map[string]string, key, value string) []Operation {
	if annotations == nil {
		b := append(quote([]byte{'{'}, key), ':')
		b = append(quote(b, value), '}')
		return append(ops, jsonpatch.NewPatch("add", "/metadata/annotations", json.RawMessage(b)))
	}
	path := statusPath // every injection sets it
	if key != inject.StatusAnnotation {
		path = "/metadata/annotations/" + Escape(key)
	}
	return append(ops, jsonpatch.NewPatch("add", path, json.RawMessage(quote(nil, value))))
}

var statusPath = "/metadata/annotations/" + Escape(inject.StatusAnnotation)

// appendAll appends items to the array at path, which holds have elements:
// one "add" of the whole array when it is empty or missing (an add on an
// existing member replaces it), else one "/-" append per item. Values are
// encoded here, using prepared[i] where it is not nil.
func appendAll[T any](ops []Operation, path string, have int, items []T, prepared [][]byte) []Operation {
	if len(items) == 0 {
		return ops
	}
	var first [4]json.RawMessage
	encoded := first[:0]
	size := 1
	for i := range items {
		if i < len(prepared) && prepared[i] != nil {
			encoded = append(encoded, prepared[i])
		} else {
			encoded = append(encoded, catalog.ValueJSON(items[i]))
		}
		size += len(encoded[i]) + 1
	}
	if have == 0 {
		b := make([]byte, 0, size)
		for _, e := range encoded {
			b = append(append(b, ','), e...)
		}
		b[0] = '['
		return append(ops, jsonpatch.NewPatch("add", path, json.RawMessage(append(b, ']'))))
	}
	path += "/-"
	for _, e := range encoded {
		ops = append(ops, jsonpatch.NewPatch("add", path, e))
	}
	return ops
}

// quote appends s as a JSON string, without reflection. Invalid UTF-8
// becomes U+FFFD, as encoding/json does.
func quote(b []byte, s string) []byte {
	b, _ = jsontext.AppendQuote(b, s)
	return b
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
	size := 2
	for i := range ops {
		if raw, ok := ops[i].Value.(json.RawMessage); ok {
			size += len(raw)
		}
		size += 32 + len(ops[i].Path)
	}
	b := make([]byte, 0, size)
	b = append(b, '[')
	for i := range ops {
		if i > 0 {
			b = append(b, ',')
		}
		if raw, ok := ops[i].Value.(json.RawMessage); ok {
			// Encoded by ForPod; written as it is.
			b = append(b, `{"op":`...)
			b = quote(b, ops[i].Operation)
			b = append(b, `,"path":`...)
			b = quote(b, ops[i].Path)
			b = append(b, `,"value":`...)
			b = append(append(b, raw...), '}')
			continue
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(op{ops[i].Operation, ops[i].Path, ops[i].Value}); err != nil {
			return nil, err
		}
		b = append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...) // Encode's newline
	}
	return append(b, ']'), nil
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
