// Package catalogtest runs the cases an admin keeps beside a catalog:
// a Pod as created, the labels of its namespace, and the Pod expected
// once admitted, or the denial expected. Each case runs through the
// engine, as the webhook injects, and through the catalog's compiled
// admission policies, evaluated in process by kube-apiserver's own code
// (package eval); a case passes only when both make what it expects. No
// cluster is needed.
package catalogtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/pmezard/go-difflib/difflib"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/podpatterns/sidecar-injector/pkg/admissionpolicy"
	"github.com/podpatterns/sidecar-injector/pkg/admissionpolicy/eval"
	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/pkg/manifest"
	"github.com/podpatterns/sidecar-injector/pkg/patch"
)

// Case is one document of a case file.
type Case struct {
	// File and Index say where the case was read: the file and its
	// document, counted from 1.
	File  string `json:"-"`
	Index int    `json:"-"`
	// Name says what the case proves; the file and index if empty.
	Name      string    `json:"name,omitempty"`
	Namespace Namespace `json:"namespace"`
	// Object is the Pod as created.
	Object *corev1.Pod `json:"object"`
	Expect Expect      `json:"expect"`
}

// Namespace is the namespace the Pod is created in.
type Namespace struct {
	// Name is "default" if empty.
	Name   string            `json:"name,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
}

// Expect is what admission must make of the Pod: one of the two.
type Expect struct {
	// Object is the Pod as admitted. The status annotation is left out
	// of the comparison (it is the injector's record, whose form differs
	// between webhook and policies); the status the Pod got must verify.
	Object *corev1.Pod `json:"object,omitempty"`
	// Denied is a part of the denial's message: the Pod must be refused
	// with a message that holds it.
	Denied string `json:"denied,omitempty"`
}

// Title names the case in reports.
func (c Case) Title() string {
	where := fmt.Sprintf("%s#%d", c.File, c.Index)
	if c.Name == "" {
		return where
	}
	return where + ": " + c.Name
}

// Load reads the cases of each path: a YAML file of one or more cases,
// or a directory whose *.yaml and *.yml files are read, in name order.
func Load(paths ...string) ([]Case, error) {
	var files []string
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !info.IsDir() {
			files = append(files, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml") {
				files = append(files, filepath.Join(p, e.Name()))
			}
		}
	}
	var cases []Case
	for _, f := range files {
		cs, err := loadFile(f)
		if err != nil {
			return nil, err
		}
		cases = append(cases, cs...)
	}
	if len(cases) == 0 {
		return nil, fmt.Errorf("no cases in %s", strings.Join(paths, ", "))
	}
	return cases, nil
}

func loadFile(path string) ([]Case, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	docs, err := manifest.Split(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []Case
	for _, d := range docs {
		c := Case{File: path, Index: d.Index}
		dec := json.NewDecoder(bytes.NewReader(d.JSON))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return nil, fmt.Errorf("%s: %w", c.Title(), err)
		}
		if err := c.check(); err != nil {
			return nil, fmt.Errorf("%s: %w", c.Title(), err)
		}
		out = append(out, c)
	}
	return out, nil
}

func (c Case) check() error {
	switch {
	case c.Object == nil:
		return fmt.Errorf("object: want the Pod as created")
	case c.Object.Kind != "" && c.Object.Kind != "Pod":
		return fmt.Errorf("object: kind %s; admission injects Pods, so a case holds a Pod (kubectl get pod -o yaml, or sidecar-injector inject on a workload shows its Pods)", c.Object.Kind)
	case (c.Expect.Object == nil) == (c.Expect.Denied == ""):
		return fmt.Errorf("expect: want either object (the Pod as admitted) or denied (a part of the denial's message)")
	}
	return nil
}

// Path is the way a Pod is admitted.
type Path string

const (
	// Engine is the webhook's way: the engine's plan applied as a patch.
	Engine Path = "engine"
	// Policies is the compiled admission policies', in process.
	Policies Path = "policies"
)

// Paths are both, in the order they run.
var Paths = []Path{Engine, Policies}

// Result is what became of one case.
type Result struct {
	Case   string       `json:"case"`
	Passed bool         `json:"passed"`
	Paths  []PathResult `json:"paths"`
}

// PathResult is one case through one path.
type PathResult struct {
	Path    Path   `json:"path"`
	Passed  bool   `json:"passed"`
	Problem string `json:"problem,omitempty"`
	// Diff is the unified diff from the expected Pod to the admitted one.
	Diff string `json:"diff,omitempty"`
}

// Runner runs cases against one catalog.
type Runner struct {
	cat      *catalog.Catalog
	policies *eval.Policies
}

// NewRunner compiles cat and prepares both paths; an expression of the
// compiled policies that does not compile is an error.
func NewRunner(cat *catalog.Catalog) (*Runner, error) {
	p, err := eval.New(admissionpolicy.Compile(cat, admissionpolicy.Options{}))
	if err != nil {
		return nil, fmt.Errorf("the catalog's compiled admission policies: %w", err)
	}
	return &Runner{cat: cat, policies: p}, nil
}

// Run runs c through each path.
func (r *Runner) Run(ctx context.Context, c Case, paths []Path) Result {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: c.Namespace.Name, Labels: c.Namespace.Labels}}
	if ns.Name == "" {
		ns.Name = "default"
	}
	out := Result{Case: c.Title(), Passed: true}
	for _, p := range paths {
		var got *corev1.Pod
		var err error
		switch p {
		case Engine:
			got, err = r.engine(c.Object, ns)
		case Policies:
			got, err = r.policies.Create(ctx, c.Object, ns)
		}
		res := PathResult{Path: p}
		res.Problem, res.Diff = r.judge(c, got, err)
		res.Passed = res.Problem == ""
		out.Passed = out.Passed && res.Passed
		out.Paths = append(out.Paths, res)
	}
	return out
}

// engine admits pod as the webhook would: only in a namespace that opts
// in (as the webhook's configuration selects), else it is left alone.
func (r *Runner) engine(pod *corev1.Pod, ns *corev1.Namespace) (*corev1.Pod, error) {
	if ns.Labels[inject.InjectionLabel] != "enabled" {
		return pod, nil
	}
	res, err := inject.Pod(pod, ns.Labels, r.cat, nil)
	if err != nil {
		return nil, err
	}
	if res.Plan == nil {
		return pod, nil
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		return nil, err
	}
	out, err := patch.Apply(raw, patch.ForPod(pod, res.Plan))
	if err != nil {
		return nil, err
	}
	after := &corev1.Pod{}
	return after, json.Unmarshal(out, after)
}

// judge says what is wrong with what a path made of c, and the diff from
// the expected Pod; "" when it is what c expects.
func (r *Runner) judge(c Case, got *corev1.Pod, err error) (string, string) {
	switch {
	case err != nil && c.Expect.Denied == "":
		return "denied: " + err.Error(), ""
	case err != nil && !strings.Contains(err.Error(), c.Expect.Denied):
		return fmt.Sprintf("denied, but not with %q: %s", c.Expect.Denied, err), ""
	case err != nil:
		return "", ""
	case c.Expect.Denied != "":
		return fmt.Sprintf("admitted; want a denial with %q", c.Expect.Denied), ""
	}
	claims, err := inject.VerifyStatus(got, r.cat, nil)
	if err != nil {
		return "the status annotation does not verify: " + err.Error(), ""
	}
	for _, cl := range claims {
		if cl.Reason != "" {
			return fmt.Sprintf("the status entry of %q does not verify: %s", cl.Name, cl.Reason), ""
		}
	}
	want, have := comparable(c.Expect.Object), comparable(got)
	if want == have {
		return "", ""
	}
	diff, _ := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: difflib.SplitLines(want), B: difflib.SplitLines(have), FromFile: "expected", ToFile: "admitted", Context: 3,
	})
	return "the admitted Pod differs from the expected one", diff
}

// comparable is pod as YAML, without what the comparison leaves out: the
// status annotation, the type and the namespace.
func comparable(pod *corev1.Pod) string {
	p := pod.DeepCopy()
	p.TypeMeta, p.Namespace = metav1.TypeMeta{}, ""
	delete(p.Annotations, inject.StatusAnnotation)
	if len(p.Annotations) == 0 {
		p.Annotations = nil
	}
	// Through JSON, so that an empty list and none read the same.
	raw, _ := json.Marshal(p) // API types always marshal
	canon := &corev1.Pod{}
	_ = json.Unmarshal(raw, canon)
	out, _ := yaml.Marshal(canon)
	return string(out)
}

// Summary counts cases.
type Summary struct {
	Cases  int `json:"cases"`
	Passed int `json:"passed"`
	Failed int `json:"failed"`
}

// Summarize counts results.
func Summarize(results []Result) Summary {
	s := Summary{Cases: len(results)}
	for _, r := range results {
		if r.Passed {
			s.Passed++
		} else {
			s.Failed++
		}
	}
	return s
}

// WriteText prints results as `catalog test` does: a line per case that
// passed, and for one that failed what each path made of it, with the
// diff; then the counts.
func WriteText(w io.Writer, results []Result, sum Summary) error {
	for _, r := range results {
		var paths []string
		for _, p := range r.Paths {
			paths = append(paths, string(p.Path))
		}
		if r.Passed {
			fmt.Fprintf(w, "ok    %s (%s)\n", r.Case, strings.Join(paths, ", "))
			continue
		}
		fmt.Fprintf(w, "FAIL  %s\n", r.Case)
		for _, p := range r.Paths {
			if p.Passed {
				fmt.Fprintf(w, "      %s: ok\n", p.Path)
				continue
			}
			fmt.Fprintf(w, "      %s: %s\n", p.Path, p.Problem)
			if p.Diff != "" {
				fmt.Fprintf(w, "        %s\n", strings.ReplaceAll(strings.TrimRight(p.Diff, "\n"), "\n", "\n        "))
			}
		}
	}
	_, err := fmt.Fprintf(w, "%d cases: %d passed, %d failed\n", sum.Cases, sum.Passed, sum.Failed)
	return err
}
