package eval_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podpatterns/sidecar-injector/pkg/admission"
	"github.com/podpatterns/sidecar-injector/pkg/admissionpolicy"
	"github.com/podpatterns/sidecar-injector/pkg/admissionpolicy/eval"
	"github.com/podpatterns/sidecar-injector/pkg/admissionpolicy/policytest"
	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/pkg/inject/injecttest"
	"github.com/podpatterns/sidecar-injector/pkg/patch"
)

const root = "../../.."

// TestCompiledPoliciesMakeWhatTheEngineMakes is the differential proof
// in process: every golden input of the engine, every Pod of the CLI's
// inject goldens, the hostile parameter values and the biggest Pods go
// through the engine and through the policies compiled from the same
// catalog, run by kube-apiserver's admission-policy code. The Pods must
// be equal, or both denied for the same cause, or the policies decline a
// template the compiler refused or a Pod they cannot write the status
// of, with the reason. test/e2e repeats it through a real kube-apiserver.
func TestCompiledPoliciesMakeWhatTheEngineMakes(t *testing.T) {
	ctx := t.Context()
	groups := policytest.Inputs(t, root)
	counts := map[string]int{}
	for _, dir := range slices.Sorted(maps.Keys(groups)) {
		cat, _ := policytest.CatalogFor(t, root, dir)
		policies := compile(t, ctx, cat)
		for i, in := range groups[dir] {
			wpod, werr := engine(t, in, cat)
			ppod, perr := policies.Create(ctx, pod(t, in), namespace(i, in.Labels))
			outcome := policytest.Outcome(t, in.Name, in.Raw, wpod, werr, ppod, errText(perr), cat)
			if testing.Verbose() {
				t.Logf("%s: %s", in.Name, outcome)
			}
			counts[outcome]++
		}
	}
	var lines []string
	for k, n := range counts {
		lines = append(lines, fmt.Sprintf("%s: %d", k, n))
	}
	sort.Strings(lines)
	t.Logf("outcomes:\n  %s", strings.Join(lines, "\n  "))
	if counts["same Pod stored"] < 80 || counts["both denied, same cause"]+counts["both denied, same cause (same message)"] < 80 || counts["mismatch"] > 0 {
		t.Errorf("the proof covers too little: %v", counts)
	}
}

func compile(t *testing.T, ctx context.Context, cat *catalog.Catalog) *eval.Policies {
	t.Helper()
	p, err := eval.New(admissionpolicy.Compile(cat, admissionpolicy.Options{NamespaceSelector: &metav1.LabelSelector{}}))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// engine is what the webhook makes of in: the engine's plan applied as
// the API server applies the webhook's patch.
func engine(t testing.TB, in policytest.Input, cat *catalog.Catalog) (*corev1.Pod, string) {
	t.Helper()
	p := pod(t, in)
	// The webhook's budget, on the review kube-apiserver would send.
	if err := admission.CheckValues([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{},"resource":{},"requestKind":{},"requestResource":{},"userInfo":{},"options":{},"object":` + string(in.Raw) + `}}`)); err != nil {
		return nil, err.Error()
	}
	res, err := inject.Pod(p, in.Labels, cat, injecttest.Keys)
	if err != nil {
		return nil, err.Error()
	}
	if res.Plan == nil {
		return p, ""
	}
	out, err := patch.Apply(in.Raw, patch.ForPod(p, res.Plan))
	if err != nil {
		t.Fatalf("%s: %v", in.Name, err)
	}
	after := &corev1.Pod{}
	if err := json.Unmarshal(out, after); err != nil {
		t.Fatalf("%s: %v", in.Name, err)
	}
	return after, ""
}

func pod(t testing.TB, in policytest.Input) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{}
	if err := json.Unmarshal(in.Raw, p); err != nil {
		t.Fatalf("%s: %v", in.Name, err)
	}
	return p
}

func namespace(i int, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ns-%d", i), Labels: labels}}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestLargePodsGetAOneLineAnswer: a Pod over the webhook's budget is
// denied for the webhook's cause, and one too costly for CEL declined,
// each in one line that quotes no expression, with the guards evaluated
// before anything that iterates over the Pod.
func TestLargePodsGetAOneLineAnswer(t *testing.T) {
	cat, err := catalog.Default()
	if err != nil {
		t.Fatal(err)
	}
	policies := compile(t, t.Context(), cat)
	want := map[string]string{"env-20000": "is too large for the sidecar injector: it holds at least 20", "widest": "the compiled admission policies decline this Pod"}
	for _, in := range policytest.BigPods(t) {
		if want[in.Name] == "" {
			continue
		}
		_, err := policies.Create(t.Context(), pod(t, in), namespace(0, map[string]string{inject.InjectionLabel: "enabled"}))
		msg := policytest.Denial(errText(err))
		if !strings.Contains(msg, want[in.Name]) || len(msg) > 400 || strings.ContainsAny(msg, "\n{") {
			t.Errorf("%s: %q; want one line with %q", in.Name, msg, want[in.Name])
		}
		delete(want, in.Name)
	}
	if len(want) > 0 {
		t.Errorf("not among policytest.BigPods: %v", want)
	}
}

// BenchmarkPolicies is what the compiled policies cost in process against
// the engine and patch (the webhook's work) on the same Pods: the ratio
// policies/engine, in one run. The policies' guards bound the large ones.
func BenchmarkPolicies(b *testing.B) {
	cat, err := catalog.Default()
	if err != nil {
		b.Fatal(err)
	}
	policies, err := eval.New(admissionpolicy.Compile(cat, admissionpolicy.Options{NamespaceSelector: &metav1.LabelSelector{}}))
	if err != nil {
		b.Fatal(err)
	}
	labels := map[string]string{inject.InjectionLabel: "enabled"}
	huge := policytest.Input{Name: "huge", Raw: injecttest.HugePod(), Labels: labels}
	typical := policytest.Input{Name: "typical", Raw: []byte(`{"metadata":{"name":"t","annotations":{"sidecars.podpatterns.io/inject":"log-shipper"}},"spec":{"containers":[{"name":"app","image":"registry.example.com/app:1.0.0"}]}}`), Labels: labels}
	inputs := []policytest.Input{typical, huge}
	for _, in := range policytest.BigPods(b) {
		if in.Name == "env-20000" || in.Name == "widest" {
			inputs = append(inputs, in)
		}
	}
	for _, in := range inputs {
		p := &corev1.Pod{}
		if err := json.Unmarshal(in.Raw, p); err != nil {
			b.Fatal(err)
		}
		b.Run(in.Name+"/engine", func(b *testing.B) {
			for b.Loop() {
				engine(b, in, cat)
			}
		})
		b.Run(in.Name+"/policies", func(b *testing.B) {
			for b.Loop() {
				_, _ = policies.Create(b.Context(), p, namespace(0, labels))
			}
		})
	}
}

// An expression the API server would not compile is an error of New,
// not a Pod admitted or denied for a reason nobody wrote.
func TestAnExpressionThatDoesNotCompileIsRefused(t *testing.T) {
	cat, err := catalog.Default()
	if err != nil {
		t.Fatal(err)
	}
	c := admissionpolicy.Compile(cat, admissionpolicy.Options{})
	c.Validating = c.Validating.DeepCopy()
	c.Validating.Spec.Validations[0].Expression = "variables.names.nope("
	if _, err := eval.New(c); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("New: %v; want the expression that does not compile named", err)
	}
}
