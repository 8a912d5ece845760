// Package eval runs compiled admission policies in process with
// kube-apiserver's own admission-policy code (k8s.io/apiserver): the
// CEL environment, cost budget, binding match, JSON Patch application
// and denial of a kube-apiserver of the same version, without one. It
// is how the tests prove the compiler in seconds and how `catalog test`
// runs an admin's cases through the policies.
//
// What it leaves out is what the API server does around admission:
// defaulting and validating the Pod, other admission plugins and
// webhooks. A Pod the policies admit here can still be refused there.
package eval

import (
	"context"
	"encoding/json"
	"fmt"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/apiserver/pkg/admission"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/policy/generic"
	"k8s.io/apiserver/pkg/admission/plugin/policy/matching"
	"k8s.io/apiserver/pkg/admission/plugin/policy/mutating"
	"k8s.io/apiserver/pkg/admission/plugin/policy/mutating/patch"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/matchconditions"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	"k8s.io/apiserver/pkg/cel/environment"
	"k8s.io/client-go/kubernetes/scheme"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/openapi"
	"k8s.io/client-go/tools/cache"

	"github.com/podpatterns/sidecar-injector/pkg/admissionpolicy"
)

// Policies are compiled admission policies ready to admit Pods.
type Policies struct {
	mutate     generic.Dispatcher[mutating.PolicyHook]
	validate   generic.Dispatcher[validating.PolicyHook]
	mutating   []mutating.PolicyHook
	validating []validating.PolicyHook
	namespaces cache.Indexer
}

// New prepares c to admit Pods. It starts nothing that outlives ctx.
func New(ctx context.Context, c *admissionpolicy.Compiled) (*Policies, error) {
	c = defaulted(c)
	mutator, err := compileMutating(c.Mutating)
	if err != nil {
		return nil, err
	}
	namespaces := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	matcher := matching.NewMatcher(listersv1.NewNamespaceLister(namespaces), nil)
	allow := authorizerfactory.NewAlwaysAllowAuthorizer()
	p := &Policies{
		// JSON Patch needs no schema: the static converter only has to exist.
		mutate:   mutating.NewDispatcher(allow, matcher, patch.NewTypeConverterManager(managedfields.NewDeducedTypeConverter(), noSchemas{})),
		validate: validating.NewDispatcher(allow, generic.NewPolicyMatcher(matcher)),
		mutating: []mutating.PolicyHook{{
			Policy: c.Mutating, Bindings: []*admissionv1.MutatingAdmissionPolicyBinding{c.MutatingBinding}, Evaluator: mutator,
		}},
		validating: []validating.PolicyHook{{
			Policy: c.Validating, Bindings: []*admissionv1.ValidatingAdmissionPolicyBinding{c.ValidatingBinding}, Evaluator: compileValidating(c.Validating),
		}},
		namespaces: namespaces,
	}
	if err := p.mutate.Start(ctx); err != nil {
		return nil, err
	}
	if err := p.validate.Start(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// Create admits pod, created in the namespace ns, as kube-apiserver's
// admission policies would: the mutating policy first, then the
// validating one on its result. It returns the Pod as they leave it, or
// the API server's error for the request (a *errors.StatusError when
// denied). pod is not modified.
func (p *Policies) Create(ctx context.Context, pod *corev1.Pod, ns *corev1.Namespace) (*corev1.Pod, error) {
	if err := p.namespaces.Update(ns); err != nil {
		return nil, err
	}
	obj := pod.DeepCopy()
	obj.Namespace = ns.Name
	attr := admission.NewAttributesRecord(obj, nil, corev1.SchemeGroupVersion.WithKind("Pod"), ns.Name, obj.Name,
		corev1.SchemeGroupVersion.WithResource("pods"), "", admission.Create, &metav1.CreateOptions{}, false,
		&user.DefaultInfo{Name: "sidecar-injector-eval"})
	o := admission.NewObjectInterfacesFromScheme(scheme.Scheme)
	if err := p.mutate.Dispatch(ctx, attr, o, p.mutating); err != nil {
		return nil, err
	}
	if err := p.validate.Dispatch(ctx, attr, o, p.validating); err != nil {
		return nil, err
	}
	// Through JSON, as the API server stores it: the patches leave empty
	// lists where JSON has none.
	raw, err := json.Marshal(attr.GetObject())
	if err != nil {
		return nil, err
	}
	out := &corev1.Pod{}
	if err := json.Unmarshal(raw, out); err != nil {
		return nil, fmt.Errorf("the policies returned no Pod: %w", err)
	}
	return out, nil
}

// defaulted is a copy of c's objects with the defaults the API server
// stores them with: the selectors of their match resources match
// everything, and requests match by equivalent resource.
func defaulted(c *admissionpolicy.Compiled) *admissionpolicy.Compiled {
	out := &admissionpolicy.Compiled{
		Mutating:          c.Mutating.DeepCopy(),
		MutatingBinding:   c.MutatingBinding.DeepCopy(),
		Validating:        c.Validating.DeepCopy(),
		ValidatingBinding: c.ValidatingBinding.DeepCopy(),
	}
	for _, mr := range []*admissionv1.MatchResources{out.Mutating.Spec.MatchConstraints, out.MutatingBinding.Spec.MatchResources,
		out.Validating.Spec.MatchConstraints, out.ValidatingBinding.Spec.MatchResources} {
		if mr == nil {
			continue
		}
		if mr.NamespaceSelector == nil {
			mr.NamespaceSelector = &metav1.LabelSelector{}
		}
		if mr.ObjectSelector == nil {
			mr.ObjectSelector = &metav1.LabelSelector{}
		}
		if mr.MatchPolicy == nil {
			mr.MatchPolicy = new(admissionv1.Equivalent)
		}
	}
	return out
}

// noSchemas is an OpenAPI client that knows no schemas: the static type
// converter serves the only kind admitted here.
type noSchemas struct{}

func (noSchemas) Paths() (map[string]openapi.GroupVersion, error) { return nil, nil }

// compileMutating compiles policy as kube-apiserver's
// MutatingAdmissionPolicy plugin does (mutating.compilePolicy, which it
// does not export): the same environment, variables, match conditions
// and one patcher per mutation.
func compileMutating(policy *admissionv1.MutatingAdmissionPolicy) (mutating.PolicyEvaluator, error) {
	opts := plugincel.OptionalVariableDeclarations{HasParams: policy.Spec.ParamKind != nil, HasAuthorizer: true}
	compiler, err := plugincel.NewCompositedCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()))
	if err != nil {
		return mutating.PolicyEvaluator{}, err
	}
	compiler.CompileAndStoreVariables(variables(policy.Spec.Variables), opts, environment.StoredExpressions)
	var matcher matchconditions.Matcher
	if len(policy.Spec.MatchConditions) > 0 {
		matcher = matchconditions.NewMatcher(compiler.CompileCondition(conditions(policy.Spec.MatchConditions), opts, environment.StoredExpressions),
			policy.Spec.FailurePolicy, "policy", "validate", policy.Name)
	}
	patchOpts := opts
	patchOpts.HasPatchTypes = true
	var patchers []patch.Patcher
	for _, m := range policy.Spec.Mutations {
		switch {
		case m.PatchType == admissionv1.PatchTypeJSONPatch && m.JSONPatch != nil:
			res := compiler.CompileMutatingEvaluator(&patch.JSONPatchCondition{Expression: m.JSONPatch.Expression}, patchOpts, environment.StoredExpressions)
			patchers = append(patchers, patch.NewJSONPatcher(res))
		case m.PatchType == admissionv1.PatchTypeApplyConfiguration && m.ApplyConfiguration != nil:
			res := compiler.CompileMutatingEvaluator(&patch.ApplyConfigurationCondition{Expression: m.ApplyConfiguration.Expression}, patchOpts, environment.StoredExpressions)
			patchers = append(patchers, patch.NewApplyConfigurationPatcher(res))
		}
	}
	return mutating.PolicyEvaluator{Matcher: matcher, Mutators: patchers, CompositedCompiler: compiler}, nil
}

// compileValidating compiles policy as kube-apiserver's
// ValidatingAdmissionPolicy plugin does (validating.compilePolicy).
func compileValidating(policy *admissionv1.ValidatingAdmissionPolicy) validating.Validator {
	opts := plugincel.OptionalVariableDeclarations{HasParams: policy.Spec.ParamKind != nil, HasAuthorizer: true}
	messageOpts := plugincel.OptionalVariableDeclarations{HasParams: policy.Spec.ParamKind != nil}
	compiler, err := plugincel.NewCompositedCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()))
	if err != nil {
		return validating.NewValidator(nil, nil, nil, nil, policy.Spec.FailurePolicy, err)
	}
	compiler.CompileAndStoreVariables(variables(policy.Spec.Variables), opts, environment.StoredExpressions)
	var matcher matchconditions.Matcher
	if len(policy.Spec.MatchConditions) > 0 {
		matcher = matchconditions.NewMatcher(compiler.CompileCondition(conditions(policy.Spec.MatchConditions), opts, environment.StoredExpressions),
			policy.Spec.FailurePolicy, "policy", "validate", policy.Name)
	}
	validations := make([]plugincel.ExpressionAccessor, len(policy.Spec.Validations))
	messages := make([]plugincel.ExpressionAccessor, len(policy.Spec.Validations))
	for i, v := range policy.Spec.Validations {
		validations[i] = &validating.ValidationCondition{Expression: v.Expression, Message: v.Message, Reason: v.Reason}
		if v.MessageExpression != "" {
			messages[i] = &validating.MessageExpressionCondition{MessageExpression: v.MessageExpression}
		}
	}
	audits := make([]plugincel.ExpressionAccessor, len(policy.Spec.AuditAnnotations))
	for i, a := range policy.Spec.AuditAnnotations {
		audits[i] = &validating.AuditAnnotationCondition{Key: a.Key, ValueExpression: a.ValueExpression}
	}
	return validating.NewValidator(
		compiler.CompileCondition(validations, opts, environment.StoredExpressions),
		matcher,
		compiler.CompileCondition(audits, opts, environment.StoredExpressions),
		compiler.CompileCondition(messages, messageOpts, environment.StoredExpressions),
		policy.Spec.FailurePolicy,
		nil,
	)
}

func variables(vars []admissionv1.Variable) []plugincel.NamedExpressionAccessor {
	out := make([]plugincel.NamedExpressionAccessor, len(vars))
	for i, v := range vars {
		out[i] = &validating.Variable{Name: v.Name, Expression: v.Expression}
	}
	return out
}

func conditions(mcs []admissionv1.MatchCondition) []plugincel.ExpressionAccessor {
	out := make([]plugincel.ExpressionAccessor, len(mcs))
	for i := range mcs {
		out[i] = (*matchconditions.MatchCondition)(&mcs[i])
	}
	return out
}
