package inject

import (
	"fmt"
	"path"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
)

// addToApps plans the template's mounts and env for each target container.
func (b *builder) addToApps(t *catalog.Template, content *catalog.Content) error {
	if len(content.AppVolumeMounts)+len(content.AppEnv) == 0 {
		return nil
	}
	if len(b.targets) == 0 {
		b.warnings = append(b.warnings, fmt.Sprintf("template %q: the Pod has no app container to receive its mounts and env", t.Name))
		return nil
	}
	for _, i := range b.targets {
		app := &b.pod.Spec.Containers[i]
		add := b.app(i)
		for _, m := range content.AppVolumeMounts {
			prior := mountAt(app.VolumeMounts, m.MountPath)
			if prior == nil {
				prior = mountAt(add.VolumeMounts, m.MountPath)
			}
			switch {
			case prior == nil:
				add.VolumeMounts = append(add.VolumeMounts, m)
			case prior.Name != m.Name:
				return deny("template %q: container %q already mounts volume %q at %s, where the template mounts %q; set the template's directory parameter to another path", t.Name, app.Name, prior.Name, prior.MountPath, m.Name)
			}
		}
		for _, e := range content.AppEnv {
			switch {
			case hasEnv(app.Env, e.Name):
				b.warnings = append(b.warnings, fmt.Sprintf("template %q: container %q already sets %s; its own value is kept", t.Name, app.Name, e.Name))
			case hasEnv(add.Env, e.Name):
				b.warnings = append(b.warnings, fmt.Sprintf("template %q: %s in container %q is already set by an earlier template; the first value is kept", t.Name, e.Name, app.Name))
			default:
				add.Env = append(add.Env, e)
			}
		}
	}
	return nil
}

func hasEnv(list []corev1.EnvVar, name string) bool {
	return slices.ContainsFunc(list, func(e corev1.EnvVar) bool { return e.Name == name })
}

// app returns the additions to app container i, kept in spec.containers
// order whatever order the targets come in.
func (b *builder) app(i int) *AppAdditions {
	apps := b.plan.Apps
	at, found := slices.BinarySearchFunc(apps, i, func(a AppAdditions, i int) int { return a.Index - i })
	if !found {
		b.plan.Apps = slices.Insert(apps, at, AppAdditions{Index: i})
	}
	return &b.plan.Apps[at]
}

// mountAt returns the mount at p, comparing cleaned paths: "/data/" is
// where "/data" is.
func mountAt(list []corev1.VolumeMount, p string) *corev1.VolumeMount {
	p = path.Clean(p)
	for i := range list {
		if path.Clean(list[i].MountPath) == p {
			return &list[i]
		}
	}
	return nil
}
