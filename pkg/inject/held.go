package inject

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
)

// held is what a Pod holds of one template, in a form that leaves out
// what the API server adds on its own (see canonical): the containers of
// the template's names, the volumes they mount, and in each target app
// container the mounts of those volumes and the env of the template's
// env names. The status hash is the hash of it, so it is recomputable
// from any Pod: content that still matches its status but not today's
// catalog is stale, content that no longer matches its status is
// tampered.
type held struct {
	InitContainers []corev1.Container     `json:"initContainers"`
	Containers     []corev1.Container     `json:"containers"`
	Volumes        []corev1.Volume        `json:"volumes"`
	AppMounts      [][]corev1.VolumeMount `json:"appMounts"`
	AppEnv         [][]corev1.EnvVar      `json:"appEnv"`
}

// heldHashLen is the length of a status hash of this release: 32 hex
// digits. Releases before it wrote 16 (see legacyHash).
const heldHashLen = 32

// heldHash is the status hash of what pod holds of t once plan (nil for
// none) is added to it, the target app containers being targets.
func heldHash(pod *corev1.Pod, plan *Plan, t *catalog.Template, targets []int) string {
	return HashHeld(heldJSON(pod, plan, t, targets))
}

// HashHeld is the status hash of a held JSON: a webhook's entry for the
// Pod holds HashHeld of what a compiled policy's entry holds.
func HashHeld(held string) string {
	sum := sha256.Sum256([]byte(held))
	return hex.EncodeToString(sum[:heldHashLen/2])
}

// heldJSON is the JSON of what pod holds of t once plan (nil for none)
// is added to it, the target app containers being targets.
func heldJSON(pod *corev1.Pod, plan *Plan, t *catalog.Template, targets []int) string {
	if plan == nil {
		plan = &Plan{}
	}
	h := held{}
	mounted := map[string]bool{}
	for _, name := range t.ContainerNames() {
		list := &h.InitContainers
		c := findIn(name, pod.Spec.InitContainers, plan.InitContainers)
		if c == nil {
			list, c = &h.Containers, findIn(name, pod.Spec.Containers, plan.Containers)
		}
		if c == nil {
			continue
		}
		cc := CanonicalContainer(*c)
		*list = append(*list, cc)
		for _, m := range cc.VolumeMounts {
			mounted[m.Name] = true
		}
	}
	for _, v := range slices.Concat(pod.Spec.Volumes, plan.Volumes) {
		if mounted[v.Name] {
			h.Volumes = append(h.Volumes, CanonicalVolume(v))
		}
	}
	for _, i := range targets {
		app := &pod.Spec.Containers[i]
		mounts, env := [][]corev1.VolumeMount{app.VolumeMounts}, [][]corev1.EnvVar{app.Env}
		if at := slices.IndexFunc(plan.Apps, func(a AppAdditions) bool { return a.Index == i }); at >= 0 {
			mounts, env = append(mounts, plan.Apps[at].VolumeMounts), append(env, plan.Apps[at].Env)
		}
		var heldMounts []corev1.VolumeMount
		for _, m := range slices.Concat(mounts...) {
			if mounted[m.Name] {
				heldMounts = append(heldMounts, m)
			}
		}
		var heldEnv []corev1.EnvVar
		for _, list := range env {
			for _, e := range list {
				if slices.ContainsFunc(t.AppEnv, func(te corev1.EnvVar) bool { return te.Name == e.Name }) {
					heldEnv = append(heldEnv, CanonicalEnv(e))
				}
			}
		}
		h.AppMounts, h.AppEnv = append(h.AppMounts, heldMounts), append(h.AppEnv, heldEnv)
	}
	data, _ := json.Marshal(h) // API types always marshal
	return string(data)
}

// findIn returns the container of that name in the first list that has
// one, or nil.
func findIn(name string, lists ...[]corev1.Container) *corev1.Container {
	for _, list := range lists {
		if c := findContainer(list, name); c != nil {
			return c
		}
	}
	return nil
}

// serviceAccountMount is where the API server's ServiceAccount admission
// mounts the token volume (kube-api-access-*) into every container.
const serviceAccountMount = "/var/run/secrets/kubernetes.io/serviceaccount"

// CanonicalContainer is c without what the API server sets on its own:
// its defaults (terminationMessagePath and Policy, imagePullPolicy, a
// port's protocol, probe timings and scheme, a fieldRef's apiVersion,
// requests equal to limits where only limits were set) and the service
// account token mount. These are the only additions a Pod's copy of a
// template may carry; anything else, a command, an env entry, a
// capability, stdin, a mount, is content the template does not render.
func CanonicalContainer(c corev1.Container) corev1.Container {
	c = *c.DeepCopy()
	if c.TerminationMessagePath == corev1.TerminationMessagePathDefault {
		c.TerminationMessagePath = ""
	}
	if c.TerminationMessagePolicy == corev1.TerminationMessageReadFile {
		c.TerminationMessagePolicy = ""
	}
	if c.ImagePullPolicy == DefaultPullPolicy(c.Image) {
		c.ImagePullPolicy = ""
	}
	for i := range c.Ports {
		if c.Ports[i].Protocol == corev1.ProtocolTCP {
			c.Ports[i].Protocol = ""
		}
	}
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		canonicalProbe(p)
	}
	if l := c.Lifecycle; l != nil {
		for _, h := range []*corev1.LifecycleHandler{l.PostStart, l.PreStop} {
			if h != nil {
				canonicalHTTPGet(h.HTTPGet)
			}
		}
	}
	for i := range c.Env {
		c.Env[i] = CanonicalEnv(c.Env[i])
	}
	for name, limit := range c.Resources.Limits {
		if request, ok := c.Resources.Requests[name]; ok && request.Cmp(limit) == 0 {
			delete(c.Resources.Requests, name)
		}
	}
	if len(c.Resources.Requests) == 0 {
		c.Resources.Requests = nil
	}
	c.VolumeMounts = slices.DeleteFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
		return m.MountPath == serviceAccountMount && strings.HasPrefix(m.Name, "kube-api-access-")
	})
	if len(c.VolumeMounts) == 0 {
		c.VolumeMounts = nil
	}
	return c
}

// DefaultPullPolicy is the pull policy the API server gives an image.
func DefaultPullPolicy(image string) corev1.PullPolicy {
	name := image
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	if strings.Contains(image, "@") {
		return corev1.PullIfNotPresent
	}
	if _, tag, ok := strings.Cut(name, ":"); !ok || tag == "latest" {
		return corev1.PullAlways
	}
	return corev1.PullIfNotPresent
}

func canonicalProbe(p *corev1.Probe) {
	if p == nil {
		return
	}
	for _, d := range []struct {
		field *int32
		value int32
	}{{&p.TimeoutSeconds, 1}, {&p.PeriodSeconds, 10}, {&p.SuccessThreshold, 1}, {&p.FailureThreshold, 3}} {
		if *d.field == d.value {
			*d.field = 0
		}
	}
	canonicalHTTPGet(p.HTTPGet)
}

func canonicalHTTPGet(g *corev1.HTTPGetAction) {
	if g != nil && g.Scheme == corev1.URISchemeHTTP {
		g.Scheme = ""
	}
}

// CanonicalEnv is e without the API server's default fieldRef apiVersion.
func CanonicalEnv(e corev1.EnvVar) corev1.EnvVar {
	if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.APIVersion == "v1" {
		e.ValueFrom = e.ValueFrom.DeepCopy()
		e.ValueFrom.FieldRef.APIVersion = ""
	}
	return e
}

// CanonicalVolume is v without the API server's defaults: file modes of
// 0644 and an unset hostPath type.
func CanonicalVolume(v corev1.Volume) corev1.Volume {
	v = *v.DeepCopy()
	mode := func(m **int32) {
		if *m != nil && **m == corev1.SecretVolumeSourceDefaultMode {
			*m = nil
		}
	}
	switch s := v.VolumeSource; {
	case s.Secret != nil:
		mode(&s.Secret.DefaultMode)
	case s.ConfigMap != nil:
		mode(&s.ConfigMap.DefaultMode)
	case s.DownwardAPI != nil:
		mode(&s.DownwardAPI.DefaultMode)
	case s.Projected != nil:
		mode(&s.Projected.DefaultMode)
	case s.HostPath != nil && s.HostPath.Type != nil && *s.HostPath.Type == corev1.HostPathUnset:
		s.HostPath.Type = nil
	}
	return v
}

// maxHeldValues caps the JSON objects and arrays of a held JSON the
// engine decodes: a template's holds tens, hundreds with many app
// containers. The Pod's author writes the annotation, and `[{},{},...]`
// would decode each `{}` into a whole container.
const maxHeldValues = 4096

// decodeHeld reads a status entry's held JSON.
func decodeHeld(s string) (*held, error) {
	if n := strings.Count(s, "{") + strings.Count(s, "["); n > maxHeldValues {
		return nil, fmt.Errorf("it holds %d JSON objects and arrays, more than the %d a template's content holds", n, maxHeldValues)
	}
	h := &held{}
	if err := json.Unmarshal([]byte(s), h); err != nil {
		return nil, err
	}
	return h, nil
}

// covered says what of h the Pod no longer holds: a container, a volume,
// an app container's mount or env entry absent or changed (see covers);
// "" when it holds all of it. The app containers' lists follow the
// target app containers in order; one another webhook appended after the
// injection has none.
func (b *builder) covered(h *held) string {
	for _, list := range []struct {
		field string
		want  []corev1.Container
		have  []corev1.Container
	}{{"initContainers", h.InitContainers, b.pod.Spec.InitContainers}, {"containers", h.Containers, b.pod.Spec.Containers}} {
		for _, want := range list.want {
			have := findContainer(list.have, want.Name)
			if have == nil {
				return fmt.Sprintf("no %s entry %q", list.field, want.Name)
			}
			if have.ImagePullPolicy == corev1.PullAlways {
				// AlwaysPullImages sets it after every webhook, whatever a
				// template set: when the kubelet fetches the image the
				// entry pins, never what runs.
				want.ImagePullPolicy = ""
			}
			if diff := covers(want, *have); diff != "" {
				return fmt.Sprintf("%s %q differs at %s from what was injected", list.field, want.Name, diff)
			}
		}
	}
	for _, want := range h.Volumes {
		have := findVolume(b.pod.Spec.Volumes, want.Name)
		if have == nil {
			return fmt.Sprintf("no volume %q", want.Name)
		}
		if diff := covers(want, *have); diff != "" {
			return fmt.Sprintf("volume %q differs at %s from what was injected", want.Name, diff)
		}
	}
	if len(h.AppMounts) > len(b.targets) || len(h.AppEnv) > len(b.targets) {
		return fmt.Sprintf("it was injected into %d app containers, and the Pod has %d", max(len(h.AppMounts), len(h.AppEnv)), len(b.targets))
	}
	for i, mounts := range h.AppMounts {
		app := &b.pod.Spec.Containers[b.targets[i]]
		for _, m := range mounts {
			if have := mountAt(app.VolumeMounts, m.MountPath); have == nil || covers(m, *have) != "" {
				return fmt.Sprintf("container %q does not mount %q at %s as injected", app.Name, m.Name, m.MountPath)
			}
		}
	}
	for i, env := range h.AppEnv {
		app := &b.pod.Spec.Containers[b.targets[i]]
		for _, e := range env {
			if !slices.ContainsFunc(app.Env, func(have corev1.EnvVar) bool { return have.Name == e.Name && covers(e, have) == "" }) {
				return fmt.Sprintf("container %q does not set %s as injected", app.Name, e.Name)
			}
		}
	}
	return ""
}

// restored is b for the Pod with its copies of h's containers and
// volumes put back as h holds them: without what the admission chain
// added to them since.
func (b *builder) restored(h *held) *builder {
	pod := b.pod.DeepCopy()
	for _, c := range h.InitContainers {
		*findContainer(pod.Spec.InitContainers, c.Name) = c
	}
	for _, c := range h.Containers {
		*findContainer(pod.Spec.Containers, c.Name) = c
	}
	for _, v := range h.Volumes {
		*findVolume(pod.Spec.Volumes, v.Name) = v
	}
	r := *b
	r.pod = pod
	return &r
}

// WithContent is the status entry in of a Pod whose containers of the
// entry moved in place to the images and resources of rendered (by
// container name): its held content with them, signed anew. An entry
// without held content is returned as it is.
func WithContent(in Injected, rendered map[string]corev1.Container, keys *Keys) (Injected, error) {
	if in.Held == "" {
		return in, nil
	}
	h, err := decodeHeld(in.Held)
	if err != nil {
		return in, fmt.Errorf("status entry %q: %w", in.Name, err)
	}
	for _, list := range [][]corev1.Container{h.InitContainers, h.Containers} {
		for i := range list {
			if c, ok := rendered[list[i].Name]; ok {
				list[i].Image, list[i].Resources = c.Image, c.Resources
			}
		}
	}
	data, _ := json.Marshal(h) // API types always marshal
	out := Injected{Name: in.Name, Held: string(data)}
	if in.MAC != "" {
		out = keys.sign(out)
	}
	return out, nil
}
