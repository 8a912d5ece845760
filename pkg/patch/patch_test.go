package patch

import (
	"bytes"
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/podpatterns/sidecar-injector/pkg/inject"
)

// annotationPatch is the patch that sets one annotation.
func annotationPatch(annotations map[string]string, key, value string) []Operation {
	return Annotations(annotations, map[string]string{key: value})
}

func TestPathsAndValuesAreEscaped(t *testing.T) {
	doc := []byte(`{"metadata":{"annotations":{"keep":"me"}}}`)
	key := `odd/"key"\with~all`
	out, err := Apply(doc, annotationPatch(map[string]string{"keep": "me"}, key, `{"v":"\"quoted\""}`))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"metadata":{"annotations":{"keep":"me","odd/\"key\"\\with~all":"{\"v\":\"\\\"quoted\\\"\"}"}}}`
	if string(out) != want {
		t.Errorf("got  %s\nwant %s", out, want)
	}
}

// A Pod with no annotations, or an empty map that its encoder may or may
// not have written, gets the map created.
func TestAnnotationCreatesTheMap(t *testing.T) {
	for _, c := range []struct {
		doc         string
		annotations map[string]string
	}{
		{`{"metadata":{"name":"x"}}`, nil},
		{`{"metadata":{"name":"x"}}`, map[string]string{}},
		{`{"metadata":{"annotations":{},"name":"x"}}`, map[string]string{}},
	} {
		out, err := Apply([]byte(c.doc), annotationPatch(c.annotations, "a/b", "c"))
		if err != nil {
			t.Errorf("%s: %v", c.doc, err)
			continue
		}
		if want := `{"metadata":{"annotations":{"a/b":"c"},"name":"x"}}`; string(out) != want {
			t.Errorf("%s: got %s, want %s", c.doc, out, want)
		}
	}
}

func TestMarshalEmpty(t *testing.T) {
	data, err := Marshal(nil)
	if err != nil || string(data) != "[]" {
		t.Errorf("got %q, %v", data, err)
	}
}

// The patch does what the plan says: whole arrays where the Pod has none,
// appends where it has some, "<" kept readable.
func TestForPodAppliesThePlan(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: "app", Env: []corev1.EnvVar{{Name: "A", Value: "1"}}}},
		Volumes:    []corev1.Volume{{Name: "data"}},
	}}
	plan := &inject.Plan{
		Volumes:        []corev1.Volume{{Name: "logs"}},
		InitContainers: []corev1.Container{{Name: "init", Image: "img", Args: []string{"<html>"}}},
		Containers:     []corev1.Container{{Name: "side"}},
		Apps: []inject.AppAdditions{{Index: 0,
			VolumeMounts: []corev1.VolumeMount{{Name: "logs", MountPath: "/logs"}},
			Env:          []corev1.EnvVar{{Name: "B", Value: "2"}, {Name: "C", Value: `"3"`}}}},
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: "pull"}},
		Status:           inject.Status{Templates: []inject.Injected{{Name: "t", Hash: "0123"}}},
	}
	doc, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	ops := ForPod(pod, plan)
	marshalled, err := Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(marshalled, []byte(`"<html>"`)) {
		t.Errorf("HTML characters escaped in the patch: %s", marshalled)
	}
	out, err := Apply(doc, ops)
	if err != nil {
		t.Fatal(err)
	}
	var got corev1.Pod
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	s, app := got.Spec, got.Spec.Containers[0]
	switch {
	case len(s.Volumes) != 2 || s.Volumes[1].Name != "logs":
		t.Errorf("volumes %+v", s.Volumes)
	case len(s.InitContainers) != 1 || s.InitContainers[0].Image != "img" || s.InitContainers[0].Args[0] != "<html>":
		t.Errorf("init containers %+v", s.InitContainers)
	case len(s.Containers) != 2 || s.Containers[1].Name != "side":
		t.Errorf("containers %+v", s.Containers)
	case len(app.VolumeMounts) != 1 || app.VolumeMounts[0].MountPath != "/logs":
		t.Errorf("app mounts %+v", app.VolumeMounts)
	case len(app.Env) != 3 || app.Env[1].Name != "B" || app.Env[2].Value != `"3"`:
		t.Errorf("app env %+v", app.Env)
	case len(s.ImagePullSecrets) != 1 || s.ImagePullSecrets[0].Name != "pull":
		t.Errorf("image pull secrets %+v", s.ImagePullSecrets)
	case got.Annotations[inject.StatusAnnotation] != plan.Status.String():
		t.Errorf("status annotation %q, want %q", got.Annotations[inject.StatusAnnotation], plan.Status.String())
	}
}
