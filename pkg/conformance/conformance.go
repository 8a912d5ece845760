// Package conformance classifies a running Pod against what it should
// carry: every template it asks for, or its namespace's policies default
// or require, injected as the catalog renders it today. The audit command
// and the controller share it; like the engine it does no I/O.
package conformance

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
)

// State is how a template, or a Pod as a whole, stands.
type State string

// The states, from worst to best.
const (
	// Tampered: the status annotation and the Pod's containers disagree.
	Tampered State = "tampered"
	// Missing: asked for, required or defaulted, and not injected.
	Missing State = "missing"
	// Stale: injected, but the catalog now renders something else.
	Stale State = "stale"
	// Unverified: its status entry is signed and there is no key to
	// verify it with (audit offline without --status-key-dir); what it
	// cannot verify is never current.
	Unverified State = "unverified"
	// NotWanted: injected, but neither asked for nor allowed any more.
	NotWanted State = "not-wanted"
	// Current: injected as the catalog renders it today.
	Current State = "current"
	// None: the Pod asks for nothing and nothing applies.
	None State = "none"
)

// States lists every state, worst first.
var States = []State{Tampered, Missing, Stale, Unverified, NotWanted, Current, None}

// NeedsRepair reports whether a Pod in state s should be re-created.
func (s State) NeedsRepair() bool { return s == Tampered || s == Missing || s == Stale }

// Worst returns the worse of two states.
func Worst(a, b State) State {
	if slices.Index(States, a) < slices.Index(States, b) {
		return a
	}
	return b
}

// Template is one template's state in a Pod.
type Template struct {
	Name   string `json:"name"`
	State  State  `json:"state"`
	Reason string `json:"reason,omitempty"`
}

// Result is a Pod's state: the worst of its templates'.
type Result struct {
	State     State      `json:"state"`
	Templates []Template `json:"templates"`
	// Sidecars are what the containers of each template the Pod holds
	// request and limit, whatever their state: what the sidecars cost.
	Sidecars []Sidecar `json:"sidecars,omitempty"`
}

// Sidecar is what one template's containers in a Pod request and limit,
// cpu and memory summed over them.
type Sidecar struct {
	Template string              `json:"template"`
	Requests corev1.ResourceList `json:"requests,omitempty"`
	Limits   corev1.ResourceList `json:"limits,omitempty"`
}

// Classify works out the Pod's state in a namespace with these labels;
// keys verify the status entries the webhook signed (nil: none).
func Classify(pod *corev1.Pod, nsLabels map[string]string, cat *catalog.Catalog, keys *inject.Keys) Result {
	var res Result
	wanted, err := inject.Wanted(pod, nsLabels, cat)
	if err != nil {
		// The Pod's own request is unusable (the webhook would deny it):
		// nothing it asks for can be current.
		res.Templates = append(res.Templates, Template{Name: inject.InjectAnnotation, State: Missing, Reason: err.Error()})
	}
	claims, err := inject.VerifyStatus(pod, cat, keys)
	if err != nil {
		res.Templates = append(res.Templates, Template{Name: inject.StatusAnnotation, State: Tampered, Reason: err.Error()})
	}
	claimed := map[string]inject.Claim{}
	for _, c := range claims {
		claimed[c.Name] = c
	}
	for _, name := range wanted {
		c, ok := claimed[name]
		switch {
		case !ok && hasContainerOf(pod, cat.Template(name)):
			res.Templates = append(res.Templates, Template{name, Tampered, "a container has the template's name, but the status annotation does not list it"})
		case !ok:
			res.Templates = append(res.Templates, Template{name, Missing, "not injected"})
		default:
			res.Templates = append(res.Templates, claimState(c))
		}
	}
	for _, c := range claims {
		if slices.Contains(wanted, c.Name) {
			continue
		}
		if cat.Template(c.Name) == nil {
			res.Templates = append(res.Templates, Template{c.Name, NotWanted, "injected, but no longer in the catalog"})
			continue
		}
		t := claimState(c)
		if t.State == Current || t.State == Stale {
			t.State, t.Reason = NotWanted, "injected, but neither asked for nor required any more"
		}
		res.Templates = append(res.Templates, t)
	}
	res.State = None
	for _, t := range res.Templates {
		res.State = Worst(res.State, t.State)
	}
	for _, c := range claims {
		if t := cat.Template(c.Name); t != nil && c.Present {
			res.Sidecars = append(res.Sidecars, sidecarOf(pod, t))
		}
	}
	return res
}

// sidecarOf sums the cpu and memory the template's containers in the
// Pod request and limit.
func sidecarOf(pod *corev1.Pod, t *catalog.Template) Sidecar {
	s := Sidecar{Template: t.Name, Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
	names := t.ContainerNames()
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		if !slices.Contains(names, c.Name) {
			continue
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			for _, pair := range [][2]corev1.ResourceList{{s.Requests, c.Resources.Requests}, {s.Limits, c.Resources.Limits}} {
				if q, ok := pair[1][r]; ok {
					sum := pair[0][r]
					sum.Add(q)
					pair[0][r] = sum
				}
			}
		}
	}
	return s
}

// claimState is the state of a template the status annotation lists.
func claimState(c inject.Claim) Template {
	switch {
	case c.Reason == "":
		return Template{c.Name, Current, ""}
	case c.Unverifiable:
		return Template{c.Name, Unverified, c.Reason}
	case !c.Present:
		return Template{c.Name, Tampered, "the status lists it, but " + c.Reason}
	case !c.Kept:
		return Template{c.Name, Tampered, "its content is not what its status entry says was injected, nor what the catalog renders today: " + c.Reason}
	}
	return Template{c.Name, Stale, fmt.Sprintf("the catalog now renders it differently (%s)", c.Reason)}
}

func hasContainerOf(pod *corev1.Pod, t *catalog.Template) bool {
	if t == nil {
		return false
	}
	names := t.ContainerNames()
	return slices.ContainsFunc(slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers), func(c corev1.Container) bool {
		return slices.Contains(names, c.Name)
	})
}
