package inject

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
)

// Pod works out what to inject into pod. It returns a Result (with a nil
// Plan when nothing is to be added), or a *Denial for the user's mistakes.
// pod is not modified.
func Pod(pod *corev1.Pod, nsLabels map[string]string, cat *catalog.Catalog) (*Result, error) {
	return PodNamedVolumes(pod, nil, nsLabels, cat)
}

// VolumeFunc returns the Pod's volume at index i in full.
type VolumeFunc func(i int) (*corev1.Volume, error)

// PodNamedVolumes is Pod for a Pod whose spec.volumes may carry only
// their names, as the webhook reads them: volume returns one in full, and
// is called only for a volume that a template adds under the same name,
// to compare the two. Its errors are returned as they are. A nil volume
// means the Pod's volumes are complete.
func PodNamedVolumes(pod *corev1.Pod, volume VolumeFunc, nsLabels map[string]string, cat *catalog.Catalog) (*Result, error) {
	policies := cat.Policies(nsLabels)
	names, err := requested(pod, policies)
	if err != nil {
		return nil, err
	}
	status, warnings := readStatus(pod)
	res := &Result{Warnings: warnings}
	res.Warnings = append(res.Warnings, strayParameters(pod, names)...)
	if len(names) == 0 {
		return res, nil
	}
	if err := checkAllowed(names, cat, policies); err != nil {
		return nil, err
	}

	b := newBuilder(pod, cat, status)
	b.volume = volume
	var buf [4]*catalog.Template
	todo := buf[:0]
	for _, name := range names {
		t := cat.Template(name)
		if status.has(name) && b.present(t) {
			continue // injected before: reinvocation adds nothing
		}
		todo = append(todo, t)
	}
	if len(todo) == 0 {
		return res, nil
	}
	b.targets, err = targets(pod, b.injectedNames)
	if err != nil {
		return nil, err
	}
	for _, t := range todo {
		if err := b.add(t); err != nil {
			return nil, err
		}
		res.Injected = append(res.Injected, t.Name)
	}
	res.Warnings = append(res.Warnings, b.warnings...)
	res.Plan = b.plan
	return res, nil
}

// builder accumulates a Plan while checking each addition against the Pod
// and against what earlier templates added.
type builder struct {
	pod      *corev1.Pod
	volume   VolumeFunc // nil when the Pod's volumes are complete
	cat      *catalog.Catalog
	plan     *Plan
	warnings []string

	targets       []int
	names         claims[string]  // container names, for conflicts
	injectedNames map[string]bool // containers of templates in the status; nil if none
	ports         claims[portKey] // ports and protocols
	complete      bool            // the Pod runs to completion

	// Room for a typical Pod's plan and claims, so that the builder is
	// one allocation instead of one per list.
	planBuf  Plan
	appBuf   [2]AppAdditions
	nameBuf  [8]claim[string]
	portBuf  [4]claim[portKey]
	warnBuf  [2]string
	injected [2]Injected
}

// owner is who holds a container name or a port; its text is built only
// when a denial names it.
type owner struct {
	kind      string // "container", "init container", "ephemeral container"
	container string
	template  string // "" for the Pod's own containers
}

// port describes the owner in a port denial, which names a Pod's own
// container without "of the pod".
func (o owner) port() string {
	if o.template == "" {
		return "container " + strconv.Quote(o.container)
	}
	return o.String()
}

func (o owner) String() string {
	if o.template == "" {
		return o.kind + " " + strconv.Quote(o.container) + " of the pod"
	}
	return o.kind + " " + strconv.Quote(o.container) + " of template " + strconv.Quote(o.template)
}

// claims records who holds what: a list rather than a map, since a Pod
// has few containers and ports, and building a map was most of the
// builder's cost. A later claim of the same key hides an earlier one.
type claims[K comparable] []claim[K]

type claim[K comparable] struct {
	key   K
	owner owner
}

func (c *claims[K]) add(key K, o owner) { *c = append(*c, claim[K]{key, o}) }

func (c claims[K]) find(key K) (owner, bool) {
	for i := len(c) - 1; i >= 0; i-- {
		if c[i].key == key {
			return c[i].owner, true
		}
	}
	return owner{}, false
}

type portKey struct {
	port     int32
	protocol corev1.Protocol
}

func newBuilder(pod *corev1.Pod, cat *catalog.Catalog, status Status) *builder {
	b := &builder{
		pod:      pod,
		cat:      cat,
		complete: pod.Spec.RestartPolicy == corev1.RestartPolicyNever || pod.Spec.RestartPolicy == corev1.RestartPolicyOnFailure,
	}
	b.plan = &b.planBuf
	b.plan.Apps = b.appBuf[:0]
	b.plan.Status.Templates = append(b.injected[:0], status.Templates...)
	b.names, b.ports, b.warnings = b.nameBuf[:0], b.portBuf[:0], b.warnBuf[:0]
	if len(status.Templates) > 0 {
		b.injectedNames = map[string]bool{}
	}
	for _, in := range status.Templates {
		if t := cat.Template(in.Name); t != nil {
			for _, group := range [][]corev1.Container{t.InitContainers, t.Containers} {
				for _, c := range group {
					b.injectedNames[c.Name] = true
				}
			}
		}
	}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		b.names.add(c.Name, owner{kind: "init container", container: c.Name})
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			b.addPorts(c, "")
		}
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		b.names.add(c.Name, owner{kind: "container", container: c.Name})
		b.addPorts(c, "")
	}
	for _, c := range pod.Spec.EphemeralContainers {
		b.names.add(c.Name, owner{kind: "ephemeral container", container: c.Name})
	}
	return b
}

// present reports whether every container of t is in the Pod.
func (b *builder) present(t *catalog.Template) bool {
	for _, group := range [][]corev1.Container{t.InitContainers, t.Containers} {
		for _, c := range group {
			if _, ok := b.names.find(c.Name); !ok {
				return false
			}
		}
	}
	return true
}

func (b *builder) addPorts(c *corev1.Container, template string) error {
	for _, p := range c.Ports {
		if err := b.claimPort(p.ContainerPort, p.Protocol, c.Name, template); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) claimPort(port int32, protocol corev1.Protocol, container, template string) error {
	if protocol == "" {
		protocol = corev1.ProtocolTCP
	}
	key := portKey{port, protocol}
	if prior, taken := b.ports.find(key); taken && template != "" {
		return deny("template %q: port %d/%s of container %q is already used by %s; all containers of a Pod share one network namespace, so change the port (a template parameter) or the app's port", template, port, protocol, container, prior.port())
	}
	b.ports.add(key, owner{kind: "container", container: container, template: template})
	return nil
}

// add plans one template.
func (b *builder) add(t *catalog.Template) error {
	var buf [8]string
	values, err := parameters(b.pod, t, buf[:0])
	if err != nil {
		return err
	}
	content := t.Render(values)
	native := t.NativeSidecar || b.complete
	if b.complete && !t.NativeSidecar && len(content.Containers) > 0 {
		b.warnings = append(b.warnings, fmt.Sprintf("template %q runs as a native sidecar (init container with restartPolicy Always) because the Pod's restartPolicy is %s, so the Pod can still complete; this needs Kubernetes 1.29 or later", t.Name, b.pod.Spec.RestartPolicy))
	}
	var appUser *user // nil: the template's own user
	if u, ok := b.appUser(t); ok {
		appUser = &u
	}
	if err := b.addContainers(t, content, appUser, native); err != nil {
		return err
	}
	if err := b.addVolumes(t, content); err != nil {
		return err
	}
	if err := b.addToApps(t, content); err != nil {
		return err
	}
	for _, s := range content.ImagePullSecrets {
		if !hasSecret(b.pod.Spec.ImagePullSecrets, s) && !hasSecret(b.plan.ImagePullSecrets, s) {
			b.plan.ImagePullSecrets = append(b.plan.ImagePullSecrets, s)
		}
	}
	b.record(t.Name, content.Hash, appUser, native)
	return nil
}

// addContainers plans the template's containers: names and ports checked
// against the Pod, run as the app's user when asked, native when asked or
// when the Pod runs to completion.
func (b *builder) addContainers(t *catalog.Template, content *catalog.Content, appUser *user, native bool) error {
	groups := [2][]corev1.Container{content.InitContainers, content.Containers}
	for _, group := range groups {
		for _, c := range group {
			if prior, taken := b.names.find(c.Name); taken {
				return deny("template %q: container name %q is already used by %s; rename that container", t.Name, c.Name, prior)
			}
			b.names.add(c.Name, owner{kind: "container", container: c.Name, template: t.Name})
		}
	}
	var last string // the template's last container, which listens on its local ports
	for _, group := range groups {
		for i := range group {
			if err := b.addPorts(&group[i], t.Name); err != nil {
				return err
			}
			last = group[i].Name
		}
	}
	for _, lp := range content.LocalPorts {
		port, err := strconv.ParseInt(lp, 10, 32)
		if err != nil || port < 1 || port > 65535 {
			return deny("template %q: local port %q is not a port number; check the template's parameters", t.Name, lp)
		}
		if err := b.claimPort(int32(port), corev1.ProtocolTCP, last, t.Name); err != nil {
			return err
		}
	}
	for i := range content.InitContainers {
		b.plan.InitContainers, b.plan.InitContainerJSON = planContainer(b.plan.InitContainers, b.plan.InitContainerJSON, content.InitContainers, content.InitContainerJSON, i, appUser)
	}
	for i := range content.Containers {
		if native {
			b.plan.InitContainers, b.plan.InitContainerJSON = planContainer(b.plan.InitContainers, b.plan.InitContainerJSON, content.NativeContainers, content.NativeContainerJSON, i, appUser)
		} else {
			b.plan.Containers, b.plan.ContainerJSON = planContainer(b.plan.Containers, b.plan.ContainerJSON, content.Containers, content.ContainerJSON, i, appUser)
		}
	}
	return nil
}

// planContainer appends container i of list to dst, and its prepared JSON
// to dstJSON: the catalog's own, shared, or a copy run as u with no
// prepared JSON (the patch encodes it).
func planContainer(dst []corev1.Container, dstJSON [][]byte, list []corev1.Container, listJSON [][]byte, i int, u *user) ([]corev1.Container, [][]byte) {
	if u == nil {
		return appendShared(dst, list, i), appendShared(dstJSON, listJSON, i)
	}
	return append(dst, runAs(list[i], u)), append(dstJSON, nil)
}

func hasSecret(list []corev1.LocalObjectReference, s corev1.LocalObjectReference) bool {
	for _, l := range list {
		if l.Name == s.Name {
			return true
		}
	}
	return false
}

func (b *builder) addVolumes(t *catalog.Template, volumes *catalog.Content) error {
	for i, v := range volumes.Volumes {
		existing, err := b.podVolume(v.Name)
		if err != nil {
			return err
		}
		where := "the pod"
		if existing == nil {
			existing, where = findVolume(b.plan.Volumes, v.Name), "an earlier template"
		}
		if existing == nil {
			b.plan.Volumes = appendShared(b.plan.Volumes, volumes.Volumes, i)
			b.plan.VolumeJSON = appendShared(b.plan.VolumeJSON, volumes.VolumeJSON, i)
			continue
		}
		if !equality.Semantic.DeepEqual(*existing, v) {
			return deny("template %q: volume %q already exists in %s with a different definition; rename the Pod's volume or define it as the template does", t.Name, v.Name, where)
		}
	}
	return nil
}

// podVolume returns the Pod's volume called name in full, or nil.
func (b *builder) podVolume(name string) (*corev1.Volume, error) {
	for i := range b.pod.Spec.Volumes {
		if b.pod.Spec.Volumes[i].Name != name {
			continue
		}
		if b.volume == nil {
			return &b.pod.Spec.Volumes[i], nil
		}
		return b.volume(i)
	}
	return nil, nil
}

func findVolume(list []corev1.Volume, name string) *corev1.Volume {
	for i := range list {
		if list[i].Name == name {
			return &list[i]
		}
	}
	return nil
}

// record adds the template to the status, with a hash of what it added:
// the rendered content, the user it runs as and whether it runs native.
func (b *builder) record(name, contentHash string, u *user, native bool) {
	// The bytes hashed are "<content hash>|<uid>[:<gid>]|<native>".
	var buf [128]byte
	in := append(append(buf[:0], contentHash...), '|')
	if u != nil {
		in = strconv.AppendInt(in, *u.uid, 10)
		if u.gid != nil {
			in = strconv.AppendInt(append(in, ':'), *u.gid, 10)
		}
	}
	in = strconv.AppendBool(append(in, '|'), native)
	sum := sha256.Sum256(in)
	entry := Injected{Name: name, Hash: hex.EncodeToString(sum[:8])}
	for i := range b.plan.Status.Templates {
		if b.plan.Status.Templates[i].Name == name {
			b.plan.Status.Templates[i] = entry
			return
		}
	}
	b.plan.Status.Templates = append(b.plan.Status.Templates, entry)
}
