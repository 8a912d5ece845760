package admissionpolicy

import (
	"fmt"
	"strings"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
)

// patch is the JSONPatch expression: the engine's plan for the Pod, in
// the order the engine adds it, each list created where it is missing.
func (g *gen) patch() string {
	inits := g.perTemplate(func(c *compiled) string {
		return c.pick(func(content *catalog.Content) string {
			init := typedList(content.InitContainers, "Object.spec.initContainers", c)
			native := typedList(nativeSidecars(content.Containers), "Object.spec.initContainers", c)
			if c.t.NativeSidecar {
				return init + " + " + native
			}
			return fmt.Sprintf("(variables.complete ? %s + %s : %[1]s)", init, native)
		})
	})
	classic := g.perTemplate(func(c *compiled) string {
		if c.t.NativeSidecar {
			return "[]"
		}
		return c.pick(func(content *catalog.Content) string {
			return fmt.Sprintf("(variables.complete ? [] : %s)", typedList(content.Containers, "Object.spec.containers", c))
		})
	})
	volumes := g.perTemplate(func(c *compiled) string {
		list := typedList(c.content.Volumes, "Object.spec.volumes", c)
		if c.reusable() { // the Pod's identical volume is reused
			return fmt.Sprintf("(%s in variables.podVolumes ? [] : %s)", lit(c.content.Volumes[0].Name), list)
		}
		return list
	})
	mounts := g.perTemplate(func(c *compiled) string {
		return typedList(c.content.AppVolumeMounts, "Object.spec.containers.volumeMounts", c)
	})
	env := g.perTemplate(func(c *compiled) string {
		// An app's own value of a name is kept.
		var entries []string
		for _, e := range c.content.AppEnv {
			entries = append(entries, fmt.Sprintf("(has(object.spec.containers[i].env) && object.spec.containers[i].env.exists(e, e.name == %s) ? [] : [%s])", lit(e.Name), typed(e, "Object.spec.containers.env", c)))
		}
		return "([]" + strings.Join(prepend(" + ", entries), "") + ")"
	})
	secrets := g.perTemplate(func(c *compiled) string {
		var names []string
		for _, s := range c.content.ImagePullSecrets {
			names = append(names, s.Name)
		}
		return lits(names)
	})
	ops := []string{
		appendTo("/spec/initContainers", "has(object.spec.initContainers)", inits),
		appendTo("/spec/containers", "true", classic),
		appendTo("/spec/volumes", "has(object.spec.volumes)", volumes),
		fmt.Sprintf("variables.targets.map(i, %s + %s).flatten()",
			appendTo("'/spec/containers/' + string(i) + '/volumeMounts'", "has(object.spec.containers[i].volumeMounts)", mounts),
			appendTo("'/spec/containers/' + string(i) + '/env'", "has(object.spec.containers[i].env)", env)),
		appendTo("/spec/imagePullSecrets", "has(object.spec.imagePullSecrets)",
			fmt.Sprintf("%s.distinct().filter(s, !has(object.spec.imagePullSecrets) || !object.spec.imagePullSecrets.exists(p, p.name == s)).map(s, Object.spec.imagePullSecrets{name: s})", secrets)),
		g.annotations(),
	}
	key := lit("/metadata/annotations/" + escapeKey(inject.StatusAnnotation))
	status := lit(inject.StatusAnnotation) + " in variables.ann"
	return fmt.Sprintf("size(variables.names) == 0 || variables.tooLarge || variables.tooCostly ? [] : variables.carries ? [JSONPatch{op: 'add', path: %s, value: %s}] : !variables.inject ? (%s ? [JSONPatch{op: 'remove', path: %[1]s}] : []) : ", key, lit(unverified), status) + strings.Join(ops, " + ")
}

// perTemplate is the CEL list of what each requested template adds, in
// the order the Pod asks for them.
func (g *gen) perTemplate(list func(*compiled) string) string {
	chain := "[]"
	for i := len(g.templates) - 1; i >= 0; i-- {
		c := g.templates[i]
		chain = fmt.Sprintf("n == %s ? %s : %s", lit(c.t.Name), list(c), chain)
	}
	return fmt.Sprintf("variables.names.map(n, %s).flatten()", chain)
}

func typedList[T any](list []T, path string, c *compiled) string {
	items := make([]string, len(list))
	for i, v := range list {
		items[i] = typed(v, path, c)
	}
	return "[" + strings.Join(items, ", ") + "]"
}

// appendTo appends each item of the CEL list items to the list at path
// (a literal path, or a CEL expression when it starts with a quote),
// creating the list first unless exists.
func appendTo(path, exists, items string) string {
	if !strings.HasPrefix(path, "'") {
		path = lit(path)
	}
	return fmt.Sprintf("((size(%s) > 0 && !(%s) ? [JSONPatch{op: 'add', path: %s, value: []}] : []) + %[1]s.map(x, JSONPatch{op: 'add', path: %[3]s + '/-', value: x}))", items, exists, path)
}

// annotations writes the status, and kubectl's default container where
// the Pod gets classic containers and lacks it.
func (g *gen) annotations() string {
	var classic []string
	for _, c := range g.templates {
		if !c.t.NativeSidecar && len(c.content.Containers) > 0 {
			classic = append(classic, c.t.Name)
		}
	}
	dc := inject.DefaultContainerAnnotation
	setDC := fmt.Sprintf("!(%s in variables.ann) && size(variables.targets) > 0 && !variables.complete && variables.names.exists(n, n in %s)", lit(dc), lits(classic))
	app := "string(object.spec.containers[variables.targets[0]].name)"
	return fmt.Sprintf(`(%s == '' ? [] : has(object.metadata.annotations) ? [JSONPatch{op: 'add', path: %s, value: variables.status}] + (%s ? [JSONPatch{op: 'add', path: %s, value: %s}] : []) : [JSONPatch{op: 'add', path: '/metadata/annotations', value: %s ? {%s: variables.status, %s: %s} : {%[7]s: variables.status}}])`,
		"variables.status", lit("/metadata/annotations/"+escapeKey(inject.StatusAnnotation)), setDC, lit("/metadata/annotations/"+escapeKey(dc)), app,
		setDC, lit(inject.StatusAnnotation), lit(dc), app)
}

func escapeKey(k string) string {
	return strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
}
