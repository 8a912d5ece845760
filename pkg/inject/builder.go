package inject

import (
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
)

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

// targets returns the indexes of the app containers that get mounts and
// env: those named by the target annotation, or every app container.
// Containers named in injected are not app containers.
func targets(pod *corev1.Pod, injected []string) ([]int, error) {
	apps := make([]int, 0, len(pod.Spec.Containers))
	for i, c := range pod.Spec.Containers {
		if !slices.Contains(injected, c.Name) { // a template has a few containers
			apps = append(apps, i)
		}
	}
	value, ok := pod.Annotations[TargetContainersAnnotation]
	if !ok {
		return apps, nil
	}
	names, err := splitList(value, TargetContainersAnnotation)
	if err != nil {
		return nil, err
	}
	index := make(map[string]int, len(apps))
	for _, i := range apps {
		index[pod.Spec.Containers[i].Name] = i
	}
	var out []int
	for _, name := range names {
		i, ok := index[name]
		if !ok {
			appNames := make([]string, len(apps))
			for j, i := range apps {
				appNames[j] = pod.Spec.Containers[i].Name
			}
			return nil, deny("annotation %s: no app container %s; have %s", TargetContainersAnnotation, brief(name), firstNames(appNames, 20))
		}
		out = append(out, i)
	}
	return out, nil
}

// owner is who holds a container name or a port; its text is built only
// when a denial names it.
type owner struct {
	kind      string // "container", "init container", "ephemeral container"
	container string
	template  string // "" for the Pod's own containers
}

// inPortDenial names the owner as a port denial does: a Pod's own
// container without "of the pod".
func (o owner) inPortDenial() string {
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
		return deny("template %q: port %d/%s of container %q is already used by %s; all containers of a Pod share one network namespace, so change the port (a template parameter) or the app's port", template, port, protocol, container, prior.inPortDenial())
	}
	b.ports.add(key, owner{kind: "container", container: container, template: template})
	return nil
}
