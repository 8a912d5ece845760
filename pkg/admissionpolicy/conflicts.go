package admissionpolicy

import (
	"fmt"
	"path"
	"reflect"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/podpatterns/sidecar-injector/pkg/inject"
)

// podFacts declares what the templates' checks read of the Pod.
func (g *gen) podFacts() {
	g.v("initNames", "has(object.spec.initContainers) ? object.spec.initContainers.map(c, c.name) : []")
	g.v("appNames", "object.spec.containers.map(c, c.name)")
	g.v("ephemeralNames", "has(object.spec.ephemeralContainers) ? object.spec.ephemeralContainers.map(c, c.name) : []")
	g.v("podNames", "variables.initNames + variables.appNames + variables.ephemeralNames")
	g.v("podVolumes", "has(object.spec.volumes) ? object.spec.volumes.map(v, v.name) : []")
	g.v("complete", "has(object.spec.restartPolicy) && object.spec.restartPolicy in ['Never', 'OnFailure']")
	g.v("hostNet", "has(object.spec.hostNetwork) && object.spec.hostNetwork")
	ports := "has(c.ports) ? c.ports.map(p, string(p.containerPort) + '/' + (has(p.protocol) ? p.protocol : 'TCP')) : []"
	holders := "(has(object.spec.initContainers) ? object.spec.initContainers.filter(c, has(c.restartPolicy) && c.restartPolicy == 'Always') : [])"
	g.v("holderNames", fmt.Sprintf("%s.map(c, c.name) + object.spec.containers.map(c, c.name)", holders))
	g.v("holderPorts", fmt.Sprintf("%s.map(c, %s) + object.spec.containers.map(c, %[2]s)", holders, ports))
	g.v("podPorts", "variables.holderPorts.flatten()")
	target := inject.TargetContainersAnnotation
	g.list("targetEntries", fmt.Sprintf("size(variables.names) > 0 && %s in variables.ann", lit(target)), "variables.ann["+lit(target)+"]", target)
	g.v("targetsErr", fmt.Sprintf("variables.targetEntriesErr + (size(variables.targetEntriesErr) == 0 ? variables.targetEntries.filter(n, !(n in variables.appNames)).map(n, %s + %s + '; have ' + %s) : [])",
		lit("annotation "+target+": no app container "), brief("n"), celFirstNames("variables.appNames", 20)))
	g.v("targets", fmt.Sprintf("size(variables.names) > 0 && %s in variables.ann ? variables.targetEntries.filter(n, n in variables.appNames).map(n, variables.appNames.indexOf(n)) : lists.range(size(object.spec.containers))", lit(target)))
}

// celFirstNames is firstNames of the CEL list x.
func celFirstNames(x string, n int) string {
	return fmt.Sprintf(`%s.slice(0, size(%[1]s) < %d ? size(%[1]s) : %[2]d).map(n, '"' + n + '"').join(', ') + (size(%[1]s) > %[2]d ? ', and ' + string(size(%[1]s) - %[2]d) + ' more' : '')`, x, n)
}

// others are the compiled templates other than c with a name in common,
// by pick.
func (g *gen) others(c *compiled, pick func(*compiled) []string, name string) []string {
	var out []string
	for _, o := range g.templates {
		if o != c && slices.Contains(pick(o), name) {
			out = append(out, o.t.Name)
		}
	}
	for _, r := range g.refused {
		if t := g.cat.Template(r.Template); t != nil && slices.Contains(pick(&compiled{t: t}), name) {
			out = append(out, r.Template)
		}
	}
	return out
}

func containerNames(c *compiled) []string { return c.t.ContainerNames() }

// nameErrors deny a container name the Pod or an earlier template uses;
// the latest claim is named, as the engine names it.
func (c *compiled) nameErrors(g *gen) string {
	out := "[]"
	for n, name := range c.t.ContainerNames() {
		pod := fmt.Sprintf(`(%s in variables.ephemeralNames ? 'ephemeral container' : %[1]s in variables.appNames ? 'container' : 'init container')`, lit(name))
		podMsg := fmt.Sprintf("%s + %s + %s", lit(fmt.Sprintf("template %q: ", c.t.Name)), pod, lit(fmt.Sprintf(" %q of the pod has the name of the template's container but not its content; a Pod cannot carry its own copy of a template, so remove that container or rename it", name)))
		check := fmt.Sprintf("(%s in variables.podNames ? [%s] : [])", lit(name), podMsg)
		if others := g.others(c, containerNames, name); len(others) > 0 {
			e := g.v(fmt.Sprintf("%sname%d", c.prefix, n), fmt.Sprintf("variables.names.indexOf(%[1]s) > 0 ? variables.names.slice(0, variables.names.indexOf(%[1]s)).filter(n, n in %[2]s) : []", lit(c.t.Name), lits(others)))
			check = fmt.Sprintf("(size(%[1]s) > 0 ? [%[2]s + %[1]s[size(%[1]s) - 1] + '\"; rename that container'] : %[3]s)", e,
				lit(fmt.Sprintf("template %q: container name %q is already used by container %q of template \"", c.t.Name, name, name)), check)
		}
		out += " + " + check
	}
	return "(" + out + ")"
}

// portErrors deny a port the Pod, an earlier template or the template
// itself claims already.
func (c *compiled) portErrors(g *gen) string {
	var earlier []string // [key, owner] of the earlier templates' claims
	for _, o := range g.templates {
		if o == c {
			continue
		}
		keys, owners := o.ports()
		var claims []string
		for i, k := range keys {
			claims = append(claims, fmt.Sprintf("[%s, %s]", k, lit(fmt.Sprintf("container %q of template %q", owners[i], o.t.Name))))
		}
		if len(claims) > 0 {
			earlier = append(earlier, fmt.Sprintf("(%s ? [%s] : [])", c.before([]string{o.t.Name}), strings.Join(claims, ", ")))
		}
	}
	claims := g.v(c.prefix+"claims", "[]"+strings.Join(prepend(" + ", earlier), ""))
	keys, owners := c.ports()
	out := "[]"
	var own []string
	for i, k := range keys {
		key := g.v(fmt.Sprintf("%sport%d", c.prefix, i), k)
		msg := lit(fmt.Sprintf("template %q: port ", c.t.Name)) + " + " + key + " + " + lit(fmt.Sprintf(" of container %q is already used by ", owners[i]))
		tail := lit("; all containers of a Pod share one network namespace, so change the port (a template parameter) or the app's port")
		holder := fmt.Sprintf("lists.range(size(variables.holderPorts)).filter(h, %s in variables.holderPorts[h])", key)
		inner := fmt.Sprintf("%s in variables.podPorts ? [%s + 'container \"' + variables.holderNames[%s[size(%[3]s) - 1]] + '\"' + %s] : []", key, msg, holder, tail)
		m := g.v(fmt.Sprintf("%sportClaims%d", c.prefix, i), fmt.Sprintf("%s.filter(x, x[0] == %s)", claims, key))
		inner = fmt.Sprintf("size(%[1]s) > 0 ? [%[2]s + %[1]s[size(%[1]s) - 1][1] + %[3]s] : %[4]s", m, msg, tail, inner)
		if len(own) > 0 {
			m := g.v(fmt.Sprintf("%sportOwn%d", c.prefix, i), fmt.Sprintf("[%s].filter(x, x[0] == %s)", strings.Join(own, ", "), key))
			inner = fmt.Sprintf("size(%[1]s) > 0 ? [%[2]s + %[1]s[size(%[1]s) - 1][1] + %[3]s] : %[4]s", m, msg, tail, inner)
		}
		out += " + (" + inner + ")"
		own = append(own, fmt.Sprintf("[%s, %s]", key, lit(fmt.Sprintf("container %q of template %q", owners[i], c.t.Name))))
	}
	return "(" + out + ")"
}

func volumeNames(c *compiled) []string {
	var out []string
	for _, v := range c.t.Volumes {
		out = append(out, v.Name)
	}
	return out
}

func envNames(c *compiled) []string {
	var out []string
	for _, e := range c.t.AppEnv {
		out = append(out, e.Name)
	}
	return out
}

// volumeErrors deal with a volume the Pod has already under a template
// volume's name: the engine reuses an identical one and denies another.
// The compiler reuses the one volume of a template when it is an emptyDir
// of no size limit, which it can compare field for field; any other it
// declines, as the held JSON would order a reused volume before the
// template's others.
func (c *compiled) volumeErrors(g *gen) string {
	out := "[]"
	for _, v := range c.content.Volumes {
		if !c.reusable() {
			out += fmt.Sprintf(" + (%s in variables.podVolumes ? [%s] : [])", lit(v.Name), lit(declined(c.t.Name, fmt.Sprintf("the Pod has a volume %q already", v.Name))))
			continue
		}
		out += fmt.Sprintf(" + (has(object.spec.volumes) && object.spec.volumes.exists(x, x.name == %s && !(%s)) ? [%s] : [])", lit(v.Name), identicalEmptyDir("x", v.EmptyDir.Medium),
			lit(fmt.Sprintf("template %q: volume %q already exists in the pod with a different definition; rename the Pod's volume or define it as the template does", c.t.Name, v.Name)))
	}
	return "(" + out + ")"
}

// reusable reports whether the template's volume, when the Pod has it
// already, is reused as the engine reuses it.
func (c *compiled) reusable() bool {
	vs := c.content.Volumes
	return len(vs) == 1 && vs[0].EmptyDir != nil && vs[0].EmptyDir.SizeLimit == nil && vs[0].VolumeSource == (corev1.VolumeSource{EmptyDir: vs[0].EmptyDir})
}

// identicalEmptyDir is true when the CEL volume x is an emptyDir of
// medium and nothing else.
func identicalEmptyDir(x string, medium corev1.StorageMedium) string {
	terms := []string{fmt.Sprintf("has(%s.emptyDir)", x), fmt.Sprintf("!has(%s.emptyDir.sizeLimit)", x)}
	if medium == "" {
		terms = append(terms, fmt.Sprintf("(!has(%[1]s.emptyDir.medium) || %[1]s.emptyDir.medium == '')", x))
	} else {
		terms = append(terms, fmt.Sprintf("has(%s.emptyDir.medium) && %[1]s.emptyDir.medium == %s", x, lit(string(medium))))
	}
	t := reflect.TypeOf(corev1.VolumeSource{})
	for i := 0; i < t.NumField(); i++ {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "emptyDir" {
			terms = append(terms, fmt.Sprintf("!has(%s.%s)", x, name))
		}
	}
	return strings.Join(terms, " && ")
}

// mountErrors deny an app mount at the path the template mounts its
// volume at, by the Pod or an earlier template.
func (c *compiled) mountErrors(g *gen) string {
	if len(c.content.AppVolumeMounts) == 0 {
		return "[]"
	}
	var perMount []string
	a := "object.spec.containers[i]"
	for n, m := range c.content.AppVolumeMounts {
		at := splice(m.MountPath, c.param)
		if !strings.Contains(at, "variables.") {
			at = lit(path.Clean(m.MountPath))
		}
		at = g.v(fmt.Sprintf("%smount%d", c.prefix, n), at)
		msg := func(name, path string) string {
			return fmt.Sprintf("%s + %s.name + '\" already mounts volume \"' + %s + '\" at ' + %s + %s", lit(fmt.Sprintf("template %q: container \"", c.t.Name)), a, name, path,
				lit(fmt.Sprintf(", where the template mounts %q; set the template's directory parameter to another path", m.Name)))
		}
		prior := fmt.Sprintf("(has(%s.volumeMounts) ? %[1]s.volumeMounts : []).filter(x, %s == %s)", a, clean("x.mountPath"), at)
		perMount = append(perMount, fmt.Sprintf("(size(%s) > 0 ? (%[1]s[0].name != %s ? [%s] : []) : %s)",
			prior, lit(m.Name), msg(prior+"[0].name", prior+"[0].mountPath"), c.earlierMounts(g, m, at, msg)))
	}
	weird := lit(declined(c.t.Name, "a target container mounts a volume at a relative path or one with a \"..\" segment, which CEL cannot clean as the engine does"))
	return fmt.Sprintf("variables.targets.map(i, has(%s.volumeMounts) && %[1]s.volumeMounts.exists(x, !x.mountPath.startsWith('/') || x.mountPath.split('/').exists(s, s == '..')) ? [%s] : %s).flatten()", a, weird, strings.Join(perMount, " + "))
}

// earlierMounts denies a mount an earlier template added at the same path
// under another volume name.
func (c *compiled) earlierMounts(g *gen, m corev1.VolumeMount, at string, msg func(name, path string) string) string {
	out := "[]"
	for _, o := range g.templates {
		if o == c {
			continue
		}
		for _, om := range o.content.AppVolumeMounts {
			if om.Name == m.Name {
				continue // a shared volume: declined
			}
			oat := splice(om.MountPath, o.param)
			out = fmt.Sprintf("(%s && %s == %s ? [%s] : %s)", c.before([]string{o.t.Name}), clean(oat), at, msg(lit(om.Name), oat), out)
		}
	}
	return out
}

// unescaped is true when the CEL string x holds a character encoding/json
// escapes other than the five jsonEscape handles: controls, U+2028, U+2029.
func unescaped(x string) string {
	return fmt.Sprintf(`%s.matches('[\\x00-\\x1f\\x{2028}\\x{2029}]')`, x)
}

// declines are the Pods the policies cannot inject as the webhook does:
// one that sets pod-level resources, and those the held JSON cannot be
// written for: an app container that sets an env name or mounts a volume
// of the template itself, or an earlier template that shares one.
func (c *compiled) declines(g *gen) []string {
	// The webhook raises the pod-level resources a Pod sets by the
	// sidecars' share; quantity arithmetic has no string form in CEL.
	out := []string{fmt.Sprintf("(has(object.spec.resources) && (has(object.spec.resources.requests) || has(object.spec.resources.limits)) ? [%s] : [])",
		lit(declined(c.t.Name, "the Pod sets pod-level resources (spec.resources), which must grow by the sidecars' share")))}
	if names := envNames(c); len(names) > 0 {
		// The status holds a copy of an app's own entry of the names: a
		// value the five escapes of jsonEscape write as encoding/json does.
		out = append(out, fmt.Sprintf("(variables.targets.exists(i, has(object.spec.containers[i].env) && object.spec.containers[i].env.exists(e, e.name in %s && (has(e.valueFrom) || %s || (has(e.value) && %s)))) ? [%s] : [])",
			lits(names), unescaped("e.name"), unescaped("e.value"),
			lit(declined(c.t.Name, "a target container sets "+strings.Join(names, " or ")+" itself from a reference or with control characters, and the status would have to hold a copy of it"))))
	}
	if names := volumeNames(c); len(names) > 0 {
		out = append(out, fmt.Sprintf("(variables.targets.exists(i, has(object.spec.containers[i].volumeMounts) && object.spec.containers[i].volumeMounts.exists(m, m.name in %s)) ? [%s] : [])", lits(names),
			lit(declined(c.t.Name, "a target container mounts the template's volume itself"))))
	}
	var shared []string
	for _, pick := range []func(*compiled) []string{volumeNames, envNames} {
		for _, name := range pick(c) {
			shared = append(shared, g.others(c, pick, name)...)
		}
	}
	if len(shared) > 0 {
		out = append(out, fmt.Sprintf("(%s ? [%s] : [])", c.before(shared), lit(declined(c.t.Name, "an earlier template on the Pod adds a volume or an env name of the same name"))))
	}
	return out
}
