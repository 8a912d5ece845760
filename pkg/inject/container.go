package inject

import (
	"fmt"
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
		for j, m := range content.AppVolumeMounts {
			prior := findMount(app.VolumeMounts, m.MountPath)
			if prior == nil {
				prior = findMount(add.VolumeMounts, m.MountPath)
			}
			switch {
			case prior == nil:
				add.VolumeMounts = appendShared(add.VolumeMounts, content.AppVolumeMounts, j)
				add.VolumeMountJSON = appendShared(add.VolumeMountJSON, content.AppVolumeMountJSON, j)
			case prior.Name != m.Name:
				return deny("template %q: container %q already mounts volume %q at %s, where the template mounts %q; set the template's directory parameter to another path", t.Name, app.Name, prior.Name, m.MountPath, m.Name)
			}
		}
		for j, e := range content.AppEnv {
			switch {
			case slices.ContainsFunc(app.Env, func(x corev1.EnvVar) bool { return x.Name == e.Name }):
				b.warnings = append(b.warnings, fmt.Sprintf("template %q: container %q already sets %s; its own value is kept", t.Name, app.Name, e.Name))
			case slices.ContainsFunc(add.Env, func(x corev1.EnvVar) bool { return x.Name == e.Name }):
				b.warnings = append(b.warnings, fmt.Sprintf("template %q: %s in container %q is already set by an earlier template; the first value is kept", t.Name, e.Name, app.Name))
			default:
				add.Env = appendShared(add.Env, content.AppEnv, j)
				add.EnvJSON = appendShared(add.EnvJSON, content.AppEnvJSON, j)
			}
		}
	}
	return nil
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

// appendShared appends list[j] to dst. While dst holds exactly list's
// first j items, it is list itself, capped so that a later append copies:
// a template whose every item is added costs no allocation, and nothing
// is ever written into list, which is the catalog's shared content.
func appendShared[T any](dst, list []T, j int) []T {
	if len(dst) == j && (j == 0 || &dst[0] == &list[0]) {
		return list[: j+1 : j+1]
	}
	return append(dst, list[j])
}

func findMount(list []corev1.VolumeMount, path string) *corev1.VolumeMount {
	for i := range list {
		if list[i].MountPath == path {
			return &list[i]
		}
	}
	return nil
}

// user is a runAsUser/runAsGroup pair taken from the app.
type user struct {
	uid, gid *int64
}

// appUser returns the user the template's containers run as when it asks
// to run as the app's user; ok is false when they keep the template's.
func (b *builder) appUser(t *catalog.Template) (u user, ok bool) {
	if !t.RunAsAppUser {
		return user{}, false
	}
	if sc := b.pod.Spec.SecurityContext; sc != nil {
		u = user{sc.RunAsUser, sc.RunAsGroup}
	}
	if len(b.targets) > 0 {
		if sc := b.pod.Spec.Containers[b.targets[0]].SecurityContext; sc != nil {
			if sc.RunAsUser != nil {
				u.uid = sc.RunAsUser
			}
			if sc.RunAsGroup != nil {
				u.gid = sc.RunAsGroup
			}
		}
	}
	fsGroup := b.pod.Spec.SecurityContext != nil && b.pod.Spec.SecurityContext.FSGroup != nil
	switch {
	case u.uid == nil && !fsGroup:
		b.warnings = append(b.warnings, fmt.Sprintf("template %q runs as the app's user, but the Pod sets no runAsUser or fsGroup; it runs as the template's user and can read only files the app makes world-readable", t.Name))
		return user{}, false
	case u.uid == nil:
		return user{}, false
	case *u.uid == 0:
		b.warnings = append(b.warnings, fmt.Sprintf("template %q does not run as root although the app does; set fsGroup on the Pod so it can read the app's files", t.Name))
		return user{}, false
	}
	return u, true
}

// runAs returns c running as u: a copy of the shared container with its
// own security context.
func runAs(c corev1.Container, u *user) corev1.Container {
	if u == nil {
		return c
	}
	sc := c.SecurityContext.DeepCopy()
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	sc.RunAsUser = u.uid
	if u.gid != nil {
		sc.RunAsGroup = u.gid
	}
	c.SecurityContext = sc
	return c
}
