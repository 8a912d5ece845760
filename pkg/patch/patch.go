package patch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
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

// AppendPod appends to b the JSON Patch that applies plan to pod, as a
// JSON array of operations in a fixed order: volumes, init containers,
// containers, app mounts and env, image pull secrets, then the status
// annotation. pod must be the Pod the (non-nil) plan was made for; only
// whether its arrays and maps exist is read. Values the catalog prepared
// are copied as they are; the webhook writes its patch this way,
// building no operations.
func AppendPod(b []byte, pod *corev1.Pod, plan *inject.Plan) []byte {
	w := writer{b: append(slices.Grow(b, size(plan)), '[')}
	appendAll(&w, "/spec/volumes", len(pod.Spec.Volumes), plan.Volumes, plan.VolumeJSON)
	appendAll(&w, "/spec/initContainers", len(pod.Spec.InitContainers), plan.InitContainers, plan.InitContainerJSON)
	appendAll(&w, "/spec/containers", len(pod.Spec.Containers), plan.Containers, plan.ContainerJSON)
	for _, app := range plan.Apps {
		c := &pod.Spec.Containers[app.Index]
		base := "/spec/containers/" + strconv.Itoa(app.Index)
		appendAll(&w, base+"/volumeMounts", len(c.VolumeMounts), app.VolumeMounts, app.VolumeMountJSON)
		appendAll(&w, base+"/env", len(c.Env), app.Env, app.EnvJSON)
	}
	appendAll(&w, "/spec/imagePullSecrets", len(pod.Spec.ImagePullSecrets), plan.ImagePullSecrets, nil)
	var status [256]byte
	w.annotation(pod.Annotations, inject.StatusAnnotation, plan.Status.AppendJSON(status[:0]))
	return append(w.b, ']')
}

// size is about the length of plan's patch, for one allocation.
func size(plan *inject.Plan) int {
	n := 256
	for _, list := range [][][]byte{plan.VolumeJSON, plan.InitContainerJSON, plan.ContainerJSON} {
		for _, v := range list {
			n += len(v) + 64
		}
	}
	for _, app := range plan.Apps {
		for _, list := range [][][]byte{app.VolumeMountJSON, app.EnvJSON} {
			for _, v := range list {
				n += len(v) + 64
			}
		}
	}
	return n
}

// ForPod returns AppendPod's operations, for the offline tools to apply,
// show or prefix; Marshal gives back the same bytes.
func ForPod(pod *corev1.Pod, plan *inject.Plan) []Operation {
	if plan == nil {
		return nil
	}
	var wire []struct {
		Op    string          `json:"op"`
		Path  string          `json:"path"`
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(AppendPod(nil, pod, plan), &wire); err != nil {
		panic(fmt.Sprintf("patch: AppendPod wrote invalid JSON: %v", err))
	}
	ops := make([]Operation, len(wire))
	for i, o := range wire {
		ops[i] = jsonpatch.NewPatch(o.Op, o.Path, o.Value)
	}
	return ops
}

// writer appends "add" operations to a JSON array.
type writer struct {
	b []byte
	n int // operations written
}

// begin opens an operation up to its value; with appending, path gets
// "/-" (append to the array).
func (w *writer) begin(path string, appending bool) {
	if w.n > 0 {
		w.b = append(w.b, ',')
	}
	w.n++
	w.b = append(w.b, `{"op":"add","path":`...)
	w.b = quote(w.b, path)
	if appending {
		w.b = append(w.b[:len(w.b)-1], `/-"`...)
	}
	w.b = append(w.b, `,"value":`...)
}

func (w *writer) end() { w.b = append(w.b, '}') }

// annotation sets one annotation to value, creating the map when the
// object has none. An empty map is created afresh too: encoders omit it,
// so the object may not hold it.
func (w *writer) annotation(annotations map[string]string, key string, value []byte) {
	if len(annotations) == 0 {
		w.begin("/metadata/annotations", false)
		w.b = append(quote(append(w.b, '{'), key), ':')
		w.b = append(quote(w.b, value), '}')
		w.end()
		return
	}
	path := statusPath // every injection sets it
	if key != inject.StatusAnnotation {
		path = "/metadata/annotations/" + Escape(key)
	}
	w.begin(path, false)
	w.b = quote(w.b, value)
	w.end()
}

var statusPath = "/metadata/annotations/" + Escape(inject.StatusAnnotation)

// appendAll adds items to the array at path, which holds have elements:
// one "add" of the whole array when it is empty or missing (an add on an
// existing member replaces it), else one "/-" append per item. Values are
// encoded here, using prepared[i] where it is not nil.
func appendAll[T any](w *writer, path string, have int, items []T, prepared [][]byte) {
	if len(items) == 0 {
		return
	}
	value := func(i int) []byte {
		if i < len(prepared) && prepared[i] != nil {
			return prepared[i]
		}
		return catalog.ValueJSON(items[i])
	}
	if have == 0 {
		w.begin(path, false)
		w.b = append(w.b, '[')
		for i := range items {
			if i > 0 {
				w.b = append(w.b, ',')
			}
			w.b = append(w.b, value(i)...)
		}
		w.b = append(w.b, ']')
		w.end()
		return
	}
	for i := range items {
		w.begin(path, true)
		w.b = append(w.b, value(i)...)
		w.end()
	}
}

// quote appends s as a JSON string, without reflection. Invalid UTF-8
// becomes U+FFFD, as encoding/json does.
func quote[S ~string | ~[]byte](b []byte, s S) []byte {
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
