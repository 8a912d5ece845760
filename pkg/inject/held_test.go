package inject

import (
	"bytes"
	"encoding/json"
	"os"
	"runtime"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
)

// What a status entry says is checked against the Pod, by who wrote it:
// the webhook's signed entry is current after the rest of the admission
// chain added to its containers, stale once the catalog moves, tampered
// once what it lists changes, and unverified with no key. An entry the
// app team writes for content of its own (forged, or with the signature
// stripped, or in the form of an earlier release) never reads stale
// where keys are given; the compiled policies' unsigned entries, with no
// keys, are taken at their word.
func TestAStatusEntryIsCheckedByWhoWroteIt(t *testing.T) {
	keys, err := NewKeys([]byte("the status key of this test, 32 bytes or more"))
	if err != nil {
		t.Fatal(err)
	}
	cat := mustParse(t, catalog.DefaultYAML())
	moved := mustParse(t, bytes.ReplaceAll(catalog.DefaultYAML(), []byte("busybox:1.37.0"), []byte("busybox:1.37.1")))
	// A template that sets its pull policy, which AlwaysPullImages
	// overrides.
	pinned := mustParse(t, bytes.Replace(catalog.DefaultYAML(), []byte("image: docker.io/library/busybox:1.37.0\n"), []byte("image: docker.io/library/busybox:1.37.0\n    imagePullPolicy: Never\n"), 1))
	pinnedPod := injected(t, pinned, keys)
	signed := injected(t, cat, keys)

	filler := func(p *corev1.Pod) *corev1.Container { return findContainer(p.Spec.Containers, "content-filler") }
	chain := func(p *corev1.Pod) { // AlwaysPullImages, LimitRanger, a monitoring webhook
		for i := range p.Spec.Containers {
			c := &p.Spec.Containers[i]
			c.ImagePullPolicy = corev1.PullAlways
			c.Env = append(c.Env, corev1.EnvVar{Name: "DD_AGENT_HOST", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.hostIP"}}})
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "dd-socket", MountPath: "/var/run/dd"})
			if c.Resources.Limits == nil {
				c.Resources.Limits = corev1.ResourceList{}
			}
			c.Resources.Limits[corev1.ResourceEphemeralStorage] = resource.MustParse("1Gi")
		}
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "dd-socket"})
	}
	pause := func(p *corev1.Pod) { filler(p).Image = "registry.k8s.io/pause:3.10" }
	command := func(p *corev1.Pod) { filler(p).Command = []string{"sleep", "infinity"} }
	workDir := func(p *corev1.Pod) { filler(p).WorkingDir = "/tmp" }
	// rewrite makes the status an entry for what the Pod holds now, as an
	// app team can: held computed from the Pod, signed with form.
	rewrite := func(form func(in Injected) Injected) func(p *corev1.Pod) {
		return func(p *corev1.Pod) {
			b, err := newBuilder(p, cat, Status{Templates: []Injected{{Name: "content-filler"}}})
			if err != nil {
				t.Fatal(err)
			}
			held := heldJSON(p, nil, cat.Template("content-filler"), b.targets)
			p.Annotations[StatusAnnotation] = Status{Templates: []Injected{form(Injected{Name: "content-filler", Held: held})}}.String()
		}
	}
	forgedMAC := rewrite(func(in Injected) Injected {
		in.Signed, in.MAC = "2026-01-01T00:00:00Z", strings.Repeat("ab", 32)
		return in
	})
	unsigned := rewrite(func(in Injected) Injected { return in })
	plainHash := rewrite(func(in Injected) Injected { return Injected{Name: in.Name, Hash: HashHeld(in.Held)} })

	if filler(pinnedPod).ImagePullPolicy != corev1.PullNever {
		t.Fatalf("the pinned template's sidecar pulls %q; the test proves nothing", filler(pinnedPod).ImagePullPolicy)
	}
	alwaysPull := func(p *corev1.Pod) { filler(p).ImagePullPolicy = corev1.PullAlways }
	ifNotPresent := func(p *corev1.Pod) { filler(p).ImagePullPolicy = corev1.PullIfNotPresent }
	for name, c := range map[string]struct {
		pod     *corev1.Pod
		changes []func(*corev1.Pod)
		cat     *catalog.Catalog
		keys    *Keys
		want    string // current, stale, tampered, unverified
	}{
		"a pinned pull policy, AlwaysPullImages after it":       {pinnedPod, []func(*corev1.Pod){alwaysPull}, pinned, keys, "current"},
		"a pinned pull policy changed otherwise":                {pinnedPod, []func(*corev1.Pod){ifNotPresent}, pinned, keys, "tampered"},
		"the webhook's Pod":                                     {signed, nil, cat, keys, "current"},
		"the webhook's Pod after the chain":                     {signed, []func(*corev1.Pod){chain}, cat, keys, "current"},
		"the webhook's Pod after the chain, catalog moved":      {signed, []func(*corev1.Pod){chain}, moved, keys, "stale"},
		"the webhook's Pod without the key":                     {signed, []func(*corev1.Pod){chain}, cat, nil, "unverified"},
		"its sidecar's image changed":                           {signed, []func(*corev1.Pod){chain, pause}, cat, keys, "tampered"},
		"its sidecar's image changed, without the key":          {signed, []func(*corev1.Pod){pause}, cat, nil, "tampered"},
		"image changed, entry forged":                           {signed, []func(*corev1.Pod){chain, pause, forgedMAC}, cat, keys, "tampered"},
		"image changed, entry unsigned":                         {signed, []func(*corev1.Pod){chain, pause, unsigned}, cat, keys, "tampered"},
		"image changed, entry an earlier release's hash":        {signed, []func(*corev1.Pod){pause, plainHash}, cat, keys, "tampered"},
		"an unsigned entry of today's rendering":                {signed, []func(*corev1.Pod){unsigned}, cat, keys, "current"},
		"an unsigned entry over a look-alike of its own":        {signed, []func(*corev1.Pod){unsigned, command}, cat, keys, "tampered"},
		"a signed entry, its sidecar's command changed":         {signed, []func(*corev1.Pod){command}, cat, keys, "tampered"},
		"a signed entry, a field the template leaves unset set": {signed, []func(*corev1.Pod){workDir}, cat, keys, "current"},
		"the policies' unsigned entry, no keys":                 {signed, []func(*corev1.Pod){unsigned, chain}, cat, nil, "current"},
		"the policies' unsigned entry, no keys, catalog moved":  {signed, []func(*corev1.Pod){unsigned, chain}, moved, nil, "stale"},
	} {
		t.Run(name, func(t *testing.T) {
			pod := c.pod.DeepCopy()
			for _, change := range c.changes {
				change(pod)
			}
			claims, err := VerifyStatus(pod, c.cat, c.keys)
			if err != nil || len(claims) != 1 {
				t.Fatalf("VerifyStatus: %v, %v", claims, err)
			}
			if got := state(claims[0]); got != c.want {
				t.Errorf("%s (%+v), want %s", got, claims[0], c.want)
			}
		})
	}
}

// state is the conformance state of a claim, as package conformance
// names it.
func state(c Claim) string {
	switch {
	case c.Reason == "":
		return "current"
	case c.Unverifiable:
		return "unverified"
	case c.Kept && c.Present:
		return "stale"
	}
	return "tampered"
}

// injected is the content-filler golden Pod as injected with keys.
func injected(t *testing.T, cat *catalog.Catalog, keys *Keys) *corev1.Pod {
	t.Helper()
	data, err := os.ReadFile("testdata/golden/content-filler-nginx.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{}
	if err := yaml.Unmarshal(data, pod); err != nil {
		t.Fatal(err)
	}
	res, err := Pod(pod, nil, cat, keys)
	if err != nil {
		t.Fatal(err)
	}
	after := pod.DeepCopy()
	after.Spec.Containers = append(after.Spec.Containers, res.Plan.Containers...)
	after.Spec.Volumes = append(after.Spec.Volumes, res.Plan.Volumes...)
	for _, app := range res.Plan.Apps {
		c := &after.Spec.Containers[app.Index]
		c.VolumeMounts, c.Env = append(c.VolumeMounts, app.VolumeMounts...), append(c.Env, app.Env...)
	}
	after.Annotations[StatusAnnotation] = res.Plan.Status.String()
	return roundTrip(t, after)
}

// roundTrip is pod through JSON, as the API server stores it.
func roundTrip(t *testing.T, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	data, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	out := &corev1.Pod{}
	if err := json.Unmarshal(data, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func mustParse(t *testing.T, data []byte) *catalog.Catalog {
	t.Helper()
	cat, err := catalog.Parse(catalog.Source{Name: "default.yaml", Data: data})
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// A status entry's held JSON is the Pod author's to write: a megabyte of
// empty objects is refused before it is decoded (without keys, as the
// policies' controller reads it) or never read (its MAC checked first),
// and costs next to nothing either way.
func TestAHugeHeldIsNotDecoded(t *testing.T) {
	keys, err := NewKeys([]byte("the status key of this test, 32 bytes or more"))
	if err != nil {
		t.Fatal(err)
	}
	cat := mustParse(t, catalog.DefaultYAML())
	held := `{"containers":[` + strings.Repeat("{},", 330_000) + `{}]}`
	for name, c := range map[string]struct {
		keys  *Keys
		entry Injected
		want  string
	}{
		"unsigned, without keys": {nil, Injected{Name: "content-filler", Held: held}, "more than the 4096 a template's content holds"},
		"forged, with keys":      {keys, Injected{Name: "content-filler", Held: held, Signed: "2026-01-01T00:00:00Z", MAC: strings.Repeat("ab", 32)}, "signature does not verify"},
	} {
		t.Run(name, func(t *testing.T) {
			pod := injected(t, cat, keys)
			pod.Annotations[StatusAnnotation] = Status{Templates: []Injected{c.entry}}.String()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			claims, err := VerifyStatus(pod, cat, c.keys)
			runtime.ReadMemStats(&after)
			if err != nil || len(claims) != 1 || !strings.Contains(claims[0].Reason, c.want) {
				t.Fatalf("%+v, %v; want a reason holding %q", claims, err, c.want)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
				t.Errorf("checking it allocated %d MiB", alloc>>20)
			}
		})
	}
}
