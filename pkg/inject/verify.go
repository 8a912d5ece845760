package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
)

// Claim is one entry of a Pod's status annotation, checked against what
// the Pod holds.
type Claim struct {
	Name string
	// Reason says why the Pod does not carry the template as the catalog
	// renders it today; "" when it does.
	Reason string
	// Present reports whether the Pod has every container the template
	// names, whatever their content.
	Present bool
	// Kept reports whether the Pod still holds what the injector wrote
	// into the entry: then content that is not today's rendering is
	// stale, not tampered with. That takes an entry the injector signed
	// (see Keys); with no keys at all, an unsigned one (the compiled
	// admission policies write those) is taken at its word.
	Kept bool
	// Unverifiable: the entry is signed and there is no key to verify
	// it. Reason says so; the claim is never current.
	Unverifiable bool
	// Rendered reports whether what the entry lists, as the Pod holds it,
	// is what the catalog renders for the Pod today, whether or not the
	// entry can be trusted.
	Rendered bool
}

// VerifyStatus checks each template the Pod's status annotation names
// against what the Pod holds, as the engine does before it trusts one,
// with keys to verify signed entries (nil: none can be verified). An
// error when the annotation is not JSON, or a Denial when the Pod's
// target annotation is unusable.
func VerifyStatus(pod *corev1.Pod, cat *catalog.Catalog, keys *Keys) ([]Claim, error) {
	claimed, warnings := readStatus(pod)
	if len(warnings) > 0 {
		return nil, errors.New(warnings[0])
	}
	b, err := newBuilder(pod, cat, claimed)
	if err != nil {
		return nil, err
	}
	var out []Claim
	for _, in := range claimed.Templates {
		t := cat.Template(in.Name)
		if t == nil {
			out = append(out, Claim{Name: in.Name, Reason: "not in the catalog"})
			continue
		}
		out = append(out, b.check(in, t, keys))
	}
	return out, nil
}

// check verifies one status entry for t against the Pod.
//
// A held entry (the webhook's, signed, or with no keys the compiled
// policies') is what the Pod held once injected. The Pod must still hold
// every field of it (see covers: the admission chain may have added to it
// since); then, with what it holds of the entry put back as the entry
// says, it is checked against today's rendering: equal is current, else
// stale. A signature that verifies, or with no keys the entry itself,
// makes stale believed. Where keys are given, an entry they cannot vouch
// for (unsigned, or of a release before signed entries) is current only
// as today's exact rendering, and tampered otherwise: an app team that
// changes a sidecar's image and writes an entry of its own does not make
// it read stale, nor does a look-alike with fields of its own read
// current.
func (b *builder) check(in Injected, t *catalog.Template, keys *Keys) Claim {
	c := Claim{Name: in.Name, Present: b.present(t)}
	signed := in.MAC != ""
	switch {
	case in.Held != "" && (signed || keys == nil):
		if signed && keys != nil && !keys.verify(in) { // before anything the entry holds is read
			c.Reason = "its status entry's signature does not verify: the injector did not write it"
			return c
		}
		h, err := decodeHeld(in.Held)
		if err != nil {
			c.Reason = "its status entry does not hold a Pod's content: " + err.Error()
			return c
		}
		if c.Reason = b.covered(h); c.Reason != "" {
			return c
		}
		_, today := b.restored(h).verify(t)
		c.Rendered = today == ""
		switch {
		case signed && keys == nil:
			c.Unverifiable, c.Reason = true, "its status entry is signed, and there is no status key to verify it with"
			if !c.Rendered {
				c.Reason += "; the catalog now renders it differently (" + today + ")"
			}
			return c
		}
		c.Reason, c.Kept = today, signed || keys == nil
	default:
		_, c.Reason = b.verify(t)
		c.Rendered = c.Reason == ""
		switch {
		case c.Reason == "" || keys != nil:
		case len(in.Hash) == heldHashLen:
			c.Kept = heldHash(b.pod, nil, t, b.targets) == in.Hash
		case len(in.Hash) == legacyHashLen:
			r, err := b.render(t)
			c.Kept = err != nil || r.legacyHash() != in.Hash
		}
	}
	if c.Reason != "" && !c.Kept && !signed && keys != nil {
		c.Reason = "its status entry is not signed by the injector, so only the catalog's rendering of today counts, and " + c.Reason
	}
	return c
}

// present reports whether the Pod has every container t names.
func (b *builder) present(t *catalog.Template) bool {
	for _, name := range t.ContainerNames() {
		if findContainer(b.pod.Spec.InitContainers, name) == nil && findContainer(b.pod.Spec.Containers, name) == nil {
			return false
		}
	}
	return true
}

// verify reports whether the Pod holds what t renders for it today: its
// containers and volumes exactly (in canonical form: the API server's
// defaults are the only additions tolerated), the app mounts and env
// and the pull secrets. It returns the status hash of what the Pod
// holds, or why that is not t's rendering.
func (b *builder) verify(t *catalog.Template) (hash, reason string) {
	r, err := b.render(t)
	if err != nil {
		return "", "its parameters: " + err.Error()
	}
	init, regular := r.containers()
	for _, list := range []struct {
		field string
		want  []corev1.Container
		have  []corev1.Container
	}{{"initContainers", init, b.pod.Spec.InitContainers}, {"containers", regular, b.pod.Spec.Containers}} {
		for _, c := range list.want {
			have := findContainer(list.have, c.Name)
			if have == nil {
				return "", fmt.Sprintf("no %s entry %q", list.field, c.Name)
			}
			if diff := differs(CanonicalContainer(c), CanonicalContainer(*have)); diff != "" {
				return "", fmt.Sprintf("%s %q %s", list.field, c.Name, diff)
			}
		}
	}
	for _, v := range r.content.Volumes {
		have := findVolume(b.pod.Spec.Volumes, v.Name)
		if have == nil {
			return "", fmt.Sprintf("no volume %q", v.Name)
		}
		if diff := differs(CanonicalVolume(v), CanonicalVolume(*have)); diff != "" {
			return "", fmt.Sprintf("volume %q %s", v.Name, diff)
		}
	}
	if reason := b.verifyApps(r.content); reason != "" {
		return "", reason
	}
	for _, s := range r.content.ImagePullSecrets {
		if !hasSecret(b.pod.Spec.ImagePullSecrets, s) {
			return "", fmt.Sprintf("no image pull secret %q", s.Name)
		}
	}
	return heldHash(b.pod, nil, t, b.targets), ""
}

// verifyApps checks the template's mounts and env in the app containers:
// in every one the target annotation names, or else in at least one, since
// a container another webhook added later never received them.
func (b *builder) verifyApps(content *catalog.Content) string {
	_, named := b.pod.Annotations[TargetContainersAnnotation]
	lacks := func(app *corev1.Container) string {
		for _, m := range content.AppVolumeMounts {
			if have := mountAt(app.VolumeMounts, m.MountPath); have == nil || have.Name != m.Name {
				return fmt.Sprintf("container %q does not mount %q at %s", app.Name, m.Name, m.MountPath)
			}
		}
		for _, e := range content.AppEnv {
			if !hasEnv(app.Env, e.Name) {
				return fmt.Sprintf("container %q does not set %s", app.Name, e.Name)
			}
		}
		return ""
	}
	var first string
	for _, i := range b.targets {
		reason := lacks(&b.pod.Spec.Containers[i])
		switch {
		case reason == "" && !named:
			return ""
		case reason != "" && named:
			return reason
		case first == "":
			first = reason
		}
	}
	return first
}

func findContainer(list []corev1.Container, name string) *corev1.Container {
	for i := range list {
		if list[i].Name == name {
			return &list[i]
		}
	}
	return nil
}

// differs compares want with have as JSON, and says where have lacks or
// changes something want sets, or sets something want does not; "" when
// they are equal.
func differs(want, have any) string {
	w, h := asJSON(want), asJSON(have)
	if diff := coversJSON(w, h, ""); diff != "" {
		return "differs at " + diff
	}
	if extra := coversJSON(h, w, ""); extra != "" {
		return "sets " + extra + ", which the template does not"
	}
	return ""
}

func asJSON(v any) any {
	data, _ := json.Marshal(v) // API types always marshal
	var out any
	_ = json.Unmarshal(data, &out)
	return out
}

func coversJSON(want, have any, at string) string {
	where := at
	if where == "" {
		where = "the top"
	}
	switch w := want.(type) {
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok {
			return where
		}
		for _, k := range slices.Sorted(maps.Keys(w)) { // the first difference named is always the same
			if diff := coversJSON(w[k], h[k], at+"."+k); diff != "" {
				return diff
			}
		}
	case []any:
		h, ok := have.([]any)
		if !ok || len(h) != len(w) {
			return where
		}
		for i := range w {
			if diff := coversJSON(w[i], h[i], at+"["+strconv.Itoa(i)+"]"); diff != "" {
				return diff
			}
		}
	default:
		if !reflect.DeepEqual(want, have) {
			return where
		}
	}
	return ""
}

// Rendered returns each container of the template called name as the
// catalog renders it today for this Pod (parameters, the app's user and
// resource overrides applied), by container name.
func Rendered(pod *corev1.Pod, cat *catalog.Catalog, name string) (map[string]corev1.Container, error) {
	t := cat.Template(name)
	if t == nil {
		return nil, fmt.Errorf("template %q is not in the catalog", name)
	}
	claimed, _ := readStatus(pod)
	b, err := newBuilder(pod, cat, claimed)
	if err != nil {
		return nil, err
	}
	r, err := b.render(t)
	if err != nil {
		return nil, fmt.Errorf("its parameters: %w", err)
	}
	init, regular := r.containers()
	out := map[string]corev1.Container{}
	for _, c := range slices.Concat(init, regular) {
		out[c.Name] = c
	}
	return out, nil
}
