package inject

import (
	"encoding/json"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
)

// requested returns the templates a Pod asks for: its inject annotation,
// or the namespace defaults when it has none.
func requested(pod *corev1.Pod, policies []*catalog.Policy) ([]string, error) {
	value, ok := pod.Annotations[InjectAnnotation]
	if !ok {
		var names []string
		for _, p := range policies {
			for _, name := range p.Defaults {
				if !slices.Contains(names, name) {
					names = append(names, name)
				}
			}
		}
		return names, nil
	}
	names, err := splitList(value, InjectAnnotation)
	if err != nil {
		return nil, err
	}
	if slices.Contains(names, None) {
		if len(names) > 1 {
			return nil, deny("annotation %s: %q cannot be combined with template names; use %q alone to opt out", InjectAnnotation, None, None)
		}
		return nil, nil
	}
	return names, nil
}

// splitList splits a comma list, keeping order and refusing empty and
// duplicate entries.
func splitList(value, annotation string) ([]string, error) {
	if strings.TrimSpace(value) == "" {
		return nil, deny("annotation %s is empty; list names separated by commas", annotation)
	}
	names := make([]string, 0, 1+strings.Count(value, ","))
	for p := range strings.SplitSeq(value, ",") {
		name := strings.TrimSpace(p)
		if name == "" { // every entry before it is in names
			return nil, deny("annotation %s: entry %d of %q is empty; list names separated by single commas", annotation, len(names)+1, value)
		}
		if slices.Contains(names, name) {
			return nil, deny("annotation %s: %q is listed twice", annotation, name)
		}
		names = append(names, name)
	}
	return names, nil
}

// checkAllowed denies an unknown template, or one no matching policy allows.
func checkAllowed(names []string, cat *catalog.Catalog, policies []*catalog.Policy) error {
	allowed, all := allowedNames(cat, policies)
	for _, name := range names {
		if cat.Template(name) == nil {
			return deny("template %q not found in the catalog; have %v", name, cat.Names())
		}
		if !all && !slices.Contains(allowed, name) {
			return deny("template %q is not allowed in this namespace by policy %s; allowed here: %v", name, policyNames(policies), allowed)
		}
	}
	return nil
}

func allowedNames(cat *catalog.Catalog, policies []*catalog.Policy) (names []string, all bool) {
	if len(policies) == 0 {
		return cat.Names(), true
	}
	for _, p := range policies {
		if len(p.Allowed) == 0 {
			return cat.Names(), true
		}
		for _, name := range p.Allowed {
			if !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
	}
	sort.Strings(names)
	return names, false
}

func policyNames(policies []*catalog.Policy) string {
	names := make([]string, len(policies))
	for i, p := range policies {
		names[i] = p.Name
	}
	return strings.Join(names, ", ")
}

// parameters resolves a template's parameter values from the Pod's
// annotations and the defaults, validating each. It appends them to
// values in t.Parameters order, as Template.Render takes them.
func parameters(pod *corev1.Pod, t *catalog.Template, values []string) ([]string, error) {
	const sep = "." + Domain + "/" // a parameter annotation is <template><sep><parameter>
	var keys []string
	for key := range pod.Annotations {
		if strings.HasPrefix(key, t.Name) && strings.HasPrefix(key[len(t.Name):], sep) {
			keys = append(keys, key)
		}
	}
	sort.Strings(keys) // the first bad one named is always the same
	n := len(values)
	set := make([]bool, len(t.Parameters))
	for i := range t.Parameters {
		values = append(values, t.Parameters[i].Default)
	}
	for _, key := range keys {
		name, value := key[len(t.Name)+len(sep):], pod.Annotations[key]
		i := slices.IndexFunc(t.Parameters, func(p catalog.Parameter) bool { return p.Name == name })
		if i < 0 {
			return nil, deny("annotation %s: template %q has no parameter %q; have %v", key, t.Name, name, t.ParameterNames())
		}
		if p := &t.Parameters[i]; !p.Valid(value) {
			return nil, deny("annotation %s: value %q is not valid for parameter %q of template %q (%s); must match %s", key, value, name, t.Name, p.Description, validation(p))
		}
		values[n+i], set[i] = value, true
	}
	for i := range t.Parameters {
		if p := &t.Parameters[i]; p.Required && !set[i] {
			return nil, deny("template %q needs parameter %q (%s); set the annotation %s", t.Name, p.Name, p.Description, ParameterAnnotation(t.Name, p.Name))
		}
	}
	return values, nil
}

func validation(p *catalog.Parameter) string {
	if p.Validation == "" {
		return "text without braces or control characters"
	}
	return "^" + p.Validation + "$"
}

// strayParameters warns about parameter annotations for templates the Pod
// does not get, which is most often a typo in the template name.
func strayParameters(pod *corev1.Pod, names []string) []string {
	var warnings []string
	suffix := "." + Domain + "/"
	for key := range pod.Annotations {
		i := strings.Index(key, suffix)
		if i <= 0 {
			continue
		}
		if template := key[:i]; !slices.Contains(names, template) {
			warnings = append(warnings, "annotation "+key+" sets a parameter of template \""+template+"\", which this Pod does not request")
		}
	}
	sort.Strings(warnings)
	return warnings
}

// readStatus parses the status annotation; a malformed one is reported and
// treated as empty.
func readStatus(pod *corev1.Pod) (Status, []string) {
	value, ok := pod.Annotations[StatusAnnotation]
	if !ok {
		return Status{}, nil
	}
	var s Status
	if err := json.Unmarshal([]byte(value), &s); err != nil {
		return Status{}, []string{"annotation " + StatusAnnotation + " is not valid JSON and was ignored: " + err.Error()}
	}
	return s, nil
}

func (s Status) has(name string) bool {
	return slices.ContainsFunc(s.Templates, func(i Injected) bool { return i.Name == name })
}

// targets returns the indexes of the app containers that get mounts and
// env: those named by the target annotation, or every app container.
func targets(pod *corev1.Pod, injectedNames map[string]bool) ([]int, error) {
	apps := make([]int, 0, len(pod.Spec.Containers))
	for i, c := range pod.Spec.Containers {
		if !injectedNames[c.Name] {
			apps = append(apps, i)
		}
	}
	value, ok := pod.Annotations[TargetContainersAnnotation]
	if !ok {
		return apps, nil
	}
	names, err := splitList(value, TargetContainersAnnotation)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, name := range names {
		at := slices.IndexFunc(apps, func(i int) bool { return pod.Spec.Containers[i].Name == name })
		if at < 0 {
			appNames := make([]string, len(apps))
			for j, i := range apps {
				appNames[j] = pod.Spec.Containers[i].Name
			}
			return nil, deny("annotation %s: no app container %q; have %v", TargetContainersAnnotation, name, appNames)
		}
		out = append(out, apps[at])
	}
	return out, nil
}
