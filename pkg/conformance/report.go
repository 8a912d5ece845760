package conformance

import (
	"cmp"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
)

// InScope reports whether Pods of a namespace with these labels are
// classified: it opted in, or a policy requires templates there.
func InScope(nsLabels map[string]string, cat *catalog.Catalog) bool {
	return nsLabels[inject.InjectionLabel] == "enabled" || Unlabelled(nsLabels, cat)
}

// Unlabelled reports whether a policy requires templates in a namespace
// with these labels that has not opted in: the webhook never sees its
// Pods.
func Unlabelled(nsLabels map[string]string, cat *catalog.Catalog) bool {
	return nsLabels[inject.InjectionLabel] != "enabled" && len(cat.Apply(nsLabels).Required) > 0
}

// Pod is one Pod's classification, as audit's JSON prints it.
type Pod struct {
	Namespace string     `json:"namespace"`
	Name      string     `json:"name"`
	Owner     Owner      `json:"owner"`
	State     State      `json:"state"`
	Templates []Template `json:"templates"`
}

// Report classifies a set of Pods; its JSON is stable for scripts.
type Report struct {
	Catalog string `json:"catalog"`
	// Unlabelled are namespaces a policy requires templates in that lack
	// the opt-in label.
	Unlabelled []string `json:"unlabelledNamespaces,omitempty"`
	Pods       []Pod    `json:"pods"`
	// Finished Pods (Succeeded or Failed) are listed apart and not
	// counted.
	Finished []Pod         `json:"finished,omitempty"`
	Summary  map[State]int `json:"summary"`
	// Sidecars total what the running Pods' sidecars request and limit,
	// by namespace and template, in that order.
	Sidecars []SidecarTotal `json:"sidecars"`
}

// SidecarTotal is what one template's containers request and limit over
// the running Pods of a namespace that hold them.
type SidecarTotal struct {
	Namespace string `json:"namespace"`
	Pods      int    `json:"pods"`
	Sidecar
}

// NewReport starts a report on the catalog named source, every state
// counted from zero.
func NewReport(source string) *Report {
	r := &Report{Catalog: source, Pods: []Pod{}, Summary: map[State]int{}, Sidecars: []SidecarTotal{}}
	for _, s := range States {
		r.Summary[s] = 0
	}
	return r
}

// Add classifies one Pod, owned by owner, keys verifying its signed
// status entries (nil: none).
func (r *Report) Add(pod *corev1.Pod, nsLabels map[string]string, cat *catalog.Catalog, keys *inject.Keys, owner Owner) {
	res := Classify(pod, nsLabels, cat, keys)
	p := Pod{Namespace: pod.Namespace, Name: pod.Name, Owner: owner, State: res.State, Templates: res.Templates}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		r.Finished = append(r.Finished, p)
		return
	}
	r.Pods = append(r.Pods, p)
	r.Summary[res.State]++
	for _, sc := range res.Sidecars {
		r.addSidecar(pod.Namespace, sc)
	}
}

// addSidecar adds one Pod's sidecar to the namespace's total of its
// template.
func (r *Report) addSidecar(ns string, sc Sidecar) {
	i, found := slices.BinarySearchFunc(r.Sidecars, [2]string{ns, sc.Template}, func(t SidecarTotal, k [2]string) int {
		return cmp.Or(cmp.Compare(t.Namespace, k[0]), cmp.Compare(t.Template, k[1]))
	})
	if !found {
		r.Sidecars = slices.Insert(r.Sidecars, i, SidecarTotal{Namespace: ns, Sidecar: Sidecar{Template: sc.Template, Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}})
	}
	t := &r.Sidecars[i]
	t.Pods++
	for _, pair := range [][2]corev1.ResourceList{{t.Requests, sc.Requests}, {t.Limits, sc.Limits}} {
		for name, q := range pair[1] {
			sum := pair[0][name]
			sum.Add(q)
			pair[0][name] = sum
		}
	}
}

// NeedRepair counts the Pods that need repair.
func (r *Report) NeedRepair() int {
	n := 0
	for _, p := range r.Pods {
		if p.State.NeedsRepair() {
			n++
		}
	}
	return n
}

// Workload is the Pods of one owner.
type Workload struct {
	Namespace string
	Owner     Owner
	States    map[State]int
	Worst     State
}

// Attention reports whether the workload's Pods need repair or carry
// what they no longer want.
func (w Workload) Attention() bool { return w.Worst.NeedsRepair() || w.Worst == NotWanted }

// Workloads groups the report's Pods by owner, in namespace, kind and
// name order.
func (r *Report) Workloads() []Workload {
	var out []Workload
	at := map[[3]string]int{}
	for _, p := range r.Pods {
		k := [3]string{p.Namespace, p.Owner.Kind, p.Owner.Name}
		i, ok := at[k]
		if !ok {
			i = len(out)
			at[k] = i
			out = append(out, Workload{Namespace: p.Namespace, Owner: p.Owner, States: map[State]int{}, Worst: None})
		}
		out[i].States[p.State]++
		out[i].Worst = Worst(out[i].Worst, p.State)
	}
	slices.SortFunc(out, func(a, b Workload) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Owner.Kind, b.Owner.Kind), cmp.Compare(a.Owner.Name, b.Owner.Name))
	})
	return out
}
