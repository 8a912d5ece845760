package admissionpolicy

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
)

// selectTemplates declares the variables that say which templates the Pod
// gets, as inject.Wanted decides them: names (in order) and early (the
// denials of the request itself, the engine's first one first).
func (g *gen) selectTemplates(cat *catalog.Catalog) {
	g.v("ann", "has(object.metadata.annotations) ? object.metadata.annotations : {}")
	g.v("nsLabels", "has(namespaceObject.metadata.labels) ? namespaceObject.metadata.labels : {}")
	policies := cat.AllPolicies()
	var allows []string
	for i, p := range policies {
		g.v(fmt.Sprintf("pol%d", i), selector(p.NamespaceSelector, "variables.nsLabels"))
	}
	for _, name := range cat.Names() {
		allows = append(allows, lit(name)+": "+g.matching(policies, func(p *catalog.Policy) bool {
			return len(p.Allowed) > 0 && !slices.Contains(p.Allowed, name)
		}, "!(", " || ", ")", "true"))
	}
	g.v("allows", "{"+strings.Join(allows, ", ")+"}")
	g.v("allowedHere", lits(slices.Sorted(slices.Values(cat.Names())))+".filter(n, variables.allows[n])")
	g.v("defaults", "("+g.union(policies, func(p *catalog.Policy) []string { return p.Defaults })+").distinct()")
	g.v("required", "("+g.union(policies, func(p *catalog.Policy) []string { return p.Required })+").distinct()")
	g.v("optedOut", fmt.Sprintf("has(object.metadata.labels) && %s in object.metadata.labels && object.metadata.labels[%[1]s] == 'disabled'", lit(inject.InjectionLabel)))
	g.v("annotated", fmt.Sprintf("!variables.optedOut && %s in variables.ann", lit(inject.InjectAnnotation)))
	g.list("entries", "variables.annotated", "variables.ann["+lit(inject.InjectAnnotation)+"]", inject.InjectAnnotation)
	g.v("asked", "variables.optedOut ? [] : variables.annotated ? ('none' in variables.entries ? [] : variables.entries) : variables.defaults.filter(n, variables.allows[n])")
	g.v("names", "variables.asked + variables.required.filter(n, !(n in variables.asked))")

	g.v("early", fmt.Sprintf(`variables.entriesErr + (size(variables.entriesErr) == 0 && 'none' in variables.entries && size(variables.entries) > 1 ? [%s] : []) + (size(variables.entriesErr) == 0 && !('none' in variables.entries) ? variables.entries.filter(n, !(n in variables.allows) || !variables.allows[n]).map(n, !(n in variables.allows) ? %s : %s) : []) + variables.required.filter(n, !variables.allows[n]).map(n, %s)`,
		celf(inject.DenyNoneCombined, inject.InjectAnnotation, inject.None, inject.None), celf(inject.DenyUnknownTemplate, expr(brief("n")), firstNames(cat.Names(), 20)),
		g.byName(cat, func(name string) string { return g.notAllowed(policies, name) }),
		g.byName(cat, func(name string) string { return g.requiredNotAllowed(policies, name) })))
}

// list declares name, the entries of a comma list annotation (when on is
// true and the value is a list the engine accepts), and name+"Err", the
// engine's denial of the value, if any.
func (g *gen) list(name, on, value, annotation string) {
	g.v(name+"Raw", fmt.Sprintf("%s ? %s : ''", on, value))
	g.v(name+"Count", fmt.Sprintf("size(variables.%sRaw.split(','))", name))
	g.v(name, fmt.Sprintf("(%s) && variables.%sRaw.trim() != '' && variables.%sCount <= %d ? variables.%[2]sRaw.split(',').map(s, s.trim()) : []", on, name, name, inject.MaxListEntries))
	g.v(name+"Bad", fmt.Sprintf("lists.range(size(variables.%s)).filter(i, variables.%[1]s[i] == '' || variables.%[1]s[i] in variables.%[1]s.slice(0, i))", name))
	g.v(name+"Err", fmt.Sprintf(`!(%[1]s) ? [] : variables.%[2]sRaw.trim() == '' ? [%[3]s] : variables.%[2]sCount > %[4]d ? [%[5]s] : size(variables.%[2]sBad) == 0 ? [] : variables.%[2]s[variables.%[2]sBad[0]] == '' ? [%[6]s] : [%[7]s]`,
		on, name, celf(inject.DenyListEmpty, annotation), inject.MaxListEntries,
		celf(inject.DenyListLong, annotation, expr("string(variables."+name+"Count)"), inject.MaxListEntries),
		celf(inject.DenyListEntryEmpty, annotation, expr("string(variables."+name+"Bad[0] + 1)"), expr(brief("variables."+name+"Raw"))),
		celf(inject.DenyListTwice, annotation, expr(brief("variables."+name+"[variables."+name+"Bad[0]]")))))
}

// byName is a CEL expression of n, a catalog template's name: each
// name's own expression, chosen by a chain of conditionals.
func (g *gen) byName(cat *catalog.Catalog, expr func(name string) string) string {
	out := "''"
	names := cat.Names()
	for i := len(names) - 1; i >= 0; i-- {
		out = fmt.Sprintf("n == %s ? %s : %s", lit(names[i]), expr(names[i]), out)
	}
	return "(" + out + ")"
}

func (g *gen) notAllowed(policies []*catalog.Policy, name string) string {
	restricting := g.policyNames(policies, func(p *catalog.Policy) bool { return len(p.Allowed) > 0 && !slices.Contains(p.Allowed, name) })
	return fmt.Sprintf("%s + %s.join(', ') + '; allowed here: [' + variables.allowedHere.join(' ') + ']'",
		lit(fmt.Sprintf("template %q is not allowed in this namespace by policy ", name)), restricting)
}

func (g *gen) requiredNotAllowed(policies []*catalog.Policy, name string) string {
	requiring := g.policyNames(policies, func(p *catalog.Policy) bool { return slices.Contains(p.Required, name) })
	restricting := g.policyNames(policies, func(p *catalog.Policy) bool { return len(p.Allowed) > 0 && !slices.Contains(p.Allowed, name) })
	return fmt.Sprintf("%s + %s.join(', ') + ' but not allowed by policy ' + %s.join(', ') + '; ask the cluster admin to fix the catalog'",
		lit(fmt.Sprintf("template %q is required by policy ", name)), requiring, restricting)
}

// policyNames is the CEL list of the names of the matching policies for
// which pick is true, in catalog order.
func (g *gen) policyNames(policies []*catalog.Policy, pick func(*catalog.Policy) bool) string {
	out := "[]"
	for i, p := range policies {
		if pick(p) {
			out += fmt.Sprintf(" + (variables.pol%d ? [%s] : [])", i, lit(p.Name))
		}
	}
	return "(" + out + ")"
}

// matching joins "variables.polN" for each policy for which pick is true,
// or gives none when there is no such policy.
func (g *gen) matching(policies []*catalog.Policy, pick func(*catalog.Policy) bool, open, sep, close, none string) string {
	var terms []string
	for i, p := range policies {
		if pick(p) {
			terms = append(terms, fmt.Sprintf("variables.pol%d", i))
		}
	}
	if len(terms) == 0 {
		return none
	}
	return open + strings.Join(terms, sep) + close
}

// union is the CEL concatenation of the lists of the matching policies.
func (g *gen) union(policies []*catalog.Policy, list func(*catalog.Policy) []string) string {
	out := "[]"
	for i, p := range policies {
		if l := list(p); len(l) > 0 {
			out += fmt.Sprintf(" + (variables.pol%d ? %s : [])", i, lits(l))
		}
	}
	return out
}

// selector is a label selector as a CEL condition on the labels map m.
func selector(s *metav1.LabelSelector, m string) string {
	if s == nil {
		return "false"
	}
	terms := []string{"true"}
	for _, k := range slices.Sorted(maps.Keys(s.MatchLabels)) {
		terms = append(terms, fmt.Sprintf("(%[1]s in %[2]s && %[2]s[%[1]s] == %[3]s)", lit(k), m, lit(s.MatchLabels[k])))
	}
	for _, e := range s.MatchExpressions {
		k := lit(e.Key)
		switch e.Operator {
		case metav1.LabelSelectorOpIn:
			terms = append(terms, fmt.Sprintf("(%[1]s in %[2]s && %[2]s[%[1]s] in %[3]s)", k, m, lits(e.Values)))
		case metav1.LabelSelectorOpNotIn:
			terms = append(terms, fmt.Sprintf("!(%[1]s in %[2]s && %[2]s[%[1]s] in %[3]s)", k, m, lits(e.Values)))
		case metav1.LabelSelectorOpExists:
			terms = append(terms, fmt.Sprintf("%s in %s", k, m))
		case metav1.LabelSelectorOpDoesNotExist:
			terms = append(terms, fmt.Sprintf("!(%s in %s)", k, m))
		}
	}
	return strings.Join(terms, " && ")
}

// brief is the engine's brief quoting of the CEL string x: quoted, and
// cut after inject.BriefLen bytes with its length said. Go's quoting escapes what
// CEL's concatenation does not; the words are the same.
func brief(x string) string {
	return fmt.Sprintf(`(size(bytes(%s)) <= %[2]d ? '"' + %[1]s + '"' : '"' + %[1]s.substring(0, %[2]d) + '"... (' + string(size(bytes(%[1]s))) + ' bytes)')`, x, inject.BriefLen)
}

// firstNames is the engine's list of up to n quoted names.
func firstNames(names []string, n int) string {
	var quoted []string
	for _, name := range names[:min(n, len(names))] {
		quoted = append(quoted, fmt.Sprintf("%q", name))
	}
	if len(names) > n {
		quoted = append(quoted, fmt.Sprintf("and %d more", len(names)-n))
	}
	return strings.Join(quoted, ", ")
}
