package admissionpolicy

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
)

// overrideKeys are the engine's override annotations, in the order it
// reads them.
var overrideKeys = []struct {
	key      string
	limit    bool
	resource corev1.ResourceName
}{{"cpu-request", false, corev1.ResourceCPU}, {"cpu-limit", true, corev1.ResourceCPU}, {"memory-request", false, corev1.ResourceMemory}, {"memory-limit", true, corev1.ResourceMemory}}

func (c *compiled) bounds(n int) (catalog.Bounds, bool) {
	o := c.t.Overrides
	if o == nil || o.Resources == nil {
		return catalog.Bounds{}, false
	}
	list := o.Resources.Requests
	if overrideKeys[n].limit {
		list = o.Resources.Limits
	}
	b, ok := list[overrideKeys[n].resource]
	return b, ok
}

func (c *compiled) opensOverrides() bool {
	return c.t.Overrides != nil && c.t.Overrides.Resources != nil
}

// withResourceSentinels is the content with each container's resources
// a sentinel when overrides open them: the Pod decides them.
func (c *compiled) withResourceSentinels() *catalog.Content {
	if !c.opensOverrides() {
		return c.content
	}
	out := *c.content
	out.InitContainers, out.Containers = slices.Clone(c.content.InitContainers), slices.Clone(c.content.Containers)
	k := 0
	for _, list := range [][]corev1.Container{out.InitContainers, out.Containers} {
		for i := range list {
			ctr := list[i].DeepCopy()
			ctr.Resources = corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceName(resourcesSentinel(k)): resource.Quantity{}}}
			list[i] = *ctr
			k++
		}
	}
	return &out
}

// resourcesOf is k when doc is the JSON of resources sentinel k, or -1.
func (c *compiled) resourcesOf(doc any) int {
	m, _ := doc.(map[string]any)
	limits, _ := m["limits"].(map[string]any)
	for key := range limits {
		if s := sentinelRE.FindStringSubmatch(key); s != nil && s[2] != "" {
			var k int
			fmt.Sscan(s[2], &k)
			return k
		}
	}
	return -1
}

// quantity is the CEL string of container k's request or limit of r:
// the Pod's override where the template opens it, else the template's.
func (c *compiled) quantity(k int, limit bool, r corev1.ResourceName) string {
	ctr := slices.Concat(c.content.InitContainers, c.content.Containers)[k]
	list := ctr.Resources.Requests
	if limit {
		list = ctr.Resources.Limits
	}
	q := list[r]
	static := lit(q.String())
	for n, o := range overrideKeys {
		if _, opened := c.bounds(n); opened && o.limit == limit && o.resource == r {
			return fmt.Sprintf("(variables.%s ? variables.%s : %s)", c.ov(n, "_set"), c.ov(n, ""), static)
		}
	}
	return static
}

func (c *compiled) resourceNames(k int) (limits, requests []corev1.ResourceName) {
	ctr := slices.Concat(c.content.InitContainers, c.content.Containers)[k]
	for r := range ctr.Resources.Limits {
		limits = append(limits, r)
	}
	for r := range ctr.Resources.Requests {
		requests = append(requests, r)
	}
	sort.Slice(limits, func(i, j int) bool { return limits[i] < limits[j] })
	sort.Slice(requests, func(i, j int) bool { return requests[i] < requests[j] })
	return limits, requests
}

// resourcesTyped builds container k's resources for the JSONPatch.
func (c *compiled) resourcesTyped(k int, path string) string {
	limits, requests := c.resourceNames(k)
	entries := func(names []corev1.ResourceName, limit bool) string {
		var out []string
		for _, r := range names {
			out = append(out, lit(string(r))+": "+c.quantity(k, limit, r))
		}
		return "{" + strings.Join(out, ", ") + "}"
	}
	return fmt.Sprintf("%s{limits: %s, requests: %s}", path, entries(limits, true), entries(requests, false))
}

// resourcesJSON is container k's resources as the held JSON has them: a
// request equal to its limit left out (the API server's default).
func (c *compiled) resourcesJSON(k int) string {
	limits, requests := c.resourceNames(k)
	var ls, rs []string
	for _, r := range limits {
		ls = append(ls, fmt.Sprintf(`'"%s":"' + %s + '"'`, r, c.quantity(k, true, r)))
	}
	for _, r := range requests {
		entry := fmt.Sprintf(`['"%s":"' + %s + '"']`, r, c.quantity(k, false, r))
		if slices.Contains(limits, r) {
			entry = fmt.Sprintf("(quantity(%s).compareTo(quantity(%s)) == 0 ? [] : %s)", c.quantity(k, false, r), c.quantity(k, true, r), entry)
		}
		rs = append(rs, entry)
	}
	requestsJSON := "''"
	if len(rs) > 0 {
		list := "(" + strings.Join(rs, " + ") + ")"
		requestsJSON = fmt.Sprintf(`(size(%s) == 0 ? '' : ',"requests":{' + %[1]s.join(',') + '}')`, list)
	}
	return fmt.Sprintf(`('{"limits":{' + %s + '}' + %s + '}')`, strings.Join(ls, " + ',' + "), requestsJSON)
}

// ov names a variable of resource override n: the template's prefix,
// "override_", the override's name in camel case (cpuLimit), then what it
// holds ("" its value, "_set").
func (c *compiled) ov(n int, what string) string {
	return c.prefix + "override_" + ident(overrideKeys[n].key) + what
}

// canonicalQuantity matches the quantities whose canonical form is the
// text itself: an integer without leading zeros and a suffix, which the
// API server would not rewrite to a bigger suffix.
const canonicalQuantity = `^(0|[1-9][0-9]{0,14})(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$`

// overrideErrors are the engine's override denials, in its order, and a
// decline for a value not written in canonical form, which the held JSON
// would hold rewritten.
func (c *compiled) overrideErrors(g *gen) string {
	out := "[]"
	for n, o := range overrideKeys {
		key := inject.ParameterAnnotation(c.t.Name, o.key)
		v := g.v(c.ov(n, ""), fmt.Sprintf("%s in variables.ann ? variables.ann[%[1]s] : ''", lit(key)))
		set := g.v(c.ov(n, "_set"), lit(key)+" in variables.ann")
		field := "requests." + string(o.resource)
		if o.limit {
			field = "limits." + string(o.resource)
		}
		notQuantity := celf(inject.DenyNotQuantity, key, expr(brief(v)))
		b, opened := c.bounds(n)
		if !opened {
			out += fmt.Sprintf(" + (%s ? [isQuantity(%s) ? %s : %s] : [])", set, v, celf(inject.DenyOverrideNotOpen, key, c.t.Name, field, c.opens()), notQuantity)
			continue
		}
		inBounds := []string{fmt.Sprintf("quantity(%s).compareTo(quantity('0')) >= 0", v)}
		lo, hi := "0", "any"
		if b.Min != nil {
			inBounds, lo = append(inBounds, fmt.Sprintf("quantity(%s).compareTo(quantity(%s)) >= 0", v, lit(b.Min.String()))), b.Min.String()
		}
		if b.Max != nil {
			inBounds, hi = append(inBounds, fmt.Sprintf("quantity(%s).compareTo(quantity(%s)) <= 0", v, lit(b.Max.String()))), b.Max.String()
		}
		outside := fmt.Sprintf("%s + %s + %s", lit("annotation "+key+": "), v, lit(fmt.Sprintf(" is outside [%s, %s], the bounds template %q sets for %s", lo, hi, c.t.Name, field)))
		canonical := fmt.Sprintf("%s.matches(%s) && !%s", v, lit(canonicalQuantity), divisible(v))
		out += fmt.Sprintf(" + (!%s ? [] : !isQuantity(%s) ? [%s] : !(%s) ? [%s] : !(%s) ? [%s] : [])", set, v, notQuantity, strings.Join(inBounds, " && "), outside, canonical,
			lit(declined(c.t.Name, fmt.Sprintf("annotation %s is not written as the API server writes the quantity back (an integer and a suffix, as 1500m or 96Mi, not 1.5 or 1536Ki), and the status would have to hold it rewritten", key))))
	}
	return "(" + out + " + " + c.requestAboveLimit() + ")"
}

// divisible is true when the quantity text v would be written with a
// bigger suffix: its integer a multiple of 1000 (or 1024 for a binary
// suffix) below the biggest suffix.
func divisible(v string) string {
	return fmt.Sprintf("(%[1]s != '0' && (%[1]s.endsWith('i') ? !%[1]s.endsWith('Ei') && int(%[1]s.substring(0, size(%[1]s) - 2)) %% 1024 == 0 : !%[1]s.endsWith('E') && int(%[1]s.matches('[a-zA-Z]$') ? %[1]s.substring(0, size(%[1]s) - 1) : %[1]s) %% 1000 == 0))", v)
}

func (c *compiled) opens() string {
	var keys []string
	for n, o := range overrideKeys {
		if _, ok := c.bounds(n); ok {
			keys = append(keys, o.key)
		}
	}
	if len(keys) == 0 {
		return "none"
	}
	return strings.Join(keys, ", ")
}

// requestAboveLimit denies overrides that leave a container with a
// request above its limit.
func (c *compiled) requestAboveLimit() string {
	if !c.opensOverrides() {
		return "[]"
	}
	out := "[]"
	for k, ctr := range slices.Concat(c.content.InitContainers, c.content.Containers) {
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			_, hasReq := ctr.Resources.Requests[r]
			_, hasLimit := ctr.Resources.Limits[r]
			if !hasReq || !hasLimit {
				continue
			}
			req, limit := c.quantity(k, false, r), c.quantity(k, true, r)
			out += fmt.Sprintf(" + (isQuantity(%[1]s) && isQuantity(%[2]s) && quantity(%[1]s).compareTo(quantity(%[2]s)) > 0 ? [%[3]s + %[1]s + ', above its limit of ' + %[2]s + %[4]s] : [])", req, limit,
				lit(fmt.Sprintf("template %q: the overrides give container %q a %s request of ", c.t.Name, ctr.Name, r)),
				lit(fmt.Sprintf("; set %s too", inject.ParameterAnnotation(c.t.Name, string(r)+"-limit"))))
		}
	}
	return "(" + out + ")"
}
