package inject_test

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/podpatterns/sidecar-injector/pkg/inject"
)

// A status annotation listing thousands of entries, the same template
// again and again or names the catalog lacks, costs one verification per
// template and one warning, not one per entry: the Pod's author writes
// the list.
func TestAStatusFloodGetsOneWarning(t *testing.T) {
	cat := testCatalog(t)
	for name, entry := range map[string]func(i int) string{
		"one template listed 20,000 times": func(int) string { return `{"name":"content-filler","hash":"x"}` },
		"20,000 names the catalog lacks":   func(i int) string { return fmt.Sprintf(`{"name":"t%d","hash":"x"}`, i) },
	} {
		t.Run(name, func(t *testing.T) {
			entries := make([]string, 20000)
			for i := range entries {
				entries[i] = entry(i)
			}
			pod := &corev1.Pod{}
			pod.Annotations = map[string]string{
				inject.InjectAnnotation: "content-filler",
				inject.StatusAnnotation: `{"templates":[` + strings.Join(entries, ",") + `]}`,
			}
			pod.Spec.Containers = []corev1.Container{{Name: "app", Image: "app:1"}}
			res, err := inject.Pod(pod, nil, cat)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Warnings) > 2 {
				t.Errorf("%d warnings; want one about the status", len(res.Warnings))
			}
			if res.Plan == nil || len(res.Plan.Status.Templates) != 1 || res.Plan.Status.Templates[0].Name != "content-filler" {
				t.Errorf("status written %+v; want content-filler alone, injected now", res.Plan)
			}
		})
	}
}

// Thousands of parameter annotations for templates the Pod does not get
// give a few warnings, not one each.
func TestStrayParametersAreBounded(t *testing.T) {
	pod := &corev1.Pod{}
	pod.Annotations = map[string]string{inject.InjectAnnotation: "content-filler"}
	for i := range 5000 {
		pod.Annotations[inject.ParameterAnnotation(fmt.Sprintf("t%d", i), "p")] = "x"
	}
	pod.Spec.Containers = []corev1.Container{{Name: "app", Image: "app:1"}}
	res, err := inject.Pod(pod, nil, testCatalog(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 4 || !strings.Contains(res.Warnings[3], "4997 more annotations") {
		t.Errorf("%d warnings, last %q; want three and a count of the rest", len(res.Warnings), res.Warnings[len(res.Warnings)-1])
	}
}
