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
	if b.apps == nil {
		b.apps = make([]*AppAdditions, len(b.pod.Spec.Containers))
	}
	for _, i := range b.targets {
		app := &b.pod.Spec.Containers[i]
		add := b.apps[i]
		if add == nil {
			add = &AppAdditions{Index: i}
			b.apps[i] = add
		}
		for j, m := range content.AppVolumeMounts {
			prior := findMount(app.VolumeMounts, m.MountPath)
			if prior == nil {
				prior = findMount(add.VolumeMounts, m.MountPath)
			}
			switch {
			case prior == nil:
				add.VolumeMounts = append(add.VolumeMounts, m)
				add.VolumeMountJSON = append(add.VolumeMountJSON, content.AppVolumeMountJSON[j])
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
				add.Env = append(add.Env, e)
				add.EnvJSON = append(add.EnvJSON, content.AppEnvJSON[j])
			}
		}
	}
	// Keep Apps in spec.containers order, whatever order targets came in.
	b.plan.Apps = b.plan.Apps[:0]
	for _, add := range b.apps {
		if add != nil {
			b.plan.Apps = append(b.plan.Apps, *add)
		}
	}
	return nil
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
// to run as the app's user, or nil.
func (b *builder) appUser(t *catalog.Template) *user {
	if !t.RunAsAppUser {
		return nil
	}
	var u user
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
		return nil
	case u.uid == nil:
		return nil
	case *u.uid == 0:
		b.warnings = append(b.warnings, fmt.Sprintf("template %q does not run as root although the app does; set fsGroup on the Pod so it can read the app's files", t.Name))
		return nil
	}
	return &u
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
