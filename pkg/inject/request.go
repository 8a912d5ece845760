package inject

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
)

// requested returns the templates the Pod gets, in order: what its inject
// annotation asks for (or the namespace defaults when it asks nothing),
// then what the policies require. The opt-out label and "none" never
// remove a required template.
func requested(pod *corev1.Pod, policy catalog.Applied, cat *catalog.Catalog) (names, warnings []string, err error) {
	value, annotated := pod.Annotations[InjectAnnotation]
	optedOut := pod.Labels[InjectionLabel] == "disabled"
	switch {
	case optedOut:
	case annotated:
		if names, err = splitList(value, InjectAnnotation); err != nil {
			return nil, nil, err
		}
		if slices.Contains(names, None) {
			if len(names) > 1 {
				return nil, nil, deny(DenyNoneCombined, InjectAnnotation, None, None)
			}
			names = nil
		}
		for _, name := range names {
			if err := checkAllowed(name, policy, cat); err != nil {
				return nil, nil, err
			}
		}
	default:
		for _, name := range policy.Defaults {
			if policy.Allows(name) {
				names = append(names, name)
				continue
			}
			warnings = append(warnings, fmt.Sprintf("default template %q is not injected: policy %s does not allow it", name, strings.Join(policy.Restricting(name), ", ")))
		}
	}
	var forced []string // required templates the Pod did not ask for
	for _, name := range policy.Required {
		if !policy.Allows(name) { // the catalog refuses this where it can
			return nil, nil, deny("template %q is required by policy %s but not allowed by policy %s; ask the cluster admin to fix the catalog", name, strings.Join(policy.Requiring(name), ", "), strings.Join(policy.Restricting(name), ", "))
		}
		if !slices.Contains(names, name) {
			names = append(names, name)
			forced = append(forced, name)
		}
	}
	if len(forced) > 0 && (optedOut || annotated) {
		how := "label " + InjectionLabel + "=disabled"
		if !optedOut {
			how = "annotation " + InjectAnnotation + "=" + value
		}
		var by []string
		for _, name := range forced {
			by = append(by, fmt.Sprintf("%s (policy %s)", name, strings.Join(policy.Requiring(name), ", ")))
		}
		warnings = append(warnings, fmt.Sprintf("%s does not opt out of required templates; injected anyway: %s", how, strings.Join(by, ", ")))
	}
	return names, warnings, nil
}

// checkAllowed denies an unknown template, or one the namespace's
// policies do not allow.
func checkAllowed(name string, policy catalog.Applied, cat *catalog.Catalog) error {
	if cat.Template(name) == nil {
		return deny(DenyUnknownTemplate, brief(name), firstNames(cat.Names(), 20))
	}
	if !policy.Allows(name) {
		return deny("template %q is not allowed in this namespace by policy %s; allowed here: %v", name, strings.Join(policy.Restricting(name), ", "), policy.Allowed)
	}
	return nil
}

// The denials the compiled admission policies make too, in the same
// words: pkg/admissionpolicy builds each in CEL from its format.
const (
	DenyNoneCombined    = "annotation %s: %q cannot be combined with template names; use %q alone to opt out"
	DenyUnknownTemplate = "template %s not found in the catalog; have %s"
	DenyListEmpty       = "annotation %s is empty; list names separated by commas"
	DenyListLong        = "annotation %s lists %d entries; at most %d are allowed"
	DenyListEntryEmpty  = "annotation %s: entry %d of %s is empty; list names separated by single commas"
	DenyListTwice       = "annotation %s: %s is listed twice"
	DenyNoParameter     = "annotation %s: template %q has no parameter %s; have %v"
	DenyNeedsParameter  = "template %q needs parameter %q (%s); set the annotation %s"
	DenyNotQuantity     = "annotation %s: %s is not a quantity such as 100m or 64Mi"
	DenyOverrideNotOpen = "annotation %s: template %q does not let Pods set %s; it opens %s"
)

// MaxListEntries caps the names one list annotation may hold: far more
// than any Pod needs, few enough that a list costs nothing to check.
const MaxListEntries = 128

// splitList splits a comma list, keeping order and refusing empty and
// duplicate entries, and lists of more than MaxListEntries.
func splitList(value, annotation string) ([]string, error) {
	if strings.TrimSpace(value) == "" {
		return nil, deny(DenyListEmpty, annotation)
	}
	if n := strings.Count(value, ",") + 1; n > MaxListEntries {
		return nil, deny(DenyListLong, annotation, n, MaxListEntries)
	}
	var names []string
	seen := map[string]bool{}
	for p := range strings.SplitSeq(value, ",") {
		name := strings.TrimSpace(p)
		if name == "" { // every entry before it is in names
			return nil, deny(DenyListEntryEmpty, annotation, len(names)+1, brief(value))
		}
		if seen[name] {
			return nil, deny(DenyListTwice, annotation, brief(name))
		}
		seen[name] = true
		names = append(names, name)
	}
	return names, nil
}

// BriefLen is how much of a value a denial or warning quotes.
const BriefLen = 64

// brief quotes s, or its first BriefLen bytes and how long it is: the
// Pod's author controls the value, and a denial that echoes it whole
// turns a megabyte of annotation into a megabyte of answer and of logs.
func brief(s string) string {
	if len(s) <= BriefLen {
		return strconv.Quote(s)
	}
	cut := BriefLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%q... (%d bytes)", s[:cut], len(s))
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
			warnings = append(warnings, "annotation "+key+" sets a parameter of template \""+template+"\", which this Pod does not get")
		}
	}
	sort.Strings(warnings)
	if len(warnings) > 3 { // the Pod's author controls how many
		warnings = append(warnings[:3], fmt.Sprintf("%d more annotations set parameters of templates this Pod does not get", len(warnings)-3))
	}
	return warnings
}

// readStatus parses the status annotation: what the Pod claims to carry,
// to be verified, one entry per template name (the first). A malformed
// one is reported and treated as empty.
func readStatus(pod *corev1.Pod) (Status, []string) {
	value, ok := pod.Annotations[StatusAnnotation]
	if !ok {
		return Status{}, nil
	}
	var s Status
	if err := json.Unmarshal([]byte(value), &s); err != nil {
		return Status{}, []string{"annotation " + StatusAnnotation + " is not valid JSON and was ignored: " + err.Error()}
	}
	seen := map[string]bool{}
	s.Templates = slices.DeleteFunc(s.Templates, func(in Injected) bool {
		dup := seen[in.Name]
		seen[in.Name] = true
		return dup
	})
	return s, nil
}
