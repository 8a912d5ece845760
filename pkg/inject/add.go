package inject

import (
	"fmt"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
)

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
