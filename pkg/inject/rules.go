package inject

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	resourcehelper "k8s.io/component-helpers/resource"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
)

// Rules are a namespace's resource rules that admission enforces after
// the webhook: its LimitRanges (LimitRanger) and ResourceQuotas.
type Rules struct {
	LimitRanges []corev1.LimitRange
	Quotas      []corev1.ResourceQuota
}

// CheckRules checks what a plan adds to a Pod against the namespace's
// rules before the Pod is patched, so that a rule the sidecars break is
// said in the injector's words, naming the template, what it renders,
// the rule, and the override that would fit (or that the catalog must
// change), rather than the API server's, which name no template. A
// LimitRange the sidecars break is a Denial; a ResourceQuota the
// sidecars' share pushes over is a warning (the quota's usage the webhook
// reads may lag; ResourceQuota admission decides).
func CheckRules(pod *corev1.Pod, plan *Plan, cat *catalog.Catalog, rules Rules) ([]string, error) {
	if plan == nil || len(plan.InitContainers)+len(plan.Containers) == 0 {
		return nil, nil
	}
	added := slices.Concat(plan.InitContainers, plan.Containers)
	for _, lr := range rules.LimitRanges {
		for _, item := range lr.Spec.Limits {
			if item.Type != corev1.LimitTypeContainer {
				continue
			}
			for _, c := range added {
				if err := checkContainerLimits(c, item, lr.Name, templateOf(cat, plan, c.Name)); err != nil {
					return nil, err
				}
			}
		}
	}
	return quotaWarnings(pod, plan, rules.Quotas), nil
}

// templateOf is the template of the plan that renders container name.
func templateOf(cat *catalog.Catalog, plan *Plan, name string) *catalog.Template {
	for _, in := range plan.Status.Templates {
		if t := cat.Template(in.Name); t != nil && slices.Contains(t.ContainerNames(), name) {
			return t
		}
	}
	return nil
}

// checkContainerLimits checks one added container against one Container
// item of a LimitRange, as LimitRanger does once it has filled in the
// item's defaults.
func checkContainerLimits(c corev1.Container, item corev1.LimitRangeItem, lrName string, t *catalog.Template) error {
	if t == nil {
		return nil // the plan adds no container that is not a template's
	}
	names := slices.Sorted(maps.Keys(item.Min))
	names = append(names, slices.Sorted(maps.Keys(item.Max))...)
	names = append(names, slices.Sorted(maps.Keys(item.MaxLimitRequestRatio))...)
	for _, name := range slices.Compact(names) {
		request, hasRequest := effective(c.Resources.Requests, item.DefaultRequest, name)
		limit, hasLimit := effective(c.Resources.Limits, item.Default, name)
		if !hasRequest && hasLimit {
			request, hasRequest = limit, true // the API server's default
		}
		renders := fmt.Sprintf("template %q renders container %q with %s", t.Name, c.Name, describe(name, request, hasRequest, limit, hasLimit))
		rule := func(what string) string { return fmt.Sprintf("LimitRange %q of this namespace %s", lrName, what) }
		if lo, ok := item.Min[name]; ok {
			if !hasRequest || request.Cmp(lo) < 0 {
				return deny("%s; %s: %s", renders, rule(fmt.Sprintf("wants a %s request of at least %s per container", name, lo.String())), fit(t, name, false, lo, 1))
			}
			if hasLimit && limit.Cmp(lo) < 0 {
				return deny("%s; %s: %s", renders, rule(fmt.Sprintf("wants a %s limit of at least %s per container", name, lo.String())), fit(t, name, true, lo, 1))
			}
		}
		if hi, ok := item.Max[name]; ok {
			if !hasLimit || limit.Cmp(hi) > 0 {
				return deny("%s; %s: %s", renders, rule(fmt.Sprintf("allows a %s limit of at most %s per container", name, hi.String())), fit(t, name, true, hi, -1))
			}
			if request.Cmp(hi) > 0 {
				return deny("%s; %s: %s", renders, rule(fmt.Sprintf("allows a %s request of at most %s per container", name, hi.String())), fit(t, name, false, hi, -1))
			}
		}
		if ratio, ok := item.MaxLimitRequestRatio[name]; ok && hasLimit && hasRequest && request.Sign() > 0 {
			got := float64(limit.MilliValue()) / float64(request.MilliValue())
			if got > ratio.AsApproximateFloat64() {
				need := resource.NewMilliQuantity(int64(math.Ceil(float64(limit.MilliValue())/ratio.AsApproximateFloat64())), request.Format)
				how := fit(t, name, false, *need, 1)
				return deny("%s, a limit %.4g times its request; %s: %s", renders, got, rule(fmt.Sprintf("allows a %s limit of at most %s times its request", name, ratio.String())), how)
			}
		}
	}
	return nil
}

// effective is a container's value of name, or else the LimitRange's
// default for it.
func effective(own, defaults corev1.ResourceList, name corev1.ResourceName) (resource.Quantity, bool) {
	if q, ok := own[name]; ok {
		return q, true
	}
	q, ok := defaults[name]
	return q, ok
}

func describe(name corev1.ResourceName, request resource.Quantity, hasRequest bool, limit resource.Quantity, hasLimit bool) string {
	var parts []string
	if hasRequest {
		parts = append(parts, fmt.Sprintf("a %s request of %s", name, request.String()))
	} else {
		parts = append(parts, fmt.Sprintf("no %s request", name))
	}
	if hasLimit {
		parts = append(parts, fmt.Sprintf("a limit of %s", limit.String()))
	} else {
		parts = append(parts, "no limit")
	}
	return strings.Join(parts, " and ")
}

// fit says how the Pod could fit the rule: the override of name's limit
// (or request) that sets it to value, when the template opens one whose
// bounds hold value (dir 1: at least value, -1: at most), or else that
// the catalog must change.
func fit(t *catalog.Template, name corev1.ResourceName, limit bool, value resource.Quantity, dir int) string {
	for _, o := range overrideKeys {
		if o.resource != name || o.limit != limit {
			continue
		}
		b, open := bounds(t, o)
		if !open || (b.Min != nil && dir < 0 && value.Cmp(*b.Min) < 0) || (b.Max != nil && dir > 0 && value.Cmp(*b.Max) > 0) {
			break
		}
		switch { // the value the rule needs, within the template's bounds
		case dir > 0 && b.Min != nil && value.Cmp(*b.Min) < 0:
			value = *b.Min
		case dir < 0 && b.Max != nil && value.Cmp(*b.Max) > 0:
			value = *b.Max
		}
		return fmt.Sprintf("set the annotation %s: %q on the Pod (the template allows %s)", ParameterAnnotation(t.Name, o.key), value.String(), describeBounds(b))
	}
	field := "request"
	if limit {
		field = "limit"
	}
	return fmt.Sprintf("template %q opens no override of its %s %s that fits (it opens %s); ask the cluster admin to change the template or the LimitRange", t.Name, name, field, opens(t))
}

// quotaKeys are the quota resources a Pod's containers count against,
// and how: its requests or its limits.
var quotaKeys = []struct {
	key      corev1.ResourceName
	resource corev1.ResourceName
	limits   bool
}{
	{corev1.ResourceRequestsCPU, corev1.ResourceCPU, false},
	{corev1.ResourceCPU, corev1.ResourceCPU, false},
	{corev1.ResourceRequestsMemory, corev1.ResourceMemory, false},
	{corev1.ResourceMemory, corev1.ResourceMemory, false},
	{corev1.ResourceRequestsEphemeralStorage, corev1.ResourceEphemeralStorage, false},
	{corev1.ResourceLimitsCPU, corev1.ResourceCPU, true},
	{corev1.ResourceLimitsMemory, corev1.ResourceMemory, true},
	{corev1.ResourceLimitsEphemeralStorage, corev1.ResourceEphemeralStorage, true},
}

// quotaWarnings names each quota the Pod fits without its sidecars and
// not with them, and the sidecars' share. Quotas with scopes are left
// to ResourceQuota admission.
func quotaWarnings(pod *corev1.Pod, plan *Plan, quotas []corev1.ResourceQuota) []string {
	after := pod.DeepCopy()
	after.Spec.InitContainers = append(after.Spec.InitContainers, plan.InitContainers...)
	after.Spec.Containers = append(after.Spec.Containers, plan.Containers...)
	if r := plan.PodResources; r != nil { // the raised values over those the Pod sets
		for _, list := range []struct{ from, to *corev1.ResourceList }{{&r.Requests, &after.Spec.Resources.Requests}, {&r.Limits, &after.Spec.Resources.Limits}} {
			maps.Copy(*list.to, *list.from)
		}
	}
	usage := func(p *corev1.Pod, limits bool) corev1.ResourceList {
		if limits {
			return resourcehelper.PodLimits(p, resourcehelper.PodResourcesOptions{})
		}
		return resourcehelper.PodRequests(p, resourcehelper.PodResourcesOptions{})
	}
	var out []string
	for _, q := range quotas {
		if len(q.Spec.Scopes) > 0 || q.Spec.ScopeSelector != nil {
			continue
		}
		for _, k := range quotaKeys {
			hard, ok := q.Status.Hard[k.key]
			if !ok {
				continue
			}
			left := hard.DeepCopy()
			left.Sub(q.Status.Used[k.key])
			app, all := usage(pod, k.limits)[k.resource], usage(after, k.limits)[k.resource]
			if app.Cmp(left) <= 0 && all.Cmp(left) > 0 {
				share, used := all.DeepCopy(), q.Status.Used[k.key]
				share.Sub(app)
				out = append(out, fmt.Sprintf("ResourceQuota %q: %s would be over its hard limit of %s (%s used): the Pod asks %s and its sidecars %s more (%s); ask for more quota, or fewer or smaller sidecars", q.Name, k.key, hard.String(), used.String(), app.String(), share.String(), strings.Join(plan.Status.names(), ", ")))
			}
		}
	}
	return out
}

// names lists the templates of the status.
func (s Status) names() []string {
	var out []string
	for _, in := range s.Templates {
		out = append(out, in.Name)
	}
	return out
}
