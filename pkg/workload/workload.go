// Package workload runs the injection engine offline over Kubernetes
// manifests: Pods and the pod templates of Deployments, StatefulSets,
// DaemonSets, ReplicaSets, Jobs and CronJobs, also inside a v1 List. The
// patch is applied to the raw document, so fields this Kubernetes version
// does not know survive, and the result is the server's, byte for byte.
package workload

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	corev1 "k8s.io/api/core/v1"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/pkg/manifest"
	"github.com/podpatterns/sidecar-injector/pkg/patch"
)

// templatePaths are the JSON pointers of each kind's pod template, by
// apiVersion and kind; a Pod is its own template. A kind of another API
// group (a CRD that is also called Pod) is not one of these.
var templatePaths = map[string]string{
	"v1/Pod":              "",
	"apps/v1/Deployment":  "/spec/template",
	"apps/v1/StatefulSet": "/spec/template",
	"apps/v1/DaemonSet":   "/spec/template",
	"apps/v1/ReplicaSet":  "/spec/template",
	"batch/v1/Job":        "/spec/template",
	"batch/v1/CronJob":    "/spec/jobTemplate/spec/template",
}

// Result is one document after injection.
type Result struct {
	// Name reads "Deployment web" for messages.
	Name string
	// Out is the document after the patch; the input when unchanged.
	Out []byte
	// Patch holds the operations applied, with paths into the document.
	Patch []patch.Operation
	// Injected names the templates added.
	Injected []string
	Warnings []string
}

// Inject runs the engine over one JSON document. Kinds without a pod
// template pass through unchanged. A denial comes back as *inject.Denial.
func Inject(doc []byte, nsLabels map[string]string, cat *catalog.Catalog) (*Result, error) {
	head, err := manifest.ReadHead(doc)
	if err != nil {
		return nil, err
	}
	if head.Kind == "List" && head.APIVersion == "v1" {
		return injectList(doc, nsLabels, cat, &Result{Name: "List", Out: doc})
	}
	t, err := locate(doc)
	if err != nil {
		return nil, err
	}
	res := &Result{Name: t.name, Out: doc}
	if t.pod == nil {
		return res, nil
	}
	r, err := inject.Pod(t.pod, nsLabels, cat)
	if err != nil {
		return nil, err
	}
	res.Warnings, res.Injected = r.Warnings, r.Injected
	if r.Plan == nil {
		return res, nil
	}
	ops := patch.ForPod(t.pod, r.Plan)
	if !t.hasMetadata {
		ops = append([]patch.Operation{{Operation: "add", Path: "/metadata", Value: map[string]any{}}}, ops...)
	}
	for i := range ops {
		ops[i].Path = t.prefix + ops[i].Path
	}
	res.Patch = ops
	res.Out, err = patch.Apply(doc, ops)
	if err != nil {
		return nil, fmt.Errorf("%s: applying the patch: %w", res.Name, err)
	}
	return res, nil
}

// PodOf returns the Pod, or the pod template of a workload, held by one
// JSON document, and a name for messages. Kinds without a pod template
// give a nil Pod.
func PodOf(doc []byte) (*corev1.Pod, string, error) {
	t, err := locate(doc)
	if err != nil {
		return nil, "", err
	}
	return t.pod, t.name, nil
}

// located is a document's pod template.
type located struct {
	name        string // "Deployment web"
	prefix      string // JSON pointer of the template
	pod         *corev1.Pod
	hasMetadata bool
}

// locate finds the document's pod template. It decodes as the API server
// does: member names are case-sensitive ("Annotations" is not
// "annotations") and a duplicate name is an error.
func locate(doc []byte) (*located, error) {
	head, err := manifest.ReadHead(doc)
	if err != nil {
		return nil, err
	}
	t := &located{name: head.Name()}
	prefix, ok := templatePaths[head.APIVersion+"/"+head.Kind]
	if !ok {
		return t, nil
	}
	t.prefix = prefix
	raw, err := pointer(doc, prefix)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.name, err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, fmt.Errorf("%s: the pod template at %q is not an object", t.name, prefix)
	}
	meta, ok := m["metadata"]
	t.hasMetadata = ok && string(meta) != "null"
	t.pod = &corev1.Pod{}
	if err := jsonv2.Unmarshal(raw, t.pod); err != nil {
		return nil, fmt.Errorf("%s: decoding the pod template: %w", t.name, err)
	}
	return t, nil
}

func injectList(doc []byte, nsLabels map[string]string, cat *catalog.Catalog, res *Result) (*Result, error) {
	var list map[string]json.RawMessage
	if err := json.Unmarshal(doc, &list); err != nil {
		return nil, err
	}
	var items []json.RawMessage
	if err := json.Unmarshal(list["items"], &items); err != nil && list["items"] != nil {
		return nil, fmt.Errorf("List: items: %w", err)
	}
	out := make([]json.RawMessage, len(items))
	for i, item := range items {
		r, err := Inject(item, nsLabels, cat)
		if err != nil {
			return nil, fmt.Errorf("items[%d]: %w", i, err)
		}
		out[i] = r.Out
		res.Injected = append(res.Injected, r.Injected...)
		res.Warnings = append(res.Warnings, r.Warnings...)
		for _, op := range r.Patch {
			op.Path = fmt.Sprintf("/items/%d%s", i, op.Path)
			res.Patch = append(res.Patch, op)
		}
	}
	var err error
	if list["items"], err = json.Marshal(out); err != nil {
		return nil, err
	}
	res.Out, err = json.Marshal(list)
	return res, err
}

// pointer returns the value at a JSON pointer of plain keys.
func pointer(doc []byte, path string) (json.RawMessage, error) {
	cur := json.RawMessage(doc)
	for _, key := range strings.Split(strings.TrimPrefix(path, "/"), "/") {
		if key == "" {
			continue
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(cur, &m); err != nil || m == nil {
			return nil, fmt.Errorf("no pod template at %s", path)
		}
		next, ok := m[key]
		if !ok {
			return nil, fmt.Errorf("no pod template at %s", path)
		}
		cur = next
	}
	return cur, nil
}

// IsDenial reports whether err is the engine's denial.
func IsDenial(err error) bool {
	var d *inject.Denial
	return errors.As(err, &d)
}
