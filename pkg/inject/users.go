package inject

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
)

// user is a runAsUser/runAsGroup pair taken from the app.
type user struct {
	uid, gid *int64
	// notRootGroup is set when the app runs as group 0: the containers
	// keep the template's group, or NoGroup, never inheriting group 0
	// from the Pod.
	notRootGroup bool
}

// NoGroup is the group given in place of group 0 when the template
// names none.
const NoGroup = 65534

// appUser returns the user the template's containers run as when it asks
// to run as the app's user; ok is false when they keep the template's.
// The app's user is the Pod's runAsUser if set, else the one user every
// target container runs as; with several, the template keeps its own and
// a remark names them. Root and group 0 are never taken from the app.
func (b *builder) appUser(t *catalog.Template) (u user, ok bool, remarks []string) {
	if !t.RunAsAppUser {
		return user{}, false, nil
	}
	remark := func(format string, args ...any) {
		remarks = append(remarks, fmt.Sprintf(format, args...))
	}
	if sc := b.pod.Spec.SecurityContext; sc != nil {
		u = user{uid: sc.RunAsUser, gid: sc.RunAsGroup}
	}
	if u.uid == nil {
		// The one user every target container runs as, or none.
		shared := true
		for _, i := range b.targets {
			uid := containerUser(&b.pod.Spec.Containers[i])
			if uid == nil || (u.uid != nil && *u.uid != *uid) {
				shared = false
			}
			if uid != nil && u.uid == nil {
				u.uid = uid
			}
		}
		if !shared {
			if u.uid != nil {
				var uids []string
				for _, i := range b.targets {
					c := &b.pod.Spec.Containers[i]
					uids = append(uids, c.Name+"="+describeUID(containerUser(c)))
				}
				remark("template %q runs as the app's user, but the target containers run as different users (%s); it runs as the template's user: set runAsUser on the Pod, fsGroup so every user can read the files, or name the writer in %s", t.Name, strings.Join(uids, ", "), TargetContainersAnnotation)
			}
			u.uid = nil
		}
		if u.uid != nil && u.gid == nil {
			u.gid = sharedGroup(b.pod, b.targets)
		}
	}
	fsGroup := b.pod.Spec.SecurityContext != nil && b.pod.Spec.SecurityContext.FSGroup != nil
	switch {
	case u.uid == nil && !fsGroup && !someSetUser(b.pod, b.targets):
		remark("template %q runs as the app's user, but the Pod sets no runAsUser or fsGroup; it runs as the template's user and can read only files the app makes world-readable", t.Name)
		return user{}, false, remarks
	case u.uid == nil:
		return user{}, false, remarks
	case *u.uid == 0:
		remark("template %q does not run as root although the app does; set fsGroup on the Pod so it can read the app's files", t.Name)
		return user{}, false, remarks
	}
	switch {
	case u.gid == nil:
		// No group set: the runtime gives the image's, most often 0,
		// which is never taken from the app.
		u.notRootGroup = true
	case *u.gid == 0:
		remark("template %q runs as the app's user %d but not as group 0, which the app uses; it keeps the template's group (or %d), so set fsGroup on the Pod if it must read files only group 0 can", t.Name, *u.uid, NoGroup)
		u.gid, u.notRootGroup = nil, true
	}
	return u, true, remarks
}

// describeUID is a runAsUser for a message.
func describeUID(uid *int64) string {
	if uid == nil {
		return "unset"
	}
	return fmt.Sprint(*uid)
}

// containerUser is the runAsUser c itself sets, or nil.
func containerUser(c *corev1.Container) *int64 {
	if c.SecurityContext == nil {
		return nil
	}
	return c.SecurityContext.RunAsUser
}

// someSetUser reports whether some target container sets a runAsUser
// (so the shared-user remark, not the no-user one, applies).
func someSetUser(pod *corev1.Pod, targets []int) bool {
	for _, i := range targets {
		if containerUser(&pod.Spec.Containers[i]) != nil {
			return true
		}
	}
	return false
}

// sharedGroup is the runAsGroup every target container sets alike, or nil.
func sharedGroup(pod *corev1.Pod, targets []int) *int64 {
	var gid *int64
	for _, i := range targets {
		sc := pod.Spec.Containers[i].SecurityContext
		if sc == nil || sc.RunAsGroup == nil || (gid != nil && *gid != *sc.RunAsGroup) {
			return nil
		}
		gid = sc.RunAsGroup
	}
	return gid
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
	switch {
	case u.gid != nil:
		sc.RunAsGroup = u.gid
	case u.notRootGroup && (sc.RunAsGroup == nil || *sc.RunAsGroup == 0):
		sc.RunAsGroup = new(int64(NoGroup))
	}
	c.SecurityContext = sc
	return c
}
