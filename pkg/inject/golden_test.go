package inject_test

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/pkg/inject/injecttest"
	"github.com/podpatterns/sidecar-injector/pkg/patch"
)

var update = flag.Bool("update", false, "rewrite the golden .injected files")

const goldenDir = "testdata/golden"

// testCatalog is the embedded default catalog plus testdata/catalog.yaml,
// which adds policies and templates that exercise the edges.
func testCatalog(t testing.TB) *catalog.Catalog {
	t.Helper()
	extra, err := os.ReadFile("testdata/catalog.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.Parse(
		catalog.Source{Name: "default.yaml", Data: catalog.DefaultYAML()},
		catalog.Source{Name: "testdata/catalog.yaml", Data: extra},
	)
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// outcome runs the engine on raw pod JSON, applies the patch with the
// library the API server uses and returns the resulting document.
type outcome struct {
	result *inject.Result
	denial *inject.Denial
	pod    []byte // JSON after the patch (the input when nothing was planned)
}

func run(t testing.TB, raw []byte, nsLabels map[string]string, cat *catalog.Catalog) outcome {
	t.Helper()
	pod := &corev1.Pod{}
	if err := json.Unmarshal(raw, pod); err != nil {
		t.Fatalf("decoding pod: %v", err)
	}
	res, err := inject.Pod(pod, nsLabels, cat, injecttest.Keys)
	var denial *inject.Denial
	if errors.As(err, &denial) {
		return outcome{denial: denial, pod: raw}
	}
	if err != nil {
		t.Fatalf("engine: %v", err)
	}
	if res.Plan == nil {
		return outcome{result: res, pod: raw}
	}
	out, err := patch.Apply(raw, patch.ForPod(pod, res.Plan))
	if err != nil {
		t.Fatalf("applying patch: %v", err)
	}
	return outcome{result: res, pod: out}
}

func render(t testing.TB, o outcome) []byte {
	t.Helper()
	var b strings.Builder
	if o.denial != nil {
		fmt.Fprintf(&b, "# denied: %s\n", o.denial.Message)
		return []byte(b.String())
	}
	for _, w := range o.result.Warnings {
		fmt.Fprintf(&b, "# warning: %s\n", w)
	}
	switch {
	case o.result.Plan == nil:
		b.WriteString("# nothing injected: the pod is admitted unchanged\n")
	case len(o.result.Injected) == 0:
		fmt.Fprintf(&b, "# nothing injected; the status entries of %s written anew, signed\n", strings.Join(o.result.Verified, ", "))
	default:
		fmt.Fprintf(&b, "# injected: %s\n", strings.Join(o.result.Injected, ", "))
	}
	y, err := yaml.JSONToYAML(o.pod)
	if err != nil {
		t.Fatal(err)
	}
	b.Write(y)
	return []byte(b.String())
}

func TestGolden(t *testing.T) {
	cat := testCatalog(t)
	inputs, err := filepath.Glob(filepath.Join(goldenDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) < 25 {
		t.Fatalf("found %d golden inputs in %s; want at least 25", len(inputs), goldenDir)
	}
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) {
			raw, labels := injecttest.ReadCase(t, in)
			o := run(t, raw, labels, cat)
			got := render(t, o)
			golden := in + ".injected"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./pkg/inject -run TestGolden -update to create it)", err)
			}
			if string(got) != string(want) {
				t.Errorf("%s differs from the engine's output (rerun with -update if the change is intended):\n--- want\n%s\n--- got\n%s", golden, want, got)
			}
			if o.denial != nil {
				return
			}
			again := run(t, o.pod, labels, cat)
			if again.denial != nil || again.result.Plan != nil {
				t.Errorf("second run on the injected pod is not a no-op: denial=%v plan=%+v", again.denial, again.result)
			}
			checkPodSecurity(t, evaluator, raw, o.pod)
		})
	}
	// Templates render once per set of values and the result is shared.
	// Every case again on the same catalog gives the same output, so no
	// plan changed what later ones share.
	for _, in := range inputs {
		raw, labels := injecttest.ReadCase(t, in)
		want, _ := os.ReadFile(in + ".injected")
		if got := render(t, run(t, raw, labels, cat)); string(got) != string(want) {
			t.Errorf("%s: a second pass over the same catalog differs:\n%s", in, got)
		}
	}
}

// checkPodSecurity: a pod that met "restricted" before injection meets it
// after.
func checkPodSecurity(t *testing.T, e policy.Evaluator, before, after []byte) {
	t.Helper()
	restricted := api.LevelVersion{Level: api.LevelRestricted, Version: api.LatestVersion()}
	check := func(raw []byte) policy.AggregateCheckResult {
		pod := &corev1.Pod{}
		if err := json.Unmarshal(raw, pod); err != nil {
			t.Fatal(err)
		}
		return policy.AggregateCheckResults(e.EvaluatePod(restricted, &pod.ObjectMeta, &pod.Spec))
	}
	if !check(before).Allowed {
		return
	}
	if r := check(after); !r.Allowed {
		t.Errorf("the input meets Pod Security restricted, the injected pod does not: %s: %s", r.ForbiddenReason(), r.ForbiddenDetail())
	}
}

// TestGoldenOutputsHaveInputs fails on a leftover golden file whose input
// was removed or renamed.
func TestGoldenOutputsHaveInputs(t *testing.T) {
	outputs, err := filepath.Glob(filepath.Join(goldenDir, "*.injected"))
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range outputs {
		if _, err := os.Stat(strings.TrimSuffix(out, ".injected")); err != nil {
			t.Errorf("%s has no input %s: delete it or restore the input", out, strings.TrimSuffix(out, ".injected"))
		}
	}
}

// TestRestrictedInputsExist keeps the Pod Security check from passing
// vacuously.
func TestRestrictedInputsExist(t *testing.T) {
	e, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	inputs, _ := filepath.Glob(filepath.Join(goldenDir, "*.yaml"))
	n := 0
	for _, in := range inputs {
		raw, _ := injecttest.ReadCase(t, in)
		pod := &corev1.Pod{}
		if err := json.Unmarshal(raw, pod); err != nil {
			t.Fatal(err)
		}
		lv := api.LevelVersion{Level: api.LevelRestricted, Version: api.LatestVersion()}
		if policy.AggregateCheckResults(e.EvaluatePod(lv, &pod.ObjectMeta, &pod.Spec)).Allowed {
			n++
		}
	}
	if n < 3 {
		t.Errorf("only %d golden inputs meet Pod Security restricted; want at least 3 so the check means something", n)
	}
}
