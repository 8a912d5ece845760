package admissionpolicy

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
)

// compiled is one template the compiler expresses exactly.
type compiled struct {
	t       *catalog.Template
	prefix  string           // of its variables: its name in camel case and "_"
	content *catalog.Content // rendered with a sentinel for each parameter
	// own is what the template adds running as its own user, app (nil
	// unless runAsAppUser) running as the app's: content with the
	// containers' resources as sentinels where overrides open them, and
	// the app's user as numeric sentinels.
	own, app *catalog.Content
	errs     string // CEL list of its denials, in the engine's order
}

func newCompiled(t *catalog.Template, i int) *compiled {
	c := &compiled{t: t, prefix: ident(t.Name) + "_", content: t.Render(sentinels(t))}
	c.own = c.withResourceSentinels()
	if t.RunAsAppUser {
		c.app = c.asAppUser(c.own)
	}
	return c
}

// pick is f of what the template adds: as its own user, or, when the Pod
// decides so at runtime, as the app's.
func (c *compiled) pick(f func(*catalog.Content) string) string {
	if c.app == nil {
		return f(c.own)
	}
	return fmt.Sprintf("(variables.%sapp ? %s : %s)", c.prefix, f(c.app), f(c.own))
}

// pv names a variable of parameter j: the template's prefix, "param_",
// the parameter's name in camel case, then what it holds ("" its value,
// "_set", "_raw", "_ok", "_json" and so on).
func (c *compiled) pv(j int, what string) string {
	return c.prefix + "param_" + ident(c.t.Parameters[j].Name) + what
}

// ident is a catalog name (a DNS label: lower case letters, digits and
// dashes) as a CEL identifier, in camel case: a dash before a letter
// makes it upper case ("log-shipper" is logShipper), any other dash is
// "_", as is a leading digit's prefix ("2fa" is _2fa). Different names
// stay different: a name holds neither upper case nor "_".
func ident(name string) string {
	var b strings.Builder
	if name != "" && name[0] >= '0' && name[0] <= '9' {
		b.WriteByte('_')
	}
	for i := 0; i < len(name); i++ {
		switch {
		case name[i] != '-':
			b.WriteByte(name[i])
		case i+1 < len(name) && name[i+1] >= 'a' && name[i+1] <= 'z':
			b.WriteByte(name[i+1] - 'a' + 'A')
			i++
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

func sentinels(t *catalog.Template) catalog.Values {
	values := catalog.Values{}
	for j, p := range t.Parameters {
		values[p.Name] = sentinel(j)
	}
	return values
}

// param is the CEL string of sentinel j (see splice): a parameter's
// value in its normal form, a number, or a container's resources as JSON.
func (c *compiled) param(j int) string {
	switch {
	case j >= resourcesIndex:
		return c.resourcesJSON(j - resourcesIndex)
	case j >= numIndex:
		return fmt.Sprintf("string(variables.%snum%d)", c.prefix, j-numIndex)
	}
	return "variables." + c.pv(j, "")
}

// json is param as it appears inside the held JSON: a parameter's value
// JSON-escaped.
func (c *compiled) json(j int) string {
	if j >= numIndex {
		return c.param(j)
	}
	return "variables." + c.pv(j, "_json")
}

// before is true when template name is requested before this one.
func (c *compiled) before(names []string) string {
	return fmt.Sprintf("(variables.names.indexOf(%[1]s) > 0 && variables.names.slice(0, variables.names.indexOf(%[1]s)).exists(n, n in %[2]s))", lit(c.t.Name), lits(names))
}

// declare declares the template's variables, and its denials in c.errs.
func (c *compiled) declare(g *gen) {
	for j := range c.t.Parameters {
		c.declareParam(g, j)
	}
	if c.app != nil {
		c.declareUser(g)
	}
	errs := []string{c.parameterErrors(g), c.overrideErrors(g), c.hostNetworkError(), c.nameErrors(g), c.portErrors(g), c.volumeErrors(g), c.mountErrors(g)}
	errs = append(errs, c.declines(g)...)
	c.errs = "(" + strings.Join(errs, " + ") + ")"
}

// clean is path.Clean of the CEL string x, for an absolute path without
// ".." segments.
func clean(x string) string {
	return fmt.Sprintf("('/' + %s.split('/').filter(s, s != '' && s != '.').join('/'))", x)
}

// printable is unicode.IsPrint for every rune: letters, marks, numbers,
// punctuation, symbols and the ASCII space.
const printable = `^[\p{L}\p{M}\p{N}\p{P}\p{S} ]*$`

const dns1123Subdomain = `^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`

// shellMetaClass matches any of catalog's shell metacharacters.
var shellMetaClass = func() string {
	var b strings.Builder
	for _, r := range catalog.ShellMeta {
		b.WriteString(regexp.QuoteMeta(string(r)))
	}
	return "[" + b.String() + "]"
}()

// declareParam declares parameter j: set, raw, ok, its value and its
// JSON form, as Parameter.Check decides and normalises.
func (c *compiled) declareParam(g *gen, j int) {
	p := c.t.Parameters[j]
	v := c.pv(j, "")
	key := lit(inject.ParameterAnnotation(c.t.Name, p.Name))
	set := g.v(v+"_set", key+" in variables.ann")
	raw := g.v(v+"_raw", fmt.Sprintf("%s ? variables.ann[%s] : ''", set, key))
	checks := []string{fmt.Sprintf("size(bytes(%s)) <= %d", raw, catalog.MaxValueBytes), fmt.Sprintf("%s.matches(%s)", raw, lit(printable))}
	if p.Validation == "" && (p.Type == "" || p.Type == catalog.String || p.Type == catalog.Path) {
		checks = append(checks, fmt.Sprintf("!%s.matches(%s)", raw, lit(shellMetaClass)))
	}
	norm := raw
	switch p.Type {
	case catalog.Path:
		checks = append(checks, fmt.Sprintf("%s.startsWith('/') && !%[1]s.contains(' ') && !%[1]s.split('/').exists(s, s == '..') && %s != '/'", raw, clean(raw)))
		norm = clean(raw)
	case catalog.Port:
		checks = append(checks, portOK(raw))
		norm = fmt.Sprintf("string(int(%s))", raw)
	case catalog.HostPort:
		form := g.v(v+"_form", fmt.Sprintf(`%s.matches('^\\[[^\\[\\]]*\\]:[^\\[\\]:]*$') ? 'bracket' : %[1]s.matches('^[^\\[\\]:]*:[^\\[\\]:]*$') ? 'plain' : ''`, raw))
		host := g.v(v+"_host", fmt.Sprintf("%s == 'bracket' ? %s.substring(1, %[2]s.lastIndexOf(']')) : %[1]s == 'plain' ? %[2]s.substring(0, %[2]s.lastIndexOf(':')) : ''", form, raw))
		port := g.v(v+"_port", fmt.Sprintf("%s != '' ? %s.substring(%[2]s.lastIndexOf(':') + 1) : ''", form, raw))
		// net.ParseIP takes IPv4-mapped IPv6 addresses (::ffff:a.b.c.d),
		// CEL's isIP refuses them: with the ffff hextet made fffe the
		// same text is valid for both or neither.
		checks = append(checks, fmt.Sprintf("%s != '' && %s && (%s.contains(':') ? isIP(%[3]s) || isIP(%[3]s.lowerAscii().replace('ffff', 'fffe')) : size(%[3]s) <= 253 && %[3]s.matches(%s))", form, portOK(port), host, lit(dns1123Subdomain)))
		norm = fmt.Sprintf("(%s.contains(':') ? '[' + %[1]s + ']' : %[1]s) + ':' + string(int(%s))", host, port)
	}
	// The normal form only of a value that passes the type's checks: a
	// normal form of anything else may fail to evaluate (int of "9 001").
	typeOK := g.v(v+"_checked", strings.Join(checks, " && "))
	value := g.v(v+"_normal", fmt.Sprintf("%s ? %s : %s", typeOK, norm, raw))
	ok := typeOK
	if p.Validation != "" {
		ok = fmt.Sprintf("(%s && %s.matches(%s))", typeOK, value, lit("^(?:"+p.Validation+")$"))
	}
	g.v(v+"_ok", fmt.Sprintf("!%s || %s", set, ok))
	g.v(v, fmt.Sprintf("%s ? %s : %s", set, value, lit(p.Default)))
	g.v(v+"_json", jsonEscape(c.param(j)))
}

// portOK is the engine's port check of the CEL string x: strconv.Atoi
// takes a sign and leading zeros.
func portOK(x string) string {
	return fmt.Sprintf("(%s.matches('^[+-]?0*[0-9]{1,5}$') && int(%[1]s) >= 1 && int(%[1]s) <= 65535)", x)
}

// jsonEscape escapes the CEL string x as encoding/json does inside a
// string. A value holds no control characters (Check refuses them), so
// these five are all it can need.
func jsonEscape(x string) string {
	return x + `.replace('\\', '\\\\').replace('"', '\\"').replace('<', '\\u003c').replace('>', '\\u003e').replace('&', '\\u0026')`
}

// parameterErrors are the engine's parameter denials: the first bad
// annotation in key order, then a missing required parameter, then a
// resource override the template does not open.
func (c *compiled) parameterErrors(g *gen) string {
	prefix := inject.ParameterAnnotation(c.t.Name, "")
	known := slices.Concat(c.t.ParameterNames(), catalog.ReservedParameters)
	var bad []string
	k := "variables." + c.prefix + "badKey"
	msg := celf(inject.DenyNoParameter, expr(k), c.t.Name, expr(brief(k+".substring("+strconv.Itoa(len(prefix))+")")), c.t.ParameterNames())
	for j, p := range c.t.Parameters {
		key := lit(prefix + p.Name)
		bad = append(bad, fmt.Sprintf("(k == %s && !variables.%s)", key, c.pv(j, "_ok")))
		msg = fmt.Sprintf("%[1]s == %[2]s ? 'annotation ' + %[1]s + ': value ' + %[3]s + %[4]s : %[5]s", k, key, brief("variables."+c.pv(j, "_raw")),
			lit(fmt.Sprintf(" is not valid for parameter %q of template %q (%s); want %s", p.Name, c.t.Name, p.Description, p.Expects())), msg)
	}
	keys := fmt.Sprintf("variables.ann.filter(k, k.startsWith(%s) && (!(k.substring(%d) in %s)%s))", lit(prefix), len(prefix), lits(known), strings.Join(prepend(" || ", bad), ""))
	g.v(c.prefix+"badKeys", keys)
	g.v(c.prefix+"badKey", fmt.Sprintf("size(variables.%sbadKeys) == 0 ? '' : variables.%[1]sbadKeys.min()", c.prefix))
	out := fmt.Sprintf("(%s == '' ? [] : [%s])", k, msg)
	for j, p := range c.t.Parameters {
		if p.Required {
			out += fmt.Sprintf(" + (!variables.%s ? [%s] : [])", c.pv(j, "_set"), celf(inject.DenyNeedsParameter, c.t.Name, p.Name, p.Description, inject.ParameterAnnotation(c.t.Name, p.Name)))
		}
	}
	return "(" + out + ")"
}

func prepend(sep string, list []string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = sep + s
	}
	return out
}

// ports are the ports the template's containers declare and its local
// ports, as CEL strings "<port>/<protocol>", each with the container that
// claims it, in the order the engine claims them.
func (c *compiled) ports() (keys, owners []string) {
	all := slices.Concat(c.content.InitContainers, c.content.Containers)
	for _, ctr := range all {
		for _, p := range ctr.Ports {
			proto := p.Protocol
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			keys, owners = append(keys, lit(fmt.Sprintf("%d/%s", p.ContainerPort, proto))), append(owners, ctr.Name)
		}
	}
	for _, lp := range c.content.LocalPorts {
		keys, owners = append(keys, splice(lp, c.param)+" + '/TCP'"), append(owners, all[len(all)-1].Name)
	}
	return keys, owners
}

func (c *compiled) hostNetworkError() string {
	keys, _ := c.ports()
	if len(keys) == 0 || c.t.HostNetwork == "allowed" {
		return "[]"
	}
	var ports []string
	for _, k := range keys {
		ports = append(ports, fmt.Sprintf("%s.split('/')[0]", k))
	}
	return fmt.Sprintf("(variables.hostNet ? [%s + [%s].join(' ') + %s] : [])", lit(fmt.Sprintf("template %q: the Pod runs on the host's network, where the template's ports [", c.t.Name)), strings.Join(ports, ", "),
		lit("] would be ports of every node it lands on; run the Pod off the host network, or have the cluster admin set hostNetwork: allowed on the template"))
}
