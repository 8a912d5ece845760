package inject

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
)

// override is one request or limit a Pod sets for every container of a
// template, through the annotation <template>.sidecars.podpatterns.io/<key>.
type override struct {
	key      string // "cpu-request", as in the annotation
	limit    bool   // a limit, else a request
	resource corev1.ResourceName
	value    resource.Quantity
}

// overrideKeys are the annotation keys in the order they are read.
var overrideKeys = []override{
	{key: "cpu-request", resource: corev1.ResourceCPU},
	{key: "cpu-limit", limit: true, resource: corev1.ResourceCPU},
	{key: "memory-request", resource: corev1.ResourceMemory},
	{key: "memory-limit", limit: true, resource: corev1.ResourceMemory},
}

func (o override) field() string {
	if o.limit {
		return "limits." + string(o.resource)
	}
	return "requests." + string(o.resource)
}

// overrides reads the resource overrides the Pod sets for t, each a
// quantity within the bounds the template opens, and never below zero
// whatever the bounds say.
func overrides(pod *corev1.Pod, t *catalog.Template) ([]override, error) {
	var out []override
	for _, o := range overrideKeys {
		key := ParameterAnnotation(t.Name, o.key)
		value, ok := pod.Annotations[key]
		if !ok {
			continue
		}
		q, err := resource.ParseQuantity(value)
		if err != nil {
			return nil, deny(DenyNotQuantity, key, brief(value))
		}
		b, opened := bounds(t, o)
		if !opened {
			return nil, deny(DenyOverrideNotOpen, key, t.Name, o.field(), opens(t))
		}
		if q.Sign() < 0 || (b.Min != nil && q.Cmp(*b.Min) < 0) || (b.Max != nil && q.Cmp(*b.Max) > 0) {
			return nil, deny("annotation %s: %s is outside %s, the bounds template %q sets for %s", key, q.String(), describeBounds(b), t.Name, o.field())
		}
		o.value = q
		out = append(out, o)
	}
	return out, nil
}

func bounds(t *catalog.Template, o override) (catalog.Bounds, bool) {
	if t.Overrides == nil || t.Overrides.Resources == nil {
		return catalog.Bounds{}, false
	}
	list := t.Overrides.Resources.Requests
	if o.limit {
		list = t.Overrides.Resources.Limits
	}
	b, ok := list[o.resource]
	return b, ok
}

// opens lists the annotation keys t opens, for a denial.
func opens(t *catalog.Template) string {
	var keys []string
	for _, o := range overrideKeys {
		if _, ok := bounds(t, o); ok {
			keys = append(keys, o.key)
		}
	}
	if len(keys) == 0 {
		return "none"
	}
	return strings.Join(keys, ", ")
}

func describeBounds(b catalog.Bounds) string {
	lo, hi := "0", "any"
	if b.Min != nil {
		lo = b.Min.String()
	}
	if b.Max != nil {
		hi = b.Max.String()
	}
	return "[" + lo + ", " + hi + "]"
}

// withOverrides returns c with its own resources, overridden.
func withOverrides(c corev1.Container, ovs []override) corev1.Container {
	if len(ovs) == 0 {
		return c
	}
	c.Resources = *c.Resources.DeepCopy()
	for _, o := range ovs {
		list := &c.Resources.Requests
		if o.limit {
			list = &c.Resources.Limits
		}
		if *list == nil {
			*list = corev1.ResourceList{}
		}
		(*list)[o.resource] = o.value
	}
	return c
}

// checkOverrides denies overrides that leave a container of t with a
// request above its limit.
func checkOverrides(t *catalog.Template, content *catalog.Content, ovs []override) error {
	if len(ovs) == 0 {
		return nil
	}
	for _, c := range slices.Concat(content.InitContainers, content.Containers) {
		c = withOverrides(c, ovs)
		for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, hasReq := c.Resources.Requests[name]
			limit, hasLimit := c.Resources.Limits[name]
			if hasReq && hasLimit && req.Cmp(limit) > 0 {
				return deny("template %q: the overrides give container %q a %s request of %s, above its limit of %s; set %s too", t.Name, c.Name, name, req.String(), limit.String(), ParameterAnnotation(t.Name, string(name)+"-limit"))
			}
		}
	}
	return nil
}

// overridesKey is the overrides as the status hash covers them.
func overridesKey(ovs []override) string {
	var b strings.Builder
	for _, o := range ovs {
		fmt.Fprintf(&b, "|%s=%s", o.key, o.value.String())
	}
	return b.String()
}
