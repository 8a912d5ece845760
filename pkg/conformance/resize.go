package conformance

import (
	"fmt"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// resizable are the resources a running container's resize may change.
var resizable = []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory}

// resizes gives the Pod's containers their new cpu and memory (by
// container name), or says why one cannot change in place. Kubernetes
// resizes (the pods/resize subresource) the cpu and memory of regular
// containers and native sidecars and nothing else, never removes a
// request or limit (the catalog renders all four of every container),
// and keeps pod-level resources apart; a container whose resizePolicy
// restarts it on a resource would restart. Other resources the Pod's
// container holds (a LimitRange's ephemeral-storage) stay as they are.
func resizes(pod *corev1.Pod, rendered map[string]corev1.Container) ([]Resize, error) {
	var out []Resize
	for _, name := range slices.Sorted(maps.Keys(rendered)) {
		at, c := find(pod, name)
		if c == nil {
			continue
		}
		to := *c.Resources.DeepCopy()
		for _, r := range resizable {
			for _, pair := range [][2]corev1.ResourceList{{rendered[name].Resources.Requests, to.Requests}, {rendered[name].Resources.Limits, to.Limits}} {
				if q, ok := pair[0][r]; ok && pair[1] != nil {
					pair[1][r] = q
				}
			}
		}
		if to.Requests == nil || to.Limits == nil || equality.Semantic.DeepEqual(c.Resources, to) {
			continue // nothing to resize, or no resources at all: the classification says why
		}
		if err := resizeAllowed(pod, at, c, to); err != nil {
			return nil, fmt.Errorf("container %q: %w", name, err)
		}
		out = append(out, Resize{Init: at.Init, Index: at.Index, Name: name, From: c.Resources, To: to})
		c.Resources = to
	}
	return out, nil
}

func resizeAllowed(pod *corev1.Pod, at Image, c *corev1.Container, to corev1.ResourceRequirements) error {
	switch {
	case at.Init && (c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways):
		return fmt.Errorf("an init container that has run cannot be resized")
	case pod.Spec.Resources != nil:
		return fmt.Errorf("the Pod sets pod-level resources (spec.resources), which a resize of its containers would have to move too")
	}
	for _, p := range c.ResizePolicy {
		if p.RestartPolicy == corev1.RestartContainer && changes(c.Resources, to, p.ResourceName) {
			return fmt.Errorf("its resizePolicy restarts it when %s changes", p.ResourceName)
		}
	}
	return nil
}

// changes reports whether resource r's request or limit differs.
func changes(from, to corev1.ResourceRequirements, r corev1.ResourceName) bool {
	for _, pair := range [][2]corev1.ResourceList{{from.Requests, to.Requests}, {from.Limits, to.Limits}} {
		a, aok := pair[0][r]
		b, bok := pair[1][r]
		if aok != bok || aok && !a.Equal(b) {
			return true
		}
	}
	return false
}

// SameCPUMemory reports whether a and b request and limit the same cpu
// and memory: a resize to b is done once a container runs with a.
func SameCPUMemory(a, b corev1.ResourceRequirements) bool {
	return !changes(a, b, corev1.ResourceCPU) && !changes(a, b, corev1.ResourceMemory)
}

// sameQoS says why the resized Pod would change its QoS class, which
// Kubernetes refuses in place; nil when it keeps it.
func sameQoS(before, after *corev1.Pod) error {
	if a, b := qosClass(before), qosClass(after); a != b {
		return fmt.Errorf("the new cpu and memory would move the Pod from QoS class %s to %s, which a resize cannot", a, b)
	}
	return nil
}

// qosClass is the Pod's QoS class as Kubernetes computes it
// (pkg/apis/core/v1/helper/qos): Guaranteed when every container has
// cpu and memory limits equal to their requests, BestEffort when none
// sets any, Burstable otherwise.
func qosClass(pod *corev1.Pod) corev1.PodQOSClass {
	guaranteed, any := true, false
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		for _, r := range resizable {
			req, hasReq := c.Resources.Requests[r]
			lim, hasLim := c.Resources.Limits[r]
			if hasReq && !req.IsZero() || hasLim && !lim.IsZero() {
				any = true
			}
			if !hasLim || hasReq && !req.Equal(lim) {
				guaranteed = false
			}
		}
	}
	switch {
	case !any:
		return corev1.PodQOSBestEffort
	case guaranteed:
		return corev1.PodQOSGuaranteed
	}
	return corev1.PodQOSBurstable
}
