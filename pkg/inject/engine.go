package inject

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
)

// Pod works out what to inject into pod. It returns a Result (with a nil
// Plan when the Pod is admitted unchanged), or a *Denial for the user's
// mistakes. pod is not modified. keys sign the status entries it writes
// and verify those the Pod arrives with; nil signs nothing (the offline
// tools without the key).
//
// The status annotation is a claim, never trusted: a template counts as
// injected before when its entry was signed with keys within Fresh and
// the Pod still holds every field of it, whatever the rest of the
// admission chain added since (a reinvocation); or else when the Pod
// holds exactly what the template renders for it today (a Pod exported
// with its status).
// The status written back names only templates injected now or verified.
func Pod(pod *corev1.Pod, nsLabels map[string]string, cat *catalog.Catalog, keys *Keys) (*Result, error) {
	policy := cat.Apply(nsLabels)
	names, warnings, err := requested(pod, policy, cat)
	if err != nil {
		return nil, err
	}
	res := &Result{Warnings: warnings}
	res.Warnings = append(res.Warnings, strayParameters(pod, names)...)
	if len(names) == 0 {
		return res, nil
	}
	claimed, w := readStatus(pod)
	res.Warnings = append(res.Warnings, w...)

	b, err := newBuilder(pod, cat, claimed)
	if err != nil {
		return nil, err
	}
	b.keepVerified(claimed, keys, res)
	for _, name := range names {
		if slices.Contains(res.Verified, name) {
			continue // injected before: reinvocation adds nothing
		}
		if err := b.add(cat.Template(name)); err != nil {
			return nil, err
		}
		res.Injected = append(res.Injected, name)
	}
	b.podResources()
	res.Warnings = append(res.Warnings, b.warnings...)
	if _, set := pod.Annotations[DefaultContainerAnnotation]; !set && len(b.plan.Containers) > 0 && len(b.targets) > 0 {
		b.plan.DefaultContainer = pod.Spec.Containers[b.targets[0]].Name
	}
	b.signStatus(keys)
	if len(res.Injected) > 0 || b.plan.Status.String() != pod.Annotations[StatusAnnotation] {
		res.Plan = b.plan
	}
	return res, nil
}

// keepVerified puts each template the status claims and the Pod holds
// into the new status, and warns about the others. A signed entry that
// verifies is kept as it is; any other the Pod holds exactly is written
// anew.
func (b *builder) keepVerified(claimed Status, keys *Keys, res *Result) {
	var unknown []string
	for _, in := range claimed.Templates { // one entry per name (readStatus)
		t := b.cat.Template(in.Name)
		if t == nil {
			unknown = append(unknown, in.Name)
			continue
		}
		if !keys.fresh(in) || b.check(in, t, keys).Reason != "" {
			// Not signed in this request: only the exact rendering
			// counts, so that nobody passes off a look-alike with
			// additions.
			if _, reason := b.verify(t); reason != "" {
				res.Warnings = append(res.Warnings, fmt.Sprintf("annotation %s names template %q, but the Pod does not carry it (%s); the entry is dropped", StatusAnnotation, in.Name, reason))
				continue
			}
			in = Injected{Name: t.Name} // signed once the plan is whole
		}
		b.plan.Status.Templates = append(b.plan.Status.Templates, in)
		res.Verified = append(res.Verified, t.Name)
	}
	if len(unknown) > 0 {
		// One warning however many: the Pod's author controls the list.
		res.Warnings = append(res.Warnings, fmt.Sprintf("annotation %s names templates that are not in the catalog: %s; those entries are dropped", StatusAnnotation, firstNames(unknown, 3)))
	}
}

// signStatus fills in each new status entry: what the Pod holds of its
// template once the plan is applied, and its signature.
func (b *builder) signStatus(keys *Keys) {
	for i, in := range b.plan.Status.Templates {
		if in.Held == "" {
			held := heldJSON(b.pod, b.plan, b.cat.Template(in.Name), b.targets)
			b.plan.Status.Templates[i] = keys.sign(Injected{Name: in.Name, Held: held})
		}
	}
}

// firstNames quotes up to n names, each briefly, and says how many more
// there are.
func firstNames(names []string, n int) string {
	var quoted []string
	for _, name := range names[:min(n, len(names))] {
		quoted = append(quoted, brief(name))
	}
	if len(names) > n {
		quoted = append(quoted, fmt.Sprintf("and %d more", len(names)-n))
	}
	return strings.Join(quoted, ", ")
}

// Wanted returns the templates the Pod should carry: what it asks for,
// or the namespace defaults, plus what the policies require, as the
// webhook decides them. A Denial when the request itself is unusable.
func Wanted(pod *corev1.Pod, nsLabels map[string]string, cat *catalog.Catalog) ([]string, error) {
	names, _, err := requested(pod, cat.Apply(nsLabels), cat)
	return names, err
}
