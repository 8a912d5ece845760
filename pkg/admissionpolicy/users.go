package admissionpolicy

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
)

// asAppUser is content running as the app's user: each container's
// runAsUser is number 0, its runAsGroup number 1+k (see declareUser).
func (c *compiled) asAppUser(content *catalog.Content) *catalog.Content {
	out := *content
	out.InitContainers, out.Containers = slices.Clone(content.InitContainers), slices.Clone(content.Containers)
	k := 0
	for _, list := range [][]corev1.Container{out.InitContainers, out.Containers} {
		for i := range list {
			ctr := list[i].DeepCopy()
			if ctr.SecurityContext == nil {
				ctr.SecurityContext = &corev1.SecurityContext{}
			}
			uid, gid := numSentinel(0), numSentinel(1+k)
			ctr.SecurityContext.RunAsUser, ctr.SecurityContext.RunAsGroup = &uid, &gid
			list[i] = *ctr
			k++
		}
	}
	return &out
}

// declareUser declares the app's user as the engine picks it (users.go):
// the Pod's runAsUser, else the one every target container sets; the
// Pod's runAsGroup, else (for a user from the containers) the one every
// target sets. app is set when it is neither unset nor root; number 0 is
// the user, number 1+k container k's group: the app's unless unset or 0,
// then the template's own unless unset or 0, then inject.NoGroup.
func (c *compiled) declareUser(g *gen) {
	p := c.prefix
	sc := "object.spec.securityContext"
	g.v(p+"podUser", fmt.Sprintf("has(%s) && has(%[1]s.runAsUser) ? %[1]s.runAsUser : -1", sc))
	g.v(p+"podGroup", fmt.Sprintf("has(%s) && has(%[1]s.runAsGroup) ? %[1]s.runAsGroup : -1", sc))
	field := func(f string) string {
		return fmt.Sprintf("variables.targets.map(i, has(object.spec.containers[i].securityContext) && has(object.spec.containers[i].securityContext.%[1]s) ? object.spec.containers[i].securityContext.%[1]s : -1)", f)
	}
	g.v(p+"targetUsers", field("runAsUser"))
	g.v(p+"targetGroups", field("runAsGroup"))
	shared := func(list string) string {
		return fmt.Sprintf("size(%s) > 0 && %[1]s.all(x, x != -1 && x == %[1]s[0])", list)
	}
	uid := g.v(p+"uid", fmt.Sprintf("variables.%spodUser != -1 ? variables.%[1]spodUser : (%s ? variables.%[1]stargetUsers[0] : -1)", p, shared("variables."+p+"targetUsers")))
	gid := g.v(p+"gid", fmt.Sprintf("variables.%spodGroup != -1 ? variables.%[1]spodGroup : (variables.%[1]spodUser == -1 && %s != -1 && %s ? variables.%[1]stargetGroups[0] : -1)", p, uid, shared("variables."+p+"targetGroups")))
	g.v(p+"app", uid+" > 0")
	g.v(p+"num0", uid)
	k := 0
	for _, ctr := range slices.Concat(c.own.InitContainers, c.own.Containers) {
		own := int64(-1)
		if sc := ctr.SecurityContext; sc != nil && sc.RunAsGroup != nil {
			own = *sc.RunAsGroup
		}
		g.v(fmt.Sprintf("%snum%d", p, 1+k), fmt.Sprintf("%s > 0 ? %[1]s : %d", gid, ownGroup(own)))
		k++
	}
}

// ownGroup is the group a container keeps when the app's is unset or 0.
func ownGroup(gid int64) int64 {
	if gid > 0 {
		return gid
	}
	return inject.NoGroup
}
