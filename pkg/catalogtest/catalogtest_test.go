package catalogtest_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/catalogtest"
)

// TestTheDefaultCatalogPassesItsSuite runs deploy/catalog-tests, the
// suite the default catalog ships, through both paths.
func TestTheDefaultCatalogPassesItsSuite(t *testing.T) {
	cases, err := catalogtest.Load("../../deploy/catalog-tests")
	if err != nil {
		t.Fatal(err)
	}
	results := run(t, cases)
	denials := 0
	for i, r := range results {
		if !r.Passed || len(r.Paths) != 2 {
			t.Errorf("%s: %+v", r.Case, r.Paths)
		}
		if cases[i].Expect.Denied != "" {
			denials++
		}
	}
	if len(results) < 10 || denials < 4 {
		t.Errorf("the suite covers too little: %d cases, %d denials", len(results), denials)
	}
}

// TestAWrongExpectationFails: a case that expects what admission does not
// make fails on both paths, saying why.
func TestAWrongExpectationFails(t *testing.T) {
	cases, err := catalogtest.Load("../../deploy/catalog-tests/log-shipper.yaml")
	if err != nil {
		t.Fatal(err)
	}
	admitted, denied := cases[0], cases[2]
	admitted.Expect.Object = admitted.Expect.Object.DeepCopy()
	admitted.Expect.Object.Spec.InitContainers[0].Image += "-other"
	denied.Expect.Denied = "a message no denial holds"
	asDenied := cases[0]
	asDenied.Expect.Object, asDenied.Expect.Denied = nil, "not valid"
	asAdmitted := cases[2]
	asAdmitted.Expect.Object, asAdmitted.Expect.Denied = cases[0].Object, ""
	want := []string{"the admitted Pod differs from the expected one", "denied, but not with", "admitted; want a denial", "denied: "}
	for i, r := range run(t, []catalogtest.Case{admitted, denied, asDenied, asAdmitted}) {
		if r.Passed {
			t.Errorf("%s passed; want a failure", r.Case)
		}
		for _, p := range r.Paths {
			if p.Passed || !strings.HasPrefix(p.Problem, want[i]) {
				t.Errorf("%s (%s): %q; want %q", r.Case, p.Path, p.Problem, want[i])
			}
		}
	}
}

// TestBadCaseFilesAreRefused: what an admin gets wrong in a case file is
// an error naming the file and document, never a case that passes.
func TestBadCaseFilesAreRefused(t *testing.T) {
	for name, text := range map[string]string{
		"typo":         "objekt: {}\nexpect: {denied: x}\n",
		"no object":    "expect: {denied: x}\n",
		"no expect":    "object: {kind: Pod, metadata: {name: a}}\n",
		"both expects": "object: {kind: Pod}\nexpect: {denied: x, object: {kind: Pod}}\n",
		"not a Pod":    "object: {kind: Deployment}\nexpect: {denied: x}\n",
		"bad YAML":     "object: [\n",
		"not a map":    "- a\n",
		"alias bomb":   "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n",
	} {
		path := filepath.Join(t.TempDir(), "case.yaml")
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := catalogtest.Load(path)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: %v; want an error naming %s", name, err, path)
		}
	}
	if _, err := catalogtest.Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no cases") {
		t.Errorf("an empty directory: %v; want no cases", err)
	}
}

func run(t *testing.T, cases []catalogtest.Case) []catalogtest.Result {
	t.Helper()
	cat, err := catalog.Default()
	if err != nil {
		t.Fatal(err)
	}
	r, err := catalogtest.NewRunner(cat)
	if err != nil {
		t.Fatal(err)
	}
	var out []catalogtest.Result
	for _, c := range cases {
		out = append(out, r.Run(t.Context(), c, catalogtest.Paths))
	}
	return out
}

// TestTheDocumentedCasePasses: the case docs/admission-policies.md shows
// in full is a case that passes, as written.
func TestTheDocumentedCasePasses(t *testing.T) {
	readme, err := os.ReadFile("../../docs/admission-policies.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(readme), "### Testing a catalog: `catalog test`")
	if !ok {
		t.Fatal("docs/admission-policies.md: no section on catalog test")
	}
	_, block, _ := strings.Cut(after, "```yaml\n")
	block, _, _ = strings.Cut(block, "```")
	path := filepath.Join(t.TempDir(), "case.yaml")
	if err := os.WriteFile(path, []byte(block), 0o644); err != nil {
		t.Fatal(err)
	}
	cases, err := catalogtest.Load(path)
	if err != nil {
		t.Fatalf("the documented case: %v", err)
	}
	for _, r := range run(t, cases) {
		if !r.Passed {
			t.Errorf("the documented case fails: %+v", r.Paths)
		}
	}
}
