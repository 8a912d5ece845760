package inject

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	resourcehelper "k8s.io/component-helpers/resource"
)

// A Pod that sets pod-level resources (spec.resources) must hold, in
// each resource it sets, at least what its containers request together
// (kube-apiserver's validation), and its limit caps them all. The
// sidecars' share is added to each value the Pod sets, so the Pod stays
// valid and the node's accounting counts what the sidecars use: requests
// grow by what the added containers add to the aggregate of the Pod's
// container requests (as the validation computes it, init containers
// and native sidecars included), limits by the limits of the added
// containers that run beside the app. Values the Pod does not set stay
// unset.

// podResources plans the Pod's new pod-level values and says so in a
// warning.
func (b *builder) podResources() {
	set := b.pod.Spec.Resources
	if set == nil || (len(set.Requests) == 0 && len(set.Limits) == 0) || len(b.plan.InitContainers)+len(b.plan.Containers) == 0 {
		return
	}
	after := b.pod.DeepCopy()
	after.Spec.InitContainers = append(after.Spec.InitContainers, b.plan.InitContainers...)
	after.Spec.Containers = append(after.Spec.Containers, b.plan.Containers...)
	before, grown := containerRequests(b.pod), containerRequests(after)
	beside, first := addedLimits(b.plan)
	out := &corev1.ResourceRequirements{}
	var changes []string
	raise := func(kind string, list corev1.ResourceList, by func(corev1.ResourceName) resource.Quantity, into *corev1.ResourceList) {
		for _, name := range slices.Sorted(maps.Keys(list)) {
			d := by(name)
			if d.Sign() <= 0 {
				continue
			}
			was := list[name]
			v := was.DeepCopy()
			v.Add(d)
			if *into == nil {
				*into = corev1.ResourceList{}
			}
			(*into)[name] = v
			changes = append(changes, fmt.Sprintf("%s %s %s to %s", kind, name, was.String(), v.String()))
		}
	}
	raise("requests", set.Requests, func(n corev1.ResourceName) resource.Quantity {
		d := grown[n].DeepCopy()
		d.Sub(before[n])
		return d
	}, &out.Requests)
	raise("limits", set.Limits, func(n corev1.ResourceName) resource.Quantity {
		d := beside[n].DeepCopy()
		if need := first[n].DeepCopy(); need.Cmp(set.Limits[n]) > 0 { // an init container alone above the Pod's limit
			need.Sub(set.Limits[n])
			if need.Cmp(d) > 0 {
				d = need
			}
		}
		return d
	}, &out.Limits)
	if len(changes) == 0 {
		return
	}
	b.plan.PodResources = out
	b.warnings = append(b.warnings, "the Pod's pod-level resources grow by the sidecars' share: "+strings.Join(changes, ", "))
}

// containerRequests is the aggregate of the Pod's container requests, as
// kube-apiserver's validation of pod-level resources computes it.
func containerRequests(pod *corev1.Pod) corev1.ResourceList {
	return resourcehelper.AggregateContainerRequests(pod, resourcehelper.PodResourcesOptions{})
}

// addedLimits sums the limits of the containers the plan adds that run
// beside the app (regular containers and native sidecars), and takes the
// largest of those that run first (plain init containers): the Pod's
// limit must hold the first together and each of the second alone.
func addedLimits(plan *Plan) (beside, first corev1.ResourceList) {
	beside, first = corev1.ResourceList{}, corev1.ResourceList{}
	for _, c := range slices.Concat(plan.InitContainers, plan.Containers) {
		plain := c.RestartPolicy == nil && slices.ContainsFunc(plan.InitContainers, func(i corev1.Container) bool { return i.Name == c.Name })
		for name, q := range c.Resources.Limits {
			if !plain {
				sum := beside[name]
				sum.Add(q)
				beside[name] = sum
			} else if largest := first[name]; q.Cmp(largest) > 0 {
				first[name] = q
			}
		}
	}
	return beside, first
}
