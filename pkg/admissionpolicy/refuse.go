package admissionpolicy

import (
	"fmt"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
)

// refuse says why t cannot be compiled exactly, or "".
func refuse(t *catalog.Template) string {
	for _, p := range t.Parameters {
		if p.Type == catalog.Duration || p.Type == catalog.Quantity {
			return fmt.Sprintf("parameter %q is a %s, whose check and normal form the compiler does not repeat in CEL", p.Name, p.Type)
		}
	}
	if sentinelRE.MatchString(jsonText(t.Render(nil))) {
		return "its text holds what the compiler uses to mark parameters (sipzq...qz, 1357924nn)"
	}
	content := t.Render(sentinels(t))
	var names []string
	for _, c := range slices.Concat(content.InitContainers, content.Containers) {
		names = append(names, c.Name)
		for _, m := range c.VolumeMounts {
			if !slices.ContainsFunc(content.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name }) {
				return fmt.Sprintf("container %q mounts volume %q, which the template does not define", c.Name, m.Name)
			}
		}
	}
	for _, m := range content.AppVolumeMounts {
		names = append(names, m.Name)
		if !slices.ContainsFunc(content.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name }) {
			return fmt.Sprintf("app volume mount %q names a volume the template does not define", m.Name)
		}
	}
	for _, v := range content.Volumes {
		names = append(names, v.Name)
	}
	for _, e := range content.AppEnv {
		names = append(names, e.Name)
	}
	for _, s := range content.ImagePullSecrets {
		names = append(names, s.Name)
	}
	for _, n := range names {
		if hasSentinel(n) {
			return fmt.Sprintf("the name %q holds a parameter", n)
		}
	}
	for _, lp := range content.LocalPorts {
		if _, err := strconv.Atoi(lp); err == nil {
			continue
		}
		m := sentinelRE.FindStringSubmatch(lp)
		if m == nil || m[0] != lp {
			return fmt.Sprintf("local port %q is neither a number nor one parameter", t.LocalPorts[slices.Index(content.LocalPorts, lp)])
		}
		if j, _ := strconv.Atoi(m[1]); t.Parameters[j].Type != catalog.Port {
			return fmt.Sprintf("local port %q is a parameter not of type port", t.LocalPorts[slices.Index(content.LocalPorts, lp)])
		}
	}
	return ""
}
