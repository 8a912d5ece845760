package admissionpolicy

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
)

// held is the CEL string of the held JSON the engine hashes for c (see
// inject's held), for a Pod the validating policy has not declined: the
// template's own volumes are new to it, and no target container mounts
// them or sets the template's env names itself, so what the Pod holds of
// the template is exactly what c adds.
func (c *compiled) held() string {
	mounted := map[string]bool{}
	for _, ctr := range slices.Concat(c.content.InitContainers, c.content.Containers) {
		for _, m := range ctr.VolumeMounts {
			mounted[m.Name] = true
		}
	}
	var volumes []corev1.Volume
	for _, v := range c.content.Volumes {
		if mounted[v.Name] {
			volumes = append(volumes, inject.CanonicalVolume(v))
		}
	}
	var mounts []corev1.VolumeMount
	for _, m := range c.content.AppVolumeMounts {
		if mounted[m.Name] {
			mounts = append(mounts, m)
		}
	}
	j := func(json string) string { return splice(resourcesRE.ReplaceAllString(json, "$1"), c.json) }
	containers := c.pick(func(content *catalog.Content) string {
		init, classic, native := canonical(content.InitContainers), canonical(content.Containers), canonical(nativeSidecars(content.Containers))
		if c.t.NativeSidecar {
			return fmt.Sprintf(`'{"initContainers":' + %s + ',"containers":null'`, j(jsonOrNull(slices.Concat(init, native))))
		}
		return fmt.Sprintf(`(variables.complete ? '{"initContainers":' + %s + ',"containers":null' : '{"initContainers":' + %s + ',"containers":' + %s)`, j(jsonOrNull(slices.Concat(init, native))), j(jsonOrNull(init)), j(jsonOrNull(classic)))
	})
	perApp := func(piece string) string {
		return fmt.Sprintf("(size(variables.targets) == 0 ? 'null' : '[' + variables.targets.map(i, %s).join(',') + ']')", piece)
	}
	return strings.Join([]string{containers, `',"volumes":'`, j(jsonOrNull(volumes)), `',"appMounts":'`, perApp(j(jsonOrNull(mounts))), `',"appEnv":'`, perApp(c.heldEnv(j)), `'}'`}, " + ")
}

// heldEnv is the JSON of app container i's env of the template's names:
// its own entries of those names (values only: the validating policy
// declines the rest), then the template's entries for the names it does
// not set.
func (c *compiled) heldEnv(j func(string) string) string {
	names := lits(envNames(c))
	own := fmt.Sprintf("(has(object.spec.containers[i].env) ? object.spec.containers[i].env.filter(e, e.name in %s) : [])", names)
	entries := []string{fmt.Sprintf(`%s.map(e, '{"name":"' + %s + '"' + (has(e.value) && e.value != '' ? ',"value":"' + %s + '"' : '') + '}')`, own, jsonEscape("e.name"), jsonEscape("e.value"))}
	for _, e := range c.content.AppEnv {
		entries = append(entries, fmt.Sprintf("(%s.exists(e, e.name == %s) ? [] : [%s])", own, lit(e.Name), j(jsonText(inject.CanonicalEnv(e)))))
	}
	list := "(" + strings.Join(entries, " + ") + ")"
	return fmt.Sprintf("(size(%s) == 0 ? 'null' : '[' + %[1]s.join(',') + ']')", list)
}

// resourcesRE matches a resources sentinel's JSON, to leave the sentinel.
var resourcesRE = regexp.MustCompile(`\{"limits":\{"(sipzqres[0-9]+qz)":"0"\}\}`)

// jsonOrNull is v's JSON, or null for an empty list, as encoding/json
// writes a nil slice.
func jsonOrNull[T any](v []T) string {
	if len(v) == 0 {
		return "null"
	}
	return jsonText(v)
}

func canonical(list []corev1.Container) []corev1.Container {
	var out []corev1.Container
	for _, c := range list {
		out = append(out, inject.CanonicalContainer(c))
	}
	return out
}

// nativeSidecars are the containers as the engine adds them to
// initContainers: restartPolicy Always.
func nativeSidecars(list []corev1.Container) []corev1.Container {
	out := make([]corev1.Container, len(list))
	for i, c := range list {
		c = *c.DeepCopy()
		c.RestartPolicy = new(corev1.ContainerRestartPolicyAlways)
		out[i] = c
	}
	return out
}

// status is the CEL string of the status annotation the policies write.
func (g *gen) status() string {
	chain := "''"
	for i := len(g.templates) - 1; i >= 0; i-- {
		c := g.templates[i]
		chain = fmt.Sprintf("n == %s ? %s : %s", lit(c.t.Name), c.held(), chain)
	}
	return fmt.Sprintf(`'{"templates":[' + variables.names.map(n, '{"name":"' + n + '","held":"' + %s + '"}').join(',') + ']}'`, jsonEscape("("+chain+")"))
}
