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
	"sort"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
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
	"v1/Pod":                   "",
	"apps/v1/Deployment":       "/spec/template",
	"apps/v1/StatefulSet":      "/spec/template",
	"apps/v1/DaemonSet":        "/spec/template",
	"apps/v1/ReplicaSet":       "/spec/template",
	"batch/v1/Job":             "/spec/template",
	"batch/v1/CronJob":         "/spec/jobTemplate/spec/template",
	"v1/ReplicationController": "/spec/template",
}

// podHolders are the pod templates of kinds this tool does not know, as
// OpenShift's DeploymentConfig and Argo's Rollout hold them: documents
// with one are passed through with a notice, never silently.
var podHolders = []string{"/spec/template", "/spec/jobTemplate/spec/template"}

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
	// Notice, when set, says why a document that holds Pods was passed
	// through unchanged.
	Notice string
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
		switch known := versionsOf(head.Kind); {
		case len(known) > 0:
			res.Notice = fmt.Sprintf("apiVersion %s of %s is not one this tool reads (it reads %s; Kubernetes no longer serves the older ones): change the apiVersion", head.APIVersion, head.Kind, strings.Join(known, ", "))
		case holdsPods(doc) != "":
			res.Notice = "not a workload kind this tool knows; its Pods will be injected by the webhook when created"
		}
		return res, nil
	}
	r, err := inject.Pod(t.pod, nsLabels, cat, nil) // offline: entries unsigned; the webhook signs what it verifies
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

// holdsPods returns where a document of an unknown kind has a pod
// template, as workloads keep one, or "".
func holdsPods(doc []byte) string {
	for _, path := range podHolders {
		if raw, err := pointer(doc, path); err == nil {
			var t struct {
				Spec *struct {
					Containers []json.RawMessage `json:"containers"`
				} `json:"spec"`
			}
			if jsonv2.Unmarshal(raw, &t) == nil && t.Spec != nil && len(t.Spec.Containers) > 0 {
				return path
			}
		}
	}
	return ""
}

// NamedPod is a Pod, or a workload's pod template, with a name for
// messages ("Deployment web").
type NamedPod struct {
	Name string
	Pod  *corev1.Pod
	// Template is set for a workload's pod template, which is not a Pod
	// that runs.
	Template bool
}

// PodsOf returns the Pods and pod templates one JSON document holds: the
// document's own, those of the items of a v1 List, or the template of a
// kind Inject passes through with a notice; everything Inject reads and
// writes. Kinds without a pod template hold none.
func PodsOf(doc []byte) ([]NamedPod, error) {
	head, err := manifest.ReadHead(doc)
	if err != nil {
		return nil, err
	}
	if head.Kind == "List" && head.APIVersion == "v1" {
		var list struct {
			Items []jsontext.Value `json:"items"`
		}
		if err := jsonv2.Unmarshal(doc, &list); err != nil {
			return nil, fmt.Errorf("List: %w", manifest.FieldError(err))
		}
		var out []NamedPod
		for i, item := range list.Items {
			pods, err := PodsOf(item)
			if err != nil {
				return nil, fmt.Errorf("items[%d]: %w", i, err)
			}
			out = append(out, pods...)
		}
		return out, nil
	}
	t, err := locate(doc)
	if err != nil {
		return nil, err
	}
	if t.pod == nil {
		path := holdsPods(doc)
		if path == "" {
			return nil, nil
		}
		if err := t.decode(doc, path); err != nil {
			return nil, err
		}
	}
	return []NamedPod{{t.name, t.pod, t.prefix != ""}}, nil
}

// RunningPods returns the Pods one document holds, itself or the items of
// a v1 List: what audit classifies. Workloads' templates are left out.
func RunningPods(doc []byte) ([]*corev1.Pod, error) {
	all, err := PodsOf(doc)
	var pods []*corev1.Pod
	for _, p := range all {
		if !p.Template {
			pods = append(pods, p.Pod)
		}
	}
	return pods, err
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
	return t, t.decode(doc, prefix)
}

// decode reads the pod template at prefix.
func (t *located) decode(doc []byte, prefix string) error {
	t.prefix = prefix
	raw, err := pointer(doc, prefix)
	if err != nil {
		return fmt.Errorf("%s: %w", t.name, err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return fmt.Errorf("%s: the pod template at %q is not an object", t.name, prefix)
	}
	meta, ok := m["metadata"]
	t.hasMetadata = ok && string(meta) != "null"
	t.pod = &corev1.Pod{}
	if err := jsonv2.Unmarshal(raw, t.pod); err != nil {
		return fmt.Errorf("%s: %w", t.name, manifest.FieldError(prefixPointer(err, prefix)))
	}
	return nil
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
		if r.Notice != "" {
			res.Warnings = append(res.Warnings, fmt.Sprintf("items[%d] (%s) passed through unchanged: %s", i, r.Name, r.Notice))
		}
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

// prefixPointer places a decode error of the pod template at its path in
// the document.
func prefixPointer(err error, prefix string) error {
	var se *jsonv2.SemanticError
	if errors.As(err, &se) {
		se.JSONPointer = jsontext.Pointer(prefix) + se.JSONPointer
	}
	return err
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

// versionsOf lists the apiVersions this tool reads kind in.
func versionsOf(kind string) []string {
	var out []string
	for key := range templatePaths {
		if at := strings.LastIndex(key, "/"); key[at+1:] == kind {
			out = append(out, key[:at])
		}
	}
	sort.Strings(out)
	return out
}
