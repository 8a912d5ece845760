package catalog

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

var placeholder = regexp.MustCompile(`\{\{([^{}]*)\}\}`)

// allowedCapabilities are the only ones the Pod Security "restricted" level
// lets a container add.
var allowedCapabilities = []corev1.Capability{"NET_BIND_SERVICE"}

func validateDocument(d *Document, seen map[string]string, source string) field.ErrorList {
	var errs field.ErrorList
	if d.APIVersion != APIVersion {
		errs = append(errs, field.NotSupported(field.NewPath("apiVersion"), d.APIVersion, []string{APIVersion}))
	}
	if d.Kind != Kind {
		errs = append(errs, field.NotSupported(field.NewPath("kind"), d.Kind, []string{Kind}))
	}
	if d.Defaults != nil && d.Defaults.Resources != nil {
		errs = append(errs, validateResources(*d.Defaults.Resources, field.NewPath("defaults", "resources"))...)
	}
	for i, t := range d.Templates {
		p := field.NewPath("templates").Index(i)
		if t == nil {
			errs = append(errs, field.Required(p, "empty template"))
			continue
		}
		if prev, dup := seen[t.Name]; dup && t.Name != "" {
			errs = append(errs, field.Duplicate(p.Child("name"), fmt.Sprintf("%s (first defined in %s)", t.Name, prev)))
		} else {
			seen[t.Name] = source
		}
		errs = append(errs, validateTemplate(t, p)...)
	}
	for i, pol := range d.Policies {
		p := field.NewPath("policies").Index(i)
		if pol == nil {
			errs = append(errs, field.Required(p, "empty policy"))
			continue
		}
		if pol.Name == "" {
			errs = append(errs, field.Required(p.Child("name"), ""))
		}
		if pol.NamespaceSelector == nil {
			errs = append(errs, field.Required(p.Child("namespaceSelector"), "use {} to match every namespace"))
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(pol.NamespaceSelector)
		if err != nil {
			errs = append(errs, field.Invalid(p.Child("namespaceSelector"), pol.NamespaceSelector, err.Error()))
			continue
		}
		pol.selector = sel
	}
	return errs
}

func validatePolicyRefs(d *Document, c *Catalog) field.ErrorList {
	var errs field.ErrorList
	for i, pol := range d.Policies {
		if pol == nil {
			continue
		}
		p := field.NewPath("policies").Index(i)
		for j, name := range pol.Allowed {
			if c.templates[name] == nil {
				errs = append(errs, field.NotFound(p.Child("allowed").Index(j), name))
			}
		}
		for _, list := range []struct {
			field string
			names []string
		}{{"defaults", pol.Defaults}, {"required", pol.Required}} {
			for j, name := range list.names {
				if c.templates[name] == nil {
					errs = append(errs, field.NotFound(p.Child(list.field).Index(j), name))
				} else if len(pol.Allowed) > 0 && !slices.Contains(pol.Allowed, name) {
					errs = append(errs, field.Invalid(p.Child(list.field).Index(j), name, "must also be allowed by the same policy"))
				}
			}
		}
	}
	return errs
}

// validateOverlaps refuses a template that one policy requires and
// another, which can match the same namespace, does not allow: no
// namespace could satisfy both.
func validateOverlaps(policies []*Policy) field.ErrorList {
	var errs field.ErrorList
	for _, req := range policies {
		for _, other := range policies {
			if req == nil || other == nil || req == other || len(other.Allowed) == 0 || req.selector == nil || other.selector == nil || !canOverlap(req.selector, other.selector) {
				continue
			}
			for j, name := range req.Required {
				if !slices.Contains(other.Allowed, name) {
					errs = append(errs, field.Invalid(field.NewPath("policies").Key(req.Name).Child("required").Index(j), name,
						fmt.Sprintf("policy %q requires it, but policy %q, which can match the same namespaces, does not allow it", req.Name, other.Name)))
				}
			}
		}
	}
	return errs
}

// canOverlap reports whether some label set could match both selectors:
// false only when a key's requirements contradict each other.
func canOverlap(a, b labels.Selector) bool {
	ra, _ := a.Requirements()
	rb, _ := b.Requirements()
	for _, x := range ra {
		for _, y := range rb {
			if x.Key() == y.Key() && (contradict(x, y) || contradict(y, x)) {
				return false
			}
		}
	}
	return true
}

// contradict reports whether no value of the key satisfies both x and y.
func contradict(x, y labels.Requirement) bool {
	in := func(r labels.Requirement) bool {
		op := r.Operator()
		return op == selection.In || op == selection.Equals || op == selection.DoubleEquals
	}
	notIn := func(r labels.Requirement) bool {
		return r.Operator() == selection.NotIn || r.Operator() == selection.NotEquals
	}
	switch {
	case in(x) && in(y):
		return !x.Values().HasAny(y.Values().UnsortedList()...)
	case in(x) && notIn(y):
		return y.Values().IsSuperset(x.Values())
	case (in(x) || x.Operator() == selection.Exists) && y.Operator() == selection.DoesNotExist:
		return true
	}
	return false
}

func validateTemplate(t *Template, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, dnsLabel(t.Name, p.Child("name"))...)
	if !slices.Contains(Patterns, t.Pattern) {
		errs = append(errs, field.NotSupported(p.Child("pattern"), t.Pattern, Patterns))
	}
	if t.Description == "" {
		errs = append(errs, field.Required(p.Child("description"), "say what it does to a Pod"))
	}
	if len(t.Containers)+len(t.InitContainers) == 0 {
		errs = append(errs, field.Required(p.Child("containers"), "a template injects at least one container"))
	}
	errs = append(errs, validateLifecycle(t, p)...)
	if t.HostNetwork != "" && t.HostNetwork != "allowed" {
		errs = append(errs, field.NotSupported(p.Child("hostNetwork"), t.HostNetwork, []string{"allowed"}))
	}
	params, perrs := validateParameters(t.Parameters, p.Child("parameters"))
	volumes, verrs := validateVolumes(t.Volumes, p.Child("volumes"))
	errs = append(append(errs, perrs...), verrs...)
	errs = append(errs, validateContainers(t, p, volumes)...)
	errs = append(errs, validateAppAdditions(t, p, volumes)...)
	errs = append(errs, validatePlaceholders(t, params, p)...)
	return append(errs, validateOverrides(t.Overrides, p.Child("overrides", "resources"))...)
}

// validateVolumes checks the template's volumes; it returns their names.
func validateVolumes(vs []corev1.Volume, p *field.Path) (map[string]bool, field.ErrorList) {
	var errs field.ErrorList
	names := map[string]bool{}
	for i, v := range vs {
		vp := p.Index(i)
		errs = append(errs, dnsLabel(v.Name, vp.Child("name"))...)
		if names[v.Name] {
			errs = append(errs, field.Duplicate(vp.Child("name"), v.Name))
		}
		names[v.Name] = true
		if strings.HasPrefix(v.Name, "kube-api-access-") {
			errs = append(errs, field.Invalid(vp.Child("name"), v.Name, "kube-api-access- names the API server's service account token volume"))
		}
		if v.HostPath != nil {
			errs = append(errs, field.Forbidden(vp.Child("hostPath"), "host paths break Pod Security restricted; use an emptyDir"))
		}
	}
	return names, errs
}

// validateContainers checks every container, names unique across init
// containers and containers.
func validateContainers(t *Template, p *field.Path, volumes map[string]bool) field.ErrorList {
	var errs field.ErrorList
	names := map[string]bool{}
	for _, list := range []struct {
		name string
		cs   []corev1.Container
	}{{"initContainers", t.InitContainers}, {"containers", t.Containers}} {
		for i := range list.cs {
			cp := p.Child(list.name).Index(i)
			c := &list.cs[i]
			errs = append(errs, dnsLabel(c.Name, cp.Child("name"))...)
			if names[c.Name] {
				errs = append(errs, field.Duplicate(cp.Child("name"), c.Name))
			}
			names[c.Name] = true
			errs = append(errs, validateContainer(c, cp, volumes)...)
		}
	}
	return errs
}

// validateAppAdditions checks the mounts and env the app containers get.
func validateAppAdditions(t *Template, p *field.Path, volumes map[string]bool) field.ErrorList {
	var errs field.ErrorList
	for i, m := range t.AppVolumeMounts {
		mp := p.Child("appVolumeMounts").Index(i)
		if !volumes[m.Name] {
			errs = append(errs, field.NotFound(mp.Child("name"), m.Name))
		}
		if m.MountPath == "" {
			errs = append(errs, field.Required(mp.Child("mountPath"), ""))
		}
	}
	for i, e := range t.AppEnv {
		if e.Name == "" {
			errs = append(errs, field.Required(p.Child("appEnv").Index(i).Child("name"), ""))
		}
	}
	return errs
}

// validateOverrides checks the bounds of the resource overrides a
// template opens: cpu and memory only, min not above max.
func validateOverrides(o *Overrides, p *field.Path) field.ErrorList {
	if o == nil || o.Resources == nil {
		return nil
	}
	var errs field.ErrorList
	for _, list := range []struct {
		field  string
		bounds map[corev1.ResourceName]Bounds
	}{{"requests", o.Resources.Requests}, {"limits", o.Resources.Limits}} {
		for name, b := range list.bounds {
			bp := p.Child(list.field).Key(string(name))
			if name != corev1.ResourceCPU && name != corev1.ResourceMemory {
				errs = append(errs, field.NotSupported(bp, name, []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory}))
			}
			for _, bound := range []struct {
				name string
				q    *resource.Quantity
			}{{"min", b.Min}, {"max", b.Max}} {
				if bound.q != nil && bound.q.Sign() < 0 {
					errs = append(errs, field.Invalid(bp.Child(bound.name), bound.q.String(), "must not be negative"))
				}
			}
			if b.Min != nil && b.Max != nil && b.Min.Cmp(*b.Max) > 0 {
				errs = append(errs, field.Invalid(bp.Child("min"), b.Min.String(), "must not exceed max "+b.Max.String()))
			}
		}
	}
	return errs
}

// validateLifecycle holds each container to what its mode allows, so a
// template cannot give a Pod the API server rejects: an init container
// runs to completion and takes no probes or lifecycle hooks; a container
// never sets restartPolicy (the engine makes it a native sidecar); a
// template that starts before the app is native and probes its startup;
// and no kubelet probe reaches a port bound to localhost only.
func validateLifecycle(t *Template, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i := range t.InitContainers {
		c, cp := &t.InitContainers[i], p.Child("initContainers").Index(i)
		for name, set := range map[string]bool{"livenessProbe": c.LivenessProbe != nil, "readinessProbe": c.ReadinessProbe != nil, "startupProbe": c.StartupProbe != nil, "lifecycle": c.Lifecycle != nil, "restartPolicy": c.RestartPolicy != nil} {
			if set {
				errs = append(errs, field.Forbidden(cp.Child(name), "an init container runs to completion before the app; put a long-running helper under containers (with nativeSidecar: true to start it first)"))
			}
		}
	}
	for i := range t.Containers {
		c, cp := &t.Containers[i], p.Child("containers").Index(i)
		if c.RestartPolicy != nil {
			errs = append(errs, field.Forbidden(cp.Child("restartPolicy"), "set nativeSidecar: true instead; the engine sets restartPolicy Always"))
		}
		if t.StartBeforeApp && c.StartupProbe == nil {
			errs = append(errs, field.Required(cp.Child("startupProbe"), "startBeforeApp: the app waits for this probe to succeed; use an exec probe for a port bound to localhost"))
		}
		for name, probe := range map[string]*corev1.Probe{"livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe, "startupProbe": c.StartupProbe} {
			if port, ok := networkPort(probe); ok && slices.Contains(t.LocalPorts, port) {
				errs = append(errs, field.Invalid(cp.Child(name), port, "the kubelet probes the Pod's IP, but this port is one of localPorts, bound to localhost only; use an exec probe that connects to 127.0.0.1"))
			}
		}
	}
	if t.StartBeforeApp && !t.NativeSidecar {
		errs = append(errs, field.Invalid(p.Child("startBeforeApp"), true, "needs nativeSidecar: true; only a native sidecar starts, and is probed, before the app"))
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() }) // maps above
	return errs
}

// networkPort is the port a probe connects to over the network, as text.
func networkPort(p *corev1.Probe) (string, bool) {
	switch {
	case p == nil:
		return "", false
	case p.TCPSocket != nil:
		return p.TCPSocket.Port.String(), true
	case p.HTTPGet != nil:
		return p.HTTPGet.Port.String(), true
	case p.GRPC != nil:
		return strconv.Itoa(int(p.GRPC.Port)), true
	}
	return "", false
}

// ReservedParameters are the annotation names of resource overrides,
// which no parameter may take.
var ReservedParameters = []string{"cpu-request", "cpu-limit", "memory-request", "memory-limit"}

func validateContainer(c *corev1.Container, p *field.Path, volumes map[string]bool) field.ErrorList {
	var errs field.ErrorList
	switch {
	case c.Image == "":
		errs = append(errs, field.Required(p.Child("image"), ""))
	case strings.Contains(c.Image, "{{"):
		errs = append(errs, field.Invalid(p.Child("image"), c.Image, "images take no placeholders: a Pod must not choose what runs"))
	}
	for i, m := range c.VolumeMounts {
		if !volumes[m.Name] {
			errs = append(errs, field.NotFound(p.Child("volumeMounts").Index(i).Child("name"), m.Name))
		}
	}
	errs = append(errs, validateResources(c.Resources, p.Child("resources"))...)
	sc := c.SecurityContext
	if sc == nil {
		return errs
	}
	sp := p.Child("securityContext")
	if sc.Privileged != nil && *sc.Privileged {
		errs = append(errs, field.Forbidden(sp.Child("privileged"), "injected containers are never privileged"))
	}
	if sc.AllowPrivilegeEscalation != nil && *sc.AllowPrivilegeEscalation {
		errs = append(errs, field.Forbidden(sp.Child("allowPrivilegeEscalation"), "must be false or unset"))
	}
	if sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot {
		errs = append(errs, field.Forbidden(sp.Child("runAsNonRoot"), "must be true or unset"))
	}
	if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
		errs = append(errs, field.Forbidden(sp.Child("runAsUser"), "injected containers never run as root"))
	}
	if sc.Capabilities != nil {
		for i, capability := range sc.Capabilities.Add {
			if !slices.Contains(allowedCapabilities, capability) {
				errs = append(errs, field.NotSupported(sp.Child("capabilities", "add").Index(i), capability, allowedCapabilities))
			}
		}
	}
	if sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeUnconfined {
		errs = append(errs, field.Forbidden(sp.Child("seccompProfile", "type"), "use RuntimeDefault or Localhost"))
	}
	return errs
}

func validateResources(r corev1.ResourceRequirements, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for name, limit := range r.Limits {
		if req, ok := r.Requests[name]; ok && req.Cmp(limit) > 0 {
			errs = append(errs, field.Invalid(p.Child("requests").Key(string(name)), req.String(), "must not exceed the limit "+limit.String()))
		}
	}
	return errs
}

func validatePlaceholders(t *Template, params map[string]bool, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, s := range templateStrings(t) {
		for _, m := range placeholder.FindAllStringSubmatch(s, -1) {
			if !params[m[1]] {
				errs = append(errs, field.Invalid(p, m[0], fmt.Sprintf("placeholder names no parameter; have %v", t.ParameterNames())))
			}
		}
	}
	return errs
}

func dnsLabel(name string, p *field.Path) field.ErrorList {
	if name == "" {
		return field.ErrorList{field.Required(p, "")}
	}
	var errs field.ErrorList
	for _, msg := range validation.IsDNS1123Label(name) {
		errs = append(errs, field.Invalid(p, name, msg))
	}
	return errs
}

// withBuiltinResources fills in the requests and limits an admin left out.
func withBuiltinResources(r corev1.ResourceRequirements) corev1.ResourceRequirements {
	builtin := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
	}
	if r.Requests == nil {
		r.Requests = corev1.ResourceList{}
	}
	if r.Limits == nil {
		r.Limits = corev1.ResourceList{}
	}
	for name, q := range builtin.Requests {
		if _, ok := r.Requests[name]; !ok {
			r.Requests[name] = q
		}
	}
	for name, q := range builtin.Limits {
		if _, ok := r.Limits[name]; !ok {
			r.Limits[name] = q
		}
	}
	return r
}

// templateStrings returns every string field of the template's content.
func templateStrings(t *Template) []string {
	var out []string
	walkStrings(reflect.ValueOf(&t.Content), func(s string) string { out = append(out, s); return s })
	return out
}
