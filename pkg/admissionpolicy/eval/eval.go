// Package eval runs compiled admission policies in process with
// kube-apiserver's own CEL admission code (k8s.io/apiserver): the
// environment, the variables' composition, the cost budget and the JSON
// Patch application of a kube-apiserver of the same version, without
// one. It is how the tests prove the compiler in seconds and how
// `catalog test` runs an admin's cases through the policies.
//
// It takes the expression layer (plugin/cel, the JSON patcher) and
// mirrors what kube-apiserver's MutatingAdmissionPolicy and
// ValidatingAdmissionPolicy plugins do around it (binding match, the
// decision and its message), not the plugins themselves: those link an
// API server's informers, gRPC and a fake clientset into every binary
// that imports them, the webhook's included, for 20 MB of memory.
//
// What it leaves out is what the API server does around admission:
// defaulting and validating the Pod, other admission plugins and
// webhooks. A Pod the policies admit here can still be refused there.
package eval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	celgo "github.com/google/cel-go/cel"
	celtypes "github.com/google/cel-go/common/types"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/apiserver/pkg/admission"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/policy/mutating/patch"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/cel/environment"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/podpatterns/sidecar-injector/pkg/admissionpolicy"
)

// Policies are compiled admission policies ready to admit Pods.
type Policies struct {
	c          *admissionpolicy.Compiled
	mutating   *plugincel.CompositedCompiler
	patchers   []patch.Patcher
	validating *plugincel.CompositedCompiler
	checks     plugincel.ConditionEvaluator
	messages   plugincel.ConditionEvaluator
}

// New compiles c's expressions, or says which does not compile.
func New(c *admissionpolicy.Compiled) (*Policies, error) {
	p := &Policies{c: c}
	opts := plugincel.OptionalVariableDeclarations{HasAuthorizer: true}
	var err error
	if p.mutating, err = compiler(c.Mutating.Spec.Variables, opts); err != nil {
		return nil, err
	}
	patchOpts := opts
	patchOpts.HasPatchTypes = true
	var errs []error
	for i, m := range c.Mutating.Spec.Mutations {
		if m.PatchType != admissionv1.PatchTypeJSONPatch || m.JSONPatch == nil {
			return nil, fmt.Errorf("mutation %d: only JSONPatch mutations are evaluated here", i)
		}
		res := p.mutating.CompileMutatingEvaluator(&patch.JSONPatchCondition{Expression: m.JSONPatch.Expression}, patchOpts, environment.StoredExpressions)
		errs = append(errs, res.CompilationErrors()...)
		p.patchers = append(p.patchers, patch.NewJSONPatcher(res))
	}
	if p.validating, err = compiler(c.Validating.Spec.Variables, opts); err != nil {
		return nil, err
	}
	checks := make([]plugincel.ExpressionAccessor, len(c.Validating.Spec.Validations))
	messages := make([]plugincel.ExpressionAccessor, len(c.Validating.Spec.Validations))
	for i, v := range c.Validating.Spec.Validations {
		checks[i] = expression{v.Expression, celgo.BoolType}
		if v.MessageExpression != "" {
			messages[i] = expression{v.MessageExpression, celgo.StringType}
		}
	}
	p.checks = p.validating.CompileCondition(checks, opts, environment.StoredExpressions)
	p.messages = p.validating.CompileCondition(messages, plugincel.OptionalVariableDeclarations{}, environment.StoredExpressions)
	errs = append(append(errs, p.checks.CompilationErrors()...), p.messages.CompilationErrors()...)
	if len(c.Mutating.Spec.MatchConditions)+len(c.Validating.Spec.MatchConditions) > 0 {
		errs = append(errs, errors.New("match conditions are not evaluated here"))
	}
	return p, errors.Join(errs...)
}

// compiler is a composited compiler holding the variables, as the
// plugins make one per policy.
func compiler(vars []admissionv1.Variable, opts plugincel.OptionalVariableDeclarations) (*plugincel.CompositedCompiler, error) {
	c, err := plugincel.NewCompositedCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()))
	if err != nil {
		return nil, err
	}
	named := make([]plugincel.NamedExpressionAccessor, len(vars))
	for i, v := range vars {
		named[i] = variable{v.Name, v.Expression}
	}
	c.CompileAndStoreVariables(named, opts, environment.StoredExpressions)
	return c, nil
}

// Create admits pod, created in the namespace ns, as kube-apiserver's
// admission policies would: the mutating policy first where its binding
// matches, then the validating one on its result. It returns the Pod as
// they leave it, or the API server's error for the request (a
// *errors.StatusError when denied). pod is not modified.
func (p *Policies) Create(ctx context.Context, pod *corev1.Pod, ns *corev1.Namespace) (*corev1.Pod, error) {
	obj := pod.DeepCopy()
	obj.Namespace = ns.Name
	kind := corev1.SchemeGroupVersion.WithKind("Pod")
	resource := corev1.SchemeGroupVersion.WithResource("pods")
	attr := admission.NewAttributesRecord(obj, nil, kind, ns.Name, obj.Name, resource, "", admission.Create, &metav1.CreateOptions{}, false,
		&user.DefaultInfo{Name: "sidecar-injector-eval"})
	o := admission.NewObjectInterfacesFromScheme(scheme.Scheme)
	versioned, err := admission.NewVersionedAttributes(attr, kind, o)
	if err != nil {
		return nil, err
	}
	namespace := plugincel.CreateNamespaceObject(ns)
	if bound(p.c.Mutating.Spec.MatchConstraints, p.c.MutatingBinding.Spec.MatchResources, ns, obj) {
		cctx := p.mutating.CreateContext(ctx)
		for _, patcher := range p.patchers {
			out, err := patcher.Patch(cctx, patch.Request{
				MatchedResource: resource, VersionedAttributes: versioned, ObjectInterfaces: o,
				Namespace: namespace, TypeConverter: managedfields.NewDeducedTypeConverter(),
			}, celconfig.RuntimeCELCostBudget)
			if err != nil {
				return nil, denied(obj.Name, "policy '%s' with binding '%s' denied request: %v", p.c.Mutating.Name, p.c.MutatingBinding.Name, err)
			}
			if out, err = o.GetObjectConvertor().ConvertToVersion(out, kind.GroupVersion()); err != nil {
				return nil, err
			}
			versioned.UpdateObject(out)
		}
	}
	if bound(p.c.Validating.Spec.MatchConstraints, p.c.ValidatingBinding.Spec.MatchResources, ns, versioned.VersionedObject.Object()) {
		if msg := p.validate(ctx, versioned, resource, namespace); msg != "" {
			return nil, denied(obj.Name, "ValidatingAdmissionPolicy '%s' with binding '%s' denied request: %s", p.c.Validating.Name, p.c.ValidatingBinding.Name, msg)
		}
	}
	// Through JSON, as the API server stores it: the patches leave empty
	// lists where JSON has none.
	raw, err := json.Marshal(versioned.VersionedObject.Object())
	if err != nil {
		return nil, err
	}
	out := &corev1.Pod{}
	if err := json.Unmarshal(raw, out); err != nil {
		return nil, fmt.Errorf("the policies returned no Pod: %w", err)
	}
	return out, nil
}

// validate evaluates the validations as the ValidatingAdmissionPolicy
// plugin decides (failurePolicy Fail, as the compiler sets it): the
// first that is not true, or fails, denies, with its messageExpression's
// text when that is a one-line string, else its message.
func (p *Policies) validate(ctx context.Context, versioned *admission.VersionedAttributes, resource schema.GroupVersionResource, namespace *corev1.Namespace) string {
	cctx := p.validating.CreateContext(ctx)
	request := plugincel.CreateAdmissionRequest(versioned.Attributes, metav1.GroupVersionResource(resource), metav1.GroupVersionKind(versioned.VersionedKind))
	results, remaining, err := p.checks.ForInput(cctx, versioned, request, plugincel.OptionalVariableBindings{}, namespace, celconfig.RuntimeCELCostBudget)
	if err != nil {
		return err.Error()
	}
	messages, _, _ := p.messages.ForInput(cctx, versioned, request, plugincel.OptionalVariableBindings{}, namespace, remaining)
	for i, r := range results {
		v := p.c.Validating.Spec.Validations[i]
		switch {
		case r.Error != nil:
			return r.Error.Error()
		case r.EvalResult == celtypes.True:
			continue
		}
		if i < len(messages) && messages[i].Error == nil && messages[i].EvalResult != nil {
			if msg, ok := messages[i].EvalResult.Value().(string); ok {
				if msg = strings.TrimSpace(msg); msg != "" && len(msg) <= celconfig.MaxEvaluatedMessageExpressionSizeBytes && !strings.Contains(msg, "\n") {
					return msg
				}
			}
		}
		if v.Message != "" {
			return v.Message
		}
		return fmt.Sprintf("failed expression: %s", strings.TrimSpace(v.Expression))
	}
	return ""
}

// denied is the API server's error for the create of Pod name, refused
// by a policy.
func denied(name, format string, args ...any) error {
	return apierrors.NewForbidden(corev1.Resource("pods"), name, fmt.Errorf(format, args...))
}

// bound reports whether a policy's match constraints and its binding's
// match resources select a Pod of namespace ns: their namespace and
// object selectors (every policy here matches Pod creation alone).
func bound(constraints, binding *admissionv1.MatchResources, ns *corev1.Namespace, obj any) bool {
	objLabels := labels.Set{}
	if pod, ok := obj.(*corev1.Pod); ok {
		objLabels = pod.Labels
	}
	for _, mr := range []*admissionv1.MatchResources{constraints, binding} {
		if mr == nil {
			continue
		}
		for sel, set := range map[*metav1.LabelSelector]labels.Set{mr.NamespaceSelector: ns.Labels, mr.ObjectSelector: objLabels} {
			if sel == nil {
				continue
			}
			s, err := metav1.LabelSelectorAsSelector(sel)
			if err != nil || !s.Matches(set) {
				return false
			}
		}
	}
	return true
}

// variable is a named expression of the composition.
type variable struct{ name, expr string }

func (v variable) GetExpression() string      { return v.expr }
func (v variable) ReturnTypes() []*celgo.Type { return []*celgo.Type{celgo.AnyType, celgo.DynType} }
func (v variable) GetName() string            { return v.name }

// expression is a validation or message expression and what it returns.
type expression struct {
	expr    string
	returns *celgo.Type
}

func (e expression) GetExpression() string      { return e.expr }
func (e expression) ReturnTypes() []*celgo.Type { return []*celgo.Type{e.returns} }
