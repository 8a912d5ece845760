package conformance

import (
	"bytes"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/pkg/inject/injecttest"
	"github.com/podpatterns/sidecar-injector/pkg/patch/patchtest"
)

func parse(t testing.TB, extra string, replace ...string) *catalog.Catalog {
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
func injected(t testing.TB, p *corev1.Pod, labels map[string]string, cat *catalog.Catalog) *corev1.Pod {
	return patchtest.Admitted(t, p, labels, cat)
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
	filler := func(p *corev1.Pod) *corev1.Container {
		for i := range p.Spec.Containers {
			if p.Spec.Containers[i].Name == "content-filler" {
				return &p.Spec.Containers[i]
			}
		}
		t.Fatal("no content-filler container")
		return nil
	}

	tampered := current.DeepCopy()
	filler(tampered).Image = "registry.example.com/other:1"
	// What the rest of the admission chain adds: AlwaysPullImages, a
	// LimitRange's defaults, another webhook's env.
	chained := current.DeepCopy()
	filler(chained).ImagePullPolicy = corev1.PullAlways
	filler(chained).Resources.Limits[corev1.ResourceEphemeralStorage] = resource.MustParse("1Gi")
	filler(chained).Env = append(filler(chained).Env, corev1.EnvVar{Name: "DD_AGENT_HOST", Value: "10.0.0.1"})
	withArg := current.DeepCopy()
	filler(withArg).Args = append(filler(withArg).Args, "--verbose")
	forged := pod("content-filler")
	forged.Annotations[inject.StatusAnnotation] = `{"templates":[{"name":"content-filler","hash":"0"}]}`
	// Admitted while the webhook was bypassed: a look-alike under a
	// made-up status.
	bypassed := pod("content-filler")
	bypassed.Annotations[inject.StatusAnnotation] = `{"templates":[{"name":"content-filler","hash":"0"}]}`
	bypassed.Spec.Containers = append(bypassed.Spec.Containers, corev1.Container{Name: "content-filler", Image: "busybox", Command: []string{"true"}})
	lookAlike := pod("content-filler")
	lookAlike.Spec.Containers = append(lookAlike.Spec.Containers, corev1.Container{Name: "content-filler", Image: "busybox"})
	unasked := current.DeepCopy()
	delete(unasked.Annotations, inject.InjectAnnotation)
	// As the previous release wrote it: the same content under its
	// 16-digit hash of the rendering.
	legacy := current.DeepCopy()
	legacy.Annotations[inject.StatusAnnotation] = `{"templates":[{"name":"content-filler","hash":"fe79e22c2a102a6c"}]}`
	legacyChanged := legacy.DeepCopy()
	filler(legacyChanged).Args = []string{"sleep 3600"}

	type want struct {
		state    State
		template string
		reason   string
	}
	for name, c := range map[string]struct {
		pod    *corev1.Pod
		labels map[string]string
		cat    *catalog.Catalog
		want   want
		noKeys bool // as the controller of a cluster the compiled policies alone inject
	}{
		"injected as the catalog renders it is current":                            {current, nil, cat, want{Current, "content-filler", ""}, false},
		"a new image in the catalog makes it stale":                                {current, nil, newImage, want{Stale, "content-filler", `renders it differently (containers "content-filler" differs at .image)`}, false},
		"asked for and not injected is missing":                                    {pod("content-filler"), nil, cat, want{Missing, "content-filler", "not injected"}, false},
		"required and not injected is missing":                                     {pod("none"), prod, cat, want{Missing, "content-filler", "not injected"}, false},
		"content changed after injection is tampered":                              {tampered, nil, cat, want{Tampered, "content-filler", "not what its status entry says was injected"}, false},
		"what the admission chain added is current":                                {chained, nil, cat, want{Current, "content-filler", ""}, false},
		"what the admission chain added, the catalog moved since, is stale":        {chained, nil, newImage, want{Stale, "content-filler", "renders it differently"}, false},
		"an argument added to the template's is tampered":                          {withArg, nil, cat, want{Tampered, "content-filler", "differs at .args from what was injected"}, false},
		"a signed status without its key is unverified":                            {chained, nil, cat, want{Unverified, "content-filler", "no status key"}, true},
		"a status without the containers is tampered":                              {forged, nil, cat, want{Tampered, "content-filler", "the status lists it, but"}, false},
		"a look-alike under a made-up status, the webhook bypassed, is tampered":   {bypassed, nil, cat, want{Tampered, "content-filler", "not what its status entry says was injected"}, false},
		"a look-alike container without a status is tampered":                      {lookAlike, nil, cat, want{Tampered, "content-filler", "the status annotation does not list it"}, false},
		"injected but no longer asked for is not wanted":                           {unasked, nil, cat, want{NotWanted, "content-filler", "neither asked for nor required"}, false},
		"a Pod that asks for nothing, where nothing applies":                       {pod(""), nil, cat, want{None, "", ""}, false},
		"required and injected, asking for nothing, is current":                    {injected(t, pod("none"), prod, cat), prod, cat, want{Current, "content-filler", ""}, false},
		"a status of the previous release on today's rendering is current":         {legacy, nil, cat, want{Current, "content-filler", ""}, false},
		"a status of the previous release, the catalog moved since, is tampered":   {legacy, nil, newImage, want{Tampered, "content-filler", "not signed by the injector"}, false},
		"… and stale where no keys are given":                                      {legacy, nil, newImage, want{Stale, "content-filler", "renders it differently"}, true},
		"a status of the previous release claiming today's rendering, is tampered": {legacyChanged, nil, cat, want{Tampered, "content-filler", "differs at .args"}, false},
	} {
		t.Run(name, func(t *testing.T) {
			keys := injecttest.Keys
			if c.noKeys {
				keys = nil
			}
			got := Classify(c.pod, c.labels, c.cat, keys)
			if got.State != c.want.state {
				t.Fatalf("state %s, want %s: %+v", got.State, c.want.state, got.Templates)
			}
			if c.want.template == "" {
				if len(got.Templates) != 0 {
					t.Errorf("templates %+v, want none", got.Templates)
				}
				return
			}
			if len(got.Templates) != 1 || got.Templates[0].Name != c.want.template || got.Templates[0].State != c.want.state || !strings.Contains(got.Templates[0].Reason, c.want.reason) {
				t.Errorf("templates %+v, want one: %s %s, its reason holding %q", got.Templates, c.want.template, c.want.state, c.want.reason)
			}
		})
	}
}

// A status annotation that is not JSON is tampered with, never a template
// "not in the catalog".
func TestMalformedStatusIsTampered(t *testing.T) {
	p := pod("content-filler")
	p.Annotations[inject.StatusAnnotation] = `{"templates":[`
	if got := Classify(p, nil, parse(t, ""), injecttest.Keys); got.State != Tampered {
		t.Errorf("state %s, want tampered: %+v", got.State, got.Templates)
	}
}
