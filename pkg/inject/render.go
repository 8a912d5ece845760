package inject

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
)

// rendering is what a template gives this Pod: its content for the Pod's
// parameters, the user its containers run as, and whether they run as
// native sidecars.
type rendering struct {
	content   *catalog.Content
	user      *user // nil: the template's own
	native    bool
	overrides []override
	// remarks on the user, for the warnings when the template is added
	remarks []string
}

// render works out t's rendering for the Pod.
func (b *builder) render(t *catalog.Template) (rendering, error) {
	values, err := parameters(b.pod, t)
	if err != nil {
		return rendering{}, err
	}
	r := rendering{content: t.Render(values), native: t.NativeSidecar || b.complete}
	if r.overrides, err = overrides(b.pod, t); err != nil {
		return rendering{}, err
	}
	if err := checkOverrides(t, r.content, r.overrides); err != nil {
		return rendering{}, err
	}
	u, ok, remarks := b.appUser(t)
	if ok {
		r.user = &u
	}
	r.remarks = remarks
	return r, nil
}

// parameters resolves a template's parameter values from the Pod's
// annotations, each checked and in its normal form; parameters the Pod
// does not set take their defaults when rendered.
func parameters(pod *corev1.Pod, t *catalog.Template) (catalog.Values, error) {
	prefix := t.Name + "." + Domain + "/" // a parameter annotation is <prefix><parameter>
	var keys []string
	for key := range pod.Annotations {
		if strings.HasPrefix(key, prefix) {
			keys = append(keys, key)
		}
	}
	sort.Strings(keys) // the first bad one named is always the same
	values := catalog.Values{}
	for _, key := range keys {
		name, value := key[len(prefix):], pod.Annotations[key]
		if slices.Contains(catalog.ReservedParameters, name) {
			continue // a resource override
		}
		p := t.Parameter(name)
		if p == nil {
			return nil, deny(DenyNoParameter, key, t.Name, brief(name), t.ParameterNames())
		}
		clean, err := p.Check(value)
		if err != nil {
			return nil, deny("annotation %s: value %s is not valid for parameter %q of template %q (%s): %v; want %s", key, brief(value), name, t.Name, p.Description, err, p.Expects())
		}
		values[name] = clean
	}
	for _, p := range t.Parameters {
		if _, set := values[p.Name]; p.Required && !set {
			return nil, deny(DenyNeedsParameter, t.Name, p.Name, p.Description, ParameterAnnotation(t.Name, p.Name))
		}
	}
	return values, nil
}

// containers returns the containers r adds: to spec.initContainers, and
// to spec.containers.
func (r rendering) containers() (init, regular []corev1.Container) {
	for _, c := range r.content.InitContainers {
		init = append(init, withOverrides(runAs(c, r.user), r.overrides))
	}
	for _, c := range r.content.Containers {
		c = withOverrides(runAs(c, r.user), r.overrides)
		if r.native {
			c.RestartPolicy = new(corev1.ContainerRestartPolicyAlways)
			init = append(init, c)
		} else {
			regular = append(regular, c)
		}
	}
	return init, regular
}

// legacyHash is the status hash releases before the held hash wrote: of
// the rendered content, the user it runs as and whether it runs native.
// It cannot be recomputed from a Pod, only from a rendering; it is kept
// to classify the Pods those releases injected as they classified them.
func (r rendering) legacyHash() string {
	// The bytes hashed are "<content hash>|<uid>[:<gid>]|<native>", then
	// "|<key>=<quantity>" for each resource override.
	in := r.content.Hash + "|"
	if u := r.user; u != nil {
		in += strconv.FormatInt(*u.uid, 10)
		if u.gid != nil {
			in += ":" + strconv.FormatInt(*u.gid, 10)
		} else if u.notRootGroup {
			in += ":nogroup"
		}
	}
	in += "|" + strconv.FormatBool(r.native) + overridesKey(r.overrides)
	sum := sha256.Sum256([]byte(in))
	return hex.EncodeToString(sum[:legacyHashLen/2])
}

// legacyHashLen is the length of a legacyHash: 16 hex digits.
const legacyHashLen = 16
