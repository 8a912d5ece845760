package conformance

import (
	"bytes"
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/pkg/patch"
)

func parse(t *testing.T, extra string, replace ...string) *catalog.Catalog {
	t.Helper()
	data := catalog.DefaultYAML()
	for i := 0; i+1 < len(replace); i += 2 {
		data = bytes.Replace(data, []byte(replace[i]), []byte(replace[i+1]), 1)
	}
	sources := []catalog.Source{{Name: "default.yaml", Data: data}}
	if extra != "" {
		sources = append(sources, catalog.Source{Name: "extra.yaml", Data: []byte(extra)})
	}
	cat, err := catalog.Parse(sources...)
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

func pod(inject string) *corev1.Pod {
	p := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}}}
	p.Name = "web"
	if inject != "" {
		p.Annotations = map[string]string{"sidecars.podpatterns.io/inject": inject}
	}
	return p
}

// injected is p as the webhook admits it with cat.
func injected(t *testing.T, p *corev1.Pod, labels map[string]string, cat *catalog.Catalog) *corev1.Pod {
	t.Helper()
	res, err := inject.Pod(p, labels, cat)
	if err != nil || res.Plan == nil {
		t.Fatalf("nothing injected: %v", err)
	}
	raw, _ := json.Marshal(p)
	out, err := patch.Apply(raw, patch.ForPod(p, res.Plan))
	if err != nil {
		t.Fatal(err)
	}
	after := &corev1.Pod{}
	if err := json.Unmarshal(out, after); err != nil {
		t.Fatal(err)
	}
	return after
}

func TestClassify(t *testing.T) {
	cat := parse(t, `apiVersion: sidecars.podpatterns.io/v1alpha1
kind: Catalog
policies:
- {name: prod, namespaceSelector: {matchLabels: {env: prod}}, required: [content-filler]}
`)
	newImage := parse(t, "", "docker.io/library/busybox:1.37.0", "docker.io/library/busybox:1.38.0")
	prod := map[string]string{"env": "prod"}
	current := injected(t, pod("content-filler"), nil, cat)

	tampered := current.DeepCopy()
	for i := range tampered.Spec.Containers {
		if tampered.Spec.Containers[i].Name == "content-filler" {
			tampered.Spec.Containers[i].Image = "registry.example.com/other:1"
		}
	}
	forged := pod("content-filler")
	forged.Annotations[inject.StatusAnnotation] = `{"templates":[{"name":"content-filler","hash":"0"}]}`
	lookAlike := pod("content-filler")
	lookAlike.Spec.Containers = append(lookAlike.Spec.Containers, corev1.Container{Name: "content-filler", Image: "busybox"})
	unasked := current.DeepCopy()
	delete(unasked.Annotations, inject.InjectAnnotation)

	for name, c := range map[string]struct {
		pod    *corev1.Pod
		labels map[string]string
		cat    *catalog.Catalog
		want   State
	}{
		"injected as the catalog renders it is current":         {current, nil, cat, Current},
		"a new image in the catalog makes it stale":             {current, nil, newImage, Stale},
		"asked for and not injected is missing":                 {pod("content-filler"), nil, cat, Missing},
		"required and not injected is missing":                  {pod("none"), prod, cat, Missing},
		"content changed after injection is tampered":           {tampered, nil, cat, Tampered},
		"a status without the containers is tampered":           {forged, nil, cat, Tampered},
		"a look-alike container without a status is tampered":   {lookAlike, nil, cat, Tampered},
		"injected but no longer asked for is not wanted":        {unasked, nil, cat, NotWanted},
		"a Pod that asks for nothing, where nothing applies":    {pod(""), nil, cat, None},
		"required and injected, asking for nothing, is current": {injected(t, pod("none"), prod, cat), prod, cat, Current},
	} {
		t.Run(name, func(t *testing.T) {
			got := Classify(c.pod, c.labels, c.cat)
			if got.State != c.want {
				t.Errorf("state %s, want %s: %+v", got.State, c.want, got.Templates)
			}
		})
	}
}

// A status annotation that is not JSON is tampered with, never a template
// "not in the catalog".
func TestMalformedStatusIsTampered(t *testing.T) {
	p := pod("content-filler")
	p.Annotations[inject.StatusAnnotation] = `{"templates":[`
	if got := Classify(p, nil, parse(t, "")); got.State != Tampered {
		t.Errorf("state %s, want tampered: %+v", got.State, got.Templates)
	}
}
