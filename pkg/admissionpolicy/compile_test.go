package admissionpolicy

import (
	"strings"
	"testing"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
)

func TestCompileRefusesWhatCELCannotExpressExactly(t *testing.T) {
	extra := `apiVersion: sidecars.podpatterns.io/v1alpha1
kind: Catalog
templates:
- name: waiter
  pattern: sidecar
  description: Waits.
  parameters:
  - {name: period, description: How long., type: duration, default: 5s}
  containers:
  - name: waiter
    image: registry.example.com/waiter:1.0.0
    args: ['--period={{period}}']
- name: marked
  pattern: sidecar
  description: Holds the compiler's own marks.
  containers:
  - name: marked
    image: registry.example.com/marked:1.0.0
    args: [--id=135792401]
`
	cat, err := catalog.Parse(catalog.Source{Name: "default.yaml", Data: catalog.DefaultYAML()}, catalog.Source{Name: "extra.yaml", Data: []byte(extra)})
	if err != nil {
		t.Fatal(err)
	}
	c := Compile(cat, Options{})
	refused := map[string]string{}
	for _, r := range c.Refused {
		refused[r.Template] = r.Reason
	}
	for name, want := range map[string]string{"waiter": `parameter "period" is a duration`, "marked": "what the compiler uses to mark parameters"} {
		if !strings.Contains(refused[name], want) {
			t.Errorf("template %s: refusal %q, want it to say %q", name, refused[name], want)
		}
	}
	if len(c.Refused) != 2 {
		t.Errorf("refused %v; want waiter and marked only", c.Refused)
	}
	patch := c.Mutating.Spec.Mutations[0].JSONPatch.Expression
	for _, name := range []string{"log-shipper", "ambassador", "metrics-adapter", "content-filler"} {
		if !strings.Contains(patch, `n == "`+name+`"`) {
			t.Errorf("the mutation does not add template %s", name)
		}
	}
	if strings.Contains(patch, `n == "waiter"`) {
		t.Error("the mutation adds a refused template")
	}
	problems := ""
	for _, v := range c.Validating.Spec.Variables {
		if v.Name == "problems" {
			problems = v.Expression
		}
	}
	if !strings.Contains(problems, `the compiler refused it: parameter \"period\" is a duration`) {
		t.Error("the validating policy does not deny a Pod that gets a refused template")
	}
}

// TestIdentKeepsNamesApart: variables are named after templates and
// parameters; two names must never make one identifier.
func TestIdentKeepsNamesApart(t *testing.T) {
	names := []string{"log-shipper", "logshipper", "log--shipper", "log-1", "log1", "log-", "2fa", "2-fa", "a-b-c", "a-bc", "ab-c"}
	seen := map[string]string{}
	for _, n := range names {
		id := ident(n)
		if prev, ok := seen[id]; ok {
			t.Errorf("%q and %q are both %q", prev, n, id)
		}
		seen[id] = n
	}
	if got := ident("log-shipper"); got != "logShipper" {
		t.Errorf("ident(log-shipper) = %q", got)
	}
}
