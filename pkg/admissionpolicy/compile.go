package admissionpolicy

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
)

// Name names the policies and their bindings unless Options say otherwise.
const Name = "sidecar-injector"

// Options are how the policies are bound.
type Options struct {
	// NamespaceSelector picks the namespaces the policies act in; nil for
	// the opt-in label, as the webhook's configuration selects them.
	NamespaceSelector *metav1.LabelSelector
	// Name names the policies and their bindings; Name if empty.
	Name string
}

// Compiled is what a catalog compiles to.
type Compiled struct {
	Mutating          *admissionv1.MutatingAdmissionPolicy
	MutatingBinding   *admissionv1.MutatingAdmissionPolicyBinding
	Validating        *admissionv1.ValidatingAdmissionPolicy
	ValidatingBinding *admissionv1.ValidatingAdmissionPolicyBinding
	// Refused are the templates compiled to no mutation, with the reason:
	// the validating policy declines a Pod that gets one.
	Refused []Refusal
}

// Refusal is a template the compiler cannot express exactly.
type Refusal struct {
	Template string
	Reason   string
}

// Objects are the four objects, the policies first.
func (c *Compiled) Objects() []runtime.Object {
	return []runtime.Object{c.Mutating, c.Validating, c.MutatingBinding, c.ValidatingBinding}
}

// gen accumulates the variables both policies evaluate.
type gen struct {
	cat       *catalog.Catalog
	vars      []admissionv1.Variable
	templates []*compiled // in catalog order, the refused ones left out
	refused   []Refusal
}

// v declares a variable and returns the CEL that reads it.
func (g *gen) v(name, expr string) string {
	g.vars = append(g.vars, admissionv1.Variable{Name: name, Expression: expr})
	return "variables." + name
}

// Compile compiles cat into admission policies.
func Compile(cat *catalog.Catalog, opts Options) *Compiled {
	g := &gen{cat: cat}
	g.sizeGuards()
	g.selectTemplates(cat)
	g.podFacts()
	for i, name := range cat.Names() {
		t := cat.Template(name)
		if reason := refuse(t); reason != "" {
			g.refused = append(g.refused, Refusal{Template: name, Reason: reason})
			continue
		}
		g.templates = append(g.templates, newCompiled(t, i))
	}
	for _, c := range g.templates {
		c.declare(g)
	}
	g.problems(cat)
	sel := opts.NamespaceSelector
	if sel == nil {
		sel = &metav1.LabelSelector{MatchLabels: map[string]string{inject.InjectionLabel: "enabled"}}
	}
	name := cmp.Or(opts.Name, Name)
	return &Compiled{
		Mutating:          g.mutating(name),
		MutatingBinding:   mutatingBinding(name, sel),
		Validating:        g.validating(name),
		ValidatingBinding: validatingBinding(name, sel),
		Refused:           g.refused,
	}
}

// problems declares why the validating policy denies the Pod, the
// engine's first denial first: the request's own, the target annotation,
// then each template in the order the Pod gets them; and whether the
// mutating policy injects, or marks a Pod that arrives carrying
// templates (carries) for the validating policy to deny.
func (g *gen) problems(cat *catalog.Catalog) {
	perTemplate := "[]"
	for i := len(g.refused) - 1; i >= 0; i-- {
		r := g.refused[i]
		perTemplate = fmt.Sprintf("n == %s ? [%s] : %s", lit(r.Template), lit(declined(r.Template, "the compiler refused it: "+r.Reason)), perTemplate)
	}
	for i := len(g.templates) - 1; i >= 0; i-- {
		c := g.templates[i]
		perTemplate = fmt.Sprintf("n == %s ? %s : %s", lit(c.t.Name), c.errs, perTemplate)
	}
	g.v("carries", fmt.Sprintf("%s in variables.ann && variables.podNames.exists(c, c in %s)", lit(inject.StatusAnnotation), lits(templateContainers(cat))))
	g.v("problems", guarded(fmt.Sprintf("variables.early + (size(variables.names) == 0 ? [] : variables.targetsErr + variables.names.map(n, %s).flatten())", perTemplate)))
	g.v("inject", "size(variables.names) > 0 && !variables.carries && size(variables.problems) == 0")
	// The mutating policy rewrites every status annotation of a Pod that
	// gets templates: its own when it injects, unverified when the Pod
	// arrives carrying templates, none when the Pod is denied. So the
	// validating policy knows a status it sees as the mutating policy's.
	g.v("ours", fmt.Sprintf("size(variables.names) > 0 && !variables.tooLarge && !variables.tooCostly && %s in variables.ann && variables.ann[%[1]s] != %s", lit(inject.StatusAnnotation), lit(unverified)))
	g.v("status", g.status())
	// Fail-safe: what the Pod gets, without its containers, was not
	// injected: the mutating policy did not run (deleted, not loaded yet,
	// off on this API server).
	var pairs []string
	for _, c := range g.templates {
		pairs = append(pairs, fmt.Sprintf("%s: %s", lit(c.t.Name), lits(c.t.ContainerNames())))
	}
	g.v("lacking", fmt.Sprintf("variables.names.filter(n, n in {%s} && !{%[1]s}[n].all(c, c in variables.podNames))", strings.Join(pairs, ", ")))
}

// notInjectedDenial is the fail-safe's message: a template the Pod gets,
// whose containers it lacks.
const notInjectedDenial = `'template "' + variables.lacking[0] + '" is required or asked for here, and the Pod lacks its containers: the MutatingAdmissionPolicy that injects it did not run (deleted, not loaded yet, or off on this API server); create the Pod again once it is applied, or see the runbook, "SidecarInjectorAdmissionPoliciesNotApplied"'`

// unverified is the status the mutating policy writes on a Pod that
// arrives carrying templates, which the validating policy then denies.
const unverified = `{"templates":[],"unverified":"the compiled admission policies cannot verify templates a Pod arrives with"}`

// carriesDenial is the validating policy's message for such a Pod.
const carriesDenial = "the compiled admission policies cannot verify what this Pod carries: it arrives with the annotation " + inject.StatusAnnotation + " and containers named as the catalog's templates name theirs, which only the webhook verifies; create the Pod without them (the policies add both), or inject with the webhook"

// declined is the message of a denial only the policies make.
func declined(template, why string) string {
	return fmt.Sprintf("template %q cannot be injected by the compiled admission policies here: %s; inject it with the webhook instead", template, why)
}

func templateContainers(cat *catalog.Catalog) []string {
	var out []string
	for _, name := range cat.Names() {
		for _, c := range cat.Template(name).ContainerNames() {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	sort.Strings(out)
	return out
}

var podsCreate = &admissionv1.MatchResources{
	ResourceRules: []admissionv1.NamedRuleWithOperations{{
		RuleWithOperations: admissionv1.RuleWithOperations{
			Operations: []admissionv1.OperationType{admissionv1.Create},
			Rule:       admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
		},
	}},
}

func (g *gen) mutating(name string) *admissionv1.MutatingAdmissionPolicy {
	fail := admissionv1.Fail
	patch := g.patch()
	return &admissionv1.MutatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingAdmissionPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: ManagedLabels},
		Spec: admissionv1.MutatingAdmissionPolicySpec{
			MatchConstraints: podsCreate.DeepCopy(),
			Variables:        used(g.vars, patch),
			FailurePolicy:    &fail,
			// Never: run once, on the Pod as it arrives, so that a status
			// it sees is the Pod's own, never its own from a first run.
			ReinvocationPolicy: admissionv1.NeverReinvocationPolicy,
			Mutations: []admissionv1.Mutation{{
				PatchType: admissionv1.PatchTypeJSONPatch,
				JSONPatch: &admissionv1.JSONPatch{Expression: patch},
			}},
		},
	}
}

func (g *gen) validating(name string) *admissionv1.ValidatingAdmissionPolicy {
	fail := admissionv1.Fail
	validations := []admissionv1.Validation{{
		Expression: fmt.Sprintf("!(%s in variables.ann && variables.ann[%[1]s] == %s)", lit(inject.StatusAnnotation), lit(unverified)),
		Message:    carriesDenial,
		Reason:     new(metav1.StatusReasonForbidden),
	}, {
		// The mutating policy injected: what it added passed these
		// checks before it was added.
		Expression:        "variables.ours || size(variables.problems) == 0",
		MessageExpression: "variables.problems[0]",
		Reason:            new(metav1.StatusReasonForbidden),
	}, {
		// A Pod denied above is not also a Pod the mutating
		// policy failed. lacking first: it is cheap, and nothing
		// lacks on every Pod the mutating policy injected.
		Expression:        "size(variables.lacking) == 0 || size(variables.problems) > 0",
		MessageExpression: notInjectedDenial,
		Reason:            new(metav1.StatusReasonForbidden),
	}}
	var exprs []string
	for _, v := range validations {
		exprs = append(exprs, v.Expression, v.MessageExpression)
	}
	return &admissionv1.ValidatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: ManagedLabels},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			MatchConstraints: podsCreate.DeepCopy(),
			Variables:        used(g.vars, exprs...),
			FailurePolicy:    &fail,
			Validations:      validations,
		},
	}
}

// used is vars without those the expressions do not read, directly or
// through another variable, in their order: each policy carries only
// what it evaluates.
func used(vars []admissionv1.Variable, exprs ...string) []admissionv1.Variable {
	need := map[string]bool{}
	mark := func(expr string) {
		for _, m := range variableRef.FindAllStringSubmatch(expr, -1) {
			need[m[1]] = true
		}
	}
	for _, e := range exprs {
		mark(e)
	}
	// A variable reads only those declared before it: one pass backwards.
	for i := len(vars) - 1; i >= 0; i-- {
		if need[vars[i].Name] {
			mark(vars[i].Expression)
		}
	}
	var out []admissionv1.Variable
	for _, v := range vars {
		if need[v.Name] {
			out = append(out, v)
		}
	}
	return out
}

var variableRef = regexp.MustCompile(`variables\.([A-Za-z_][A-Za-z0-9_]*)`)

// ManagedLabels mark what the compiler emits, so a syncer finds it.
var ManagedLabels = map[string]string{"app.kubernetes.io/managed-by": "sidecar-injector"}

func mutatingBinding(name string, sel *metav1.LabelSelector) *admissionv1.MutatingAdmissionPolicyBinding {
	return &admissionv1.MutatingAdmissionPolicyBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingAdmissionPolicyBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: ManagedLabels},
		Spec: admissionv1.MutatingAdmissionPolicyBindingSpec{
			PolicyName:     name,
			MatchResources: &admissionv1.MatchResources{NamespaceSelector: sel.DeepCopy()},
		},
	}
}

func validatingBinding(name string, sel *metav1.LabelSelector) *admissionv1.ValidatingAdmissionPolicyBinding {
	return &admissionv1.ValidatingAdmissionPolicyBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicyBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: ManagedLabels},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        name,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
			MatchResources:    &admissionv1.MatchResources{NamespaceSelector: sel.DeepCopy()},
		},
	}
}
