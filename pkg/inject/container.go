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
		add := b.apps[i]
		if add == nil {
			add = &AppAdditions{Index: i}
			b.apps[i] = add
		}
		for _, m := range content.AppVolumeMounts {
			prior := findMount(app.VolumeMounts, m.MountPath)
			if prior == nil {
				prior = findMount(add.VolumeMounts, m.MountPath)
			}
			switch {
			case prior == nil:
				add.VolumeMounts = append(add.VolumeMounts, m)
			case prior.Name != m.Name:
				return deny("template %q: container %q already mounts volume %q at %s, where the template mounts %q; set the template's directory parameter to another path", t.Name, app.Name, prior.Name, m.MountPath, m.Name)
			}
		}
		for _, e := range content.AppEnv {
			switch {
			case slices.ContainsFunc(app.Env, func(x corev1.EnvVar) bool { return x.Name == e.Name }):
				b.warnings = append(b.warnings, fmt.Sprintf("template %q: container %q already sets %s; its own value is kept", t.Name, app.Name, e.Name))
			case slices.ContainsFunc(add.Env, func(x corev1.EnvVar) bool { return x.Name == e.Name }):
				b.warnings = append(b.warnings, fmt.Sprintf("template %q: %s in container %q is already set by an earlier template; the first value is kept", t.Name, e.Name, app.Name))
			default:
				add.Env = append(add.Env, e)
			}
		}
	}
	// Keep Apps in spec.containers order, whatever order targets came in.
	b.plan.Apps = b.plan.Apps[:0]
	for i := range b.pod.Spec.Containers {
		if add := b.apps[i]; add != nil {
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

// withSecurity fills in a restricted security context where the template
// leaves it open, and applies the app's user.
func withSecurity(c *corev1.Container, u *user) {
	if c.SecurityContext == nil {
		c.SecurityContext = &corev1.SecurityContext{}
	}
	sc := c.SecurityContext
	if sc.AllowPrivilegeEscalation == nil {
		sc.AllowPrivilegeEscalation = new(false)
	}
	if sc.Capabilities == nil {
		sc.Capabilities = &corev1.Capabilities{}
	}
	if !slices.Contains(sc.Capabilities.Drop, "ALL") {
		sc.Capabilities.Drop = append(sc.Capabilities.Drop, "ALL")
	}
	if sc.RunAsNonRoot == nil {
		sc.RunAsNonRoot = new(true)
	}
	if sc.SeccompProfile == nil {
		sc.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}
	}
	if u != nil {
		sc.RunAsUser = u.uid
		if u.gid != nil {
			sc.RunAsGroup = u.gid
		}
	}
}

// withResources fills each request and limit the template leaves open from
// the catalog defaults, keeping every request within its limit.
func withResources(c *corev1.Container, defaults corev1.ResourceRequirements) {
	r := &c.Resources
	if r.Requests == nil {
		r.Requests = corev1.ResourceList{}
	}
	if r.Limits == nil {
		r.Limits = corev1.ResourceList{}
	}
	for name, q := range defaults.Limits {
		if _, ok := r.Limits[name]; ok {
			continue
		}
		if req, ok := r.Requests[name]; ok && req.Cmp(q) > 0 {
			q = req
		}
		r.Limits[name] = q
	}
	for name, q := range defaults.Requests {
		if _, ok := r.Requests[name]; ok {
			continue
		}
		if limit, ok := r.Limits[name]; ok && q.Cmp(limit) > 0 {
			q = limit
		}
		r.Requests[name] = q
	}
}
