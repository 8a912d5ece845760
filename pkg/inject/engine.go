package inject

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
)

// Pod works out what to inject into pod. It returns a Result (with a nil
// Plan when the Pod is admitted unchanged), or a *Denial for the user's
// mistakes. pod is not modified.
//
// The status annotation is a claim, never trusted: a template counts as
// injected before only when the Pod holds what the template renders for
// it today (see Verify). The status written back names only templates
// injected now or verified.
func Pod(pod *corev1.Pod, nsLabels map[string]string, cat *catalog.Catalog) (*Result, error) {
	policy := cat.Apply(nsLabels)
	names, warnings, err := requested(pod, policy, cat)
	if err != nil {
		return nil, err
	}
	res := &Result{Warnings: warnings}
	res.Warnings = append(res.Warnings, strayParameters(pod, names)...)
	if len(names) == 0 {
		return res, nil
	}
	claimed, w := readStatus(pod)
	res.Warnings = append(res.Warnings, w...)

	b, err := newBuilder(pod, cat, claimed)
	if err != nil {
		return nil, err
	}
	var unknown []string
	for _, in := range claimed.Templates { // one entry per name (readStatus)
		t := cat.Template(in.Name)
		if t == nil {
			unknown = append(unknown, in.Name)
			continue
		}
		hash, reason := b.verify(t)
		if reason != "" {
			res.Warnings = append(res.Warnings, fmt.Sprintf("annotation %s names template %q, but the Pod does not carry it (%s); the entry is dropped", StatusAnnotation, in.Name, reason))
			continue
		}
		if in.Hash != hash && !b.legacyCurrent(t, in.Hash) {
			in.Hash = "" // hashed once the plan is whole
		}
		b.plan.Status.Templates = append(b.plan.Status.Templates, Injected{Name: t.Name, Hash: in.Hash})
		res.Verified = append(res.Verified, t.Name)
	}
	if len(unknown) > 0 {
		// One warning however many: the Pod's author controls the list.
		res.Warnings = append(res.Warnings, fmt.Sprintf("annotation %s names templates that are not in the catalog: %s; those entries are dropped", StatusAnnotation, firstNames(unknown, 3)))
	}
	for _, name := range names {
		if slices.Contains(res.Verified, name) {
			continue // injected before: reinvocation adds nothing
		}
		if err := b.add(cat.Template(name)); err != nil {
			return nil, err
		}
		res.Injected = append(res.Injected, name)
	}
	res.Warnings = append(res.Warnings, b.warnings...)
	if _, set := pod.Annotations[DefaultContainerAnnotation]; !set && len(b.plan.Containers) > 0 && len(b.targets) > 0 {
		b.plan.DefaultContainer = pod.Spec.Containers[b.targets[0]].Name
	}
	// Each entry's hash is of what the Pod holds of its template once the
	// plan is applied, so it can be recomputed from the stored Pod.
	after := b.plan.spec(pod)
	for i, in := range b.plan.Status.Templates {
		if in.Hash == "" {
			b.plan.Status.Templates[i].Hash = heldHash(after, cat.Template(in.Name), b.targets)
		}
	}
	if len(res.Injected) > 0 || b.plan.Status.String() != pod.Annotations[StatusAnnotation] {
		res.Plan = b.plan
	}
	return res, nil
}

// firstNames quotes up to n names, and says how many more there are.
func firstNames(names []string, n int) string {
	var quoted []string
	for _, name := range names[:min(n, len(names))] {
		quoted = append(quoted, strconv.Quote(name))
	}
	if len(names) > n {
		quoted = append(quoted, fmt.Sprintf("and %d more", len(names)-n))
	}
	return strings.Join(quoted, ", ")
}

// Wanted returns the templates the Pod should carry: what it asks for,
// or the namespace defaults, plus what the policies require, as the
// webhook decides them. A Denial when the request itself is unusable.
func Wanted(pod *corev1.Pod, nsLabels map[string]string, cat *catalog.Catalog) ([]string, error) {
	names, _, err := requested(pod, cat.Apply(nsLabels), cat)
	return names, err
}

// builder accumulates a Plan while checking each addition against the Pod
// and against what earlier templates added.
type builder struct {
	pod      *corev1.Pod
	cat      *catalog.Catalog
	plan     *Plan
	warnings []string

	targets  []int
	names    claims[string]  // container names, for conflicts
	ports    claims[portKey] // ports and protocols
	complete bool            // the Pod runs to completion
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

// claims records who holds what: a Pod has few containers and ports, so
// a list serves. A later claim of the same key hides an earlier one.
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

// newBuilder records the Pod's containers and ports. The app containers
// that get mounts and env are every container but those of the templates
// the status claims: a claim that does not verify either names containers
// the Pod lacks, or is denied as a conflict when its template is added.
func newBuilder(pod *corev1.Pod, cat *catalog.Catalog, claimed Status) (*builder, error) {
	b := &builder{
		pod:      pod,
		cat:      cat,
		plan:     &Plan{},
		complete: pod.Spec.RestartPolicy == corev1.RestartPolicyNever || pod.Spec.RestartPolicy == corev1.RestartPolicyOnFailure,
	}
	var injected []string
	for _, in := range claimed.Templates {
		if t := cat.Template(in.Name); t != nil {
			injected = append(injected, t.ContainerNames()...)
		}
	}
	var err error
	if b.targets, err = targets(pod, injected); err != nil {
		return nil, err
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
	return b, nil
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

// legacyCurrent reports whether hash is the legacyHash of t's rendering
// today: an entry an earlier release wrote for what the Pod still holds,
// kept as it is so that a reinvocation by a newer replica adds nothing.
func (b *builder) legacyCurrent(t *catalog.Template, hash string) bool {
	if len(hash) != legacyHashLen {
		return false
	}
	r, err := b.render(t)
	return err == nil && r.legacyHash() == hash
}

// add plans one template.
func (b *builder) add(t *catalog.Template) error {
	r, err := b.render(t)
	if err != nil {
		return err
	}
	b.warnings = append(b.warnings, r.remarks...)
	content := r.content
	if b.complete && !t.NativeSidecar && len(content.Containers) > 0 {
		b.warnings = append(b.warnings, fmt.Sprintf("template %q runs as a native sidecar (init container with restartPolicy Always) because the Pod's restartPolicy is %s, so the Pod can still complete; this needs Kubernetes 1.29 or later", t.Name, b.pod.Spec.RestartPolicy))
	}
	if b.pod.Spec.HostNetwork && t.HostNetwork != "allowed" {
		if ports := declaredPorts(content); len(ports) > 0 {
			return deny("template %q: the Pod runs on the host's network, where the template's ports %v would be ports of every node it lands on; run the Pod off the host network, or have the cluster admin set hostNetwork: allowed on the template", t.Name, ports)
		}
	}
	if err := b.addContainers(t, r); err != nil {
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
	b.plan.Status.Templates = append(b.plan.Status.Templates, Injected{Name: t.Name}) // hashed once the plan is whole
	return nil
}

// declaredPorts lists the ports the content's containers declare and its
// local ports.
func declaredPorts(content *catalog.Content) []string {
	var ports []string
	for _, c := range slices.Concat(content.InitContainers, content.Containers) {
		for _, p := range c.Ports {
			ports = append(ports, strconv.Itoa(int(p.ContainerPort)))
		}
	}
	return append(ports, content.LocalPorts...)
}

// addContainers plans the template's containers: names and ports checked
// against the Pod, run as the app's user when asked, native when asked or
// when the Pod runs to completion.
func (b *builder) addContainers(t *catalog.Template, r rendering) error {
	init, regular := r.containers()
	all := slices.Concat(init, regular)
	for _, c := range all {
		if prior, taken := b.names.find(c.Name); taken {
			if prior.template == "" && slices.Contains(t.ContainerNames(), c.Name) {
				_, reason := b.verify(t)
				return deny("template %q: %s has the name of the template's container but not its content (%s); a Pod cannot carry its own copy of a template, so remove that container or rename it", t.Name, prior, reason)
			}
			return deny("template %q: container name %q is already used by %s; rename that container", t.Name, c.Name, prior)
		}
		b.names.add(c.Name, owner{kind: "container", container: c.Name, template: t.Name})
	}
	for i := range all {
		if err := b.addPorts(&all[i], t.Name); err != nil {
			return err
		}
	}
	last := all[len(all)-1].Name // the template's last container listens on its local ports
	for _, lp := range r.content.LocalPorts {
		port, err := strconv.ParseInt(lp, 10, 32)
		if err != nil || port < 1 || port > 65535 {
			return deny("template %q: local port %q is not a port number; check the template's parameters", t.Name, lp)
		}
		if err := b.claimPort(int32(port), corev1.ProtocolTCP, last, t.Name); err != nil {
			return err
		}
	}
	b.plan.InitContainers = append(b.plan.InitContainers, init...)
	b.plan.Containers = append(b.plan.Containers, regular...)
	return nil
}

func hasSecret(list []corev1.LocalObjectReference, s corev1.LocalObjectReference) bool {
	return slices.ContainsFunc(list, func(l corev1.LocalObjectReference) bool { return l.Name == s.Name })
}

func (b *builder) addVolumes(t *catalog.Template, content *catalog.Content) error {
	for _, v := range content.Volumes {
		existing, where := findVolume(b.pod.Spec.Volumes, v.Name), "the pod"
		if existing == nil {
			existing, where = findVolume(b.plan.Volumes, v.Name), "an earlier template"
		}
		if existing == nil {
			b.plan.Volumes = append(b.plan.Volumes, v)
			continue
		}
		if !equality.Semantic.DeepEqual(*existing, v) {
			return deny("template %q: volume %q already exists in %s with a different definition; rename the Pod's volume or define it as the template does", t.Name, v.Name, where)
		}
	}
	return nil
}

func findVolume(list []corev1.Volume, name string) *corev1.Volume {
	for i := range list {
		if list[i].Name == name {
			return &list[i]
		}
	}
	return nil
}
