package catalog

import (
	"fmt"
	"regexp"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// APIVersion and Kind identify a catalog document.
const (
	APIVersion = "sidecars.podpatterns.io/v1alpha1"
	Kind       = "Catalog"
)

// Pattern is one of the three multi-container patterns.
type Pattern string

// The patterns a template can implement.
const (
	Sidecar    Pattern = "sidecar"
	Ambassador Pattern = "ambassador"
	Adapter    Pattern = "adapter"
)

// Patterns lists the valid patterns, for error messages.
var Patterns = []Pattern{Sidecar, Ambassador, Adapter}

// Document is one catalog file as written by an admin.
type Document struct {
	APIVersion string    `json:"apiVersion"`
	Kind       string    `json:"kind"`
	Defaults   *Defaults `json:"defaults,omitempty"`
	// RequireDigests refuses any image not pinned by digest
	// (name@sha256:...), so a retagged image cannot change what runs.
	RequireDigests bool        `json:"requireDigests,omitempty"`
	Templates      []*Template `json:"templates,omitempty"`
	Policies       []*Policy   `json:"policies,omitempty"`
}

// Defaults apply to every injected container that leaves them open.
type Defaults struct {
	// Resources fill in each request or limit a template container leaves
	// out. Defaulted to requests of 10m CPU and 32Mi memory and limits of
	// 200m CPU and 128Mi memory if unspecified.
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`
}

// Template is one vetted sidecar, ambassador or adapter.
type Template struct {
	Name        string  `json:"name"`
	Pattern     Pattern `json:"pattern"`
	Description string  `json:"description"`

	// NativeSidecar injects Containers as init containers with
	// restartPolicy Always (Kubernetes 1.29+): they start before the app
	// and never keep a finished Job's Pod alive.
	NativeSidecar bool `json:"nativeSidecar,omitempty"`
	// StartBeforeApp makes the app wait until the template is ready: each
	// of its containers, native sidecars, carries a startupProbe, and the
	// kubelet starts the app's containers only once those have succeeded.
	StartBeforeApp bool `json:"startBeforeApp,omitempty"`
	// RunAsAppUser runs the injected containers with the runAsUser and
	// runAsGroup of the first target app container (or of the Pod), so a
	// reader can read what the app wrote to a shared volume. Never as root
	// or as group 0: the template's own user or group is kept then.
	RunAsAppUser bool `json:"runAsAppUser,omitempty"`

	// HostNetwork "allowed" lets the template into a Pod on the host's
	// network, where its ports are ports of the node; by default such a
	// Pod is denied a template that declares ports or localPorts.
	HostNetwork string `json:"hostNetwork,omitempty"`

	// PodSecurity is the Pod Security level the template needs:
	// restricted (the default), baseline or privileged. A template is
	// checked against it at load, so a Pod that met restricted still
	// meets it after injection unless a template says otherwise here.
	PodSecurity string `json:"podSecurity,omitempty"`

	Parameters []Parameter `json:"parameters,omitempty"`

	// Overrides are what a Pod may change, within bounds, through
	// annotations; nothing else can be changed.
	Overrides *Overrides `json:"overrides,omitempty"`

	// Content is what the template adds, as the admin wrote it, with
	// {{name}} placeholders.
	Content `json:",inline"`

	defaults corev1.ResourceRequirements
	cache    *renderCache
}

// Parameter is a value a Pod may set through the annotation
// <template>.sidecars.podpatterns.io/<name>.
type Parameter struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Type gives the value a built-in check, run before Validation, and
	// a normal form. Defaulted to "string" if empty.
	Type     ParameterType `json:"type,omitempty"`
	Default  string        `json:"default,omitempty"`
	Required bool          `json:"required,omitempty"`
	// Validation is a regular expression the whole value must match. An
	// untyped parameter without one takes printable text without braces
	// or shell metacharacters.
	Validation string `json:"validation,omitempty"`

	re *regexp.Regexp
}

// Overrides open parts of a template to the Pods that use it.
type Overrides struct {
	// Resources open the requests and limits of every container of the
	// template, set by the annotations <template>.sidecars.podpatterns.io/
	// cpu-request, cpu-limit, memory-request and memory-limit.
	Resources *ResourceOverrides `json:"resources,omitempty"`
}

// ResourceOverrides bound each request and limit a Pod may set, by
// resource (cpu, memory); a resource absent here cannot be set.
type ResourceOverrides struct {
	Requests map[corev1.ResourceName]Bounds `json:"requests,omitempty"`
	Limits   map[corev1.ResourceName]Bounds `json:"limits,omitempty"`
}

// Bounds are inclusive; an absent one does not bound.
type Bounds struct {
	Min *resource.Quantity `json:"min,omitempty"`
	Max *resource.Quantity `json:"max,omitempty"`
}

// Policy maps namespaces, by their labels, to the templates allowed there,
// the templates injected when a Pod asks for none, and the templates
// injected into every Pod whatever it asks.
type Policy struct {
	Name              string                `json:"name"`
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector"`
	// Allowed lists the templates Pods may request; empty allows all.
	Allowed []string `json:"allowed,omitempty"`
	// Defaults are injected into Pods that have no inject annotation;
	// "none" opts a Pod out of them.
	Defaults []string `json:"defaults,omitempty"`
	// Required are injected into every Pod, whatever it asks: "none", other
	// templates, nothing, or the opt-out label.
	Required []string `json:"required,omitempty"`

	selector labels.Selector
}

// Catalog is a validated, merged set of documents ready for the engine.
// It is immutable once loaded and safe for concurrent use.
type Catalog struct {
	templates map[string]*Template
	names     []string
	policies  []*Policy
	defaults  corev1.ResourceRequirements
	// Version is a hash of the catalog content; it changes when any
	// template or policy does.
	Version string
}

// Template returns the named template, or nil.
func (c *Catalog) Template(name string) *Template { return c.templates[name] }

// Names lists the template names in sorted order.
func (c *Catalog) Names() []string { return c.names }

// AllPolicies returns every policy, in catalog order.
func (c *Catalog) AllPolicies() []*Policy { return c.policies }

// Images lists every image of every template, with its path in the
// catalog ("templates[log-shipper].containers[0].image"), in name order.
func (c *Catalog) Images() []Image {
	var out []Image
	for _, name := range c.names {
		t := c.templates[name]
		for _, list := range []struct {
			field string
			cs    []corev1.Container
		}{{"initContainers", t.InitContainers}, {"containers", t.Containers}} {
			for i, ctr := range list.cs {
				out = append(out, Image{Path: fmt.Sprintf("templates[%s].%s[%d].image", name, list.field, i), Ref: ctr.Image})
			}
		}
	}
	return out
}

// Image is one image reference of a catalog.
type Image struct {
	Path string
	Ref  string
}

// Pinned reports whether the reference ends in a digest: "@sha256:" and
// 64 hex digits.
func (i Image) Pinned() bool { return digestRef.MatchString(i.Ref) }

var digestRef = regexp.MustCompile(`@sha256:[0-9a-f]{64}$`)

// ContainerNames lists the names of t's init containers, then of its
// containers.
func (t *Template) ContainerNames() []string {
	var names []string
	for _, c := range slices.Concat(t.InitContainers, t.Containers) {
		names = append(names, c.Name)
	}
	return names
}

// Parameter returns t's parameter of that name, or nil.
func (t *Template) Parameter(name string) *Parameter {
	for i := range t.Parameters {
		if t.Parameters[i].Name == name {
			return &t.Parameters[i]
		}
	}
	return nil
}

// ParameterNames lists t's parameter names in declaration order.
func (t *Template) ParameterNames() []string {
	names := make([]string, len(t.Parameters))
	for i := range t.Parameters {
		names[i] = t.Parameters[i].Name
	}
	return names
}

// Policies returns the policies whose selector matches the namespace labels,
// in catalog order.
func (c *Catalog) Policies(nsLabels map[string]string) []*Policy {
	var out []*Policy
	set := labels.Set(nsLabels)
	for _, p := range c.policies {
		if p.selector.Matches(set) {
			out = append(out, p)
		}
	}
	return out
}

// Applied is what every policy matching a namespace says together: a
// second policy never lifts a restriction of another.
type Applied struct {
	// Policies match the namespace, in catalog order.
	Policies []*Policy
	// Allowed is the intersection of the matching policies' non-empty
	// allow-lists, sorted; nil when none restricts (every template).
	Allowed []string
	// Defaults and Required are the unions, in catalog order.
	Defaults, Required []string
}

// Apply merges the policies that match the namespace labels.
func (c *Catalog) Apply(nsLabels map[string]string) Applied {
	a := Applied{Policies: c.Policies(nsLabels)}
	restricted := false
	for _, p := range a.Policies {
		a.Defaults = union(a.Defaults, p.Defaults)
		a.Required = union(a.Required, p.Required)
		if len(p.Allowed) == 0 {
			continue
		}
		if !restricted {
			a.Allowed, restricted = slices.Sorted(slices.Values(p.Allowed)), true
			continue
		}
		a.Allowed = slices.DeleteFunc(a.Allowed, func(n string) bool { return !slices.Contains(p.Allowed, n) })
	}
	if restricted && a.Allowed == nil {
		a.Allowed = []string{} // restricted to nothing
	}
	return a
}

// Allows reports whether the namespace may ask for the template.
func (a Applied) Allows(name string) bool {
	return a.Allowed == nil || slices.Contains(a.Allowed, name)
}

// Restricting names the matching policies with an allow-list that lacks
// the template.
func (a Applied) Restricting(name string) []string {
	var out []string
	for _, p := range a.Policies {
		if len(p.Allowed) > 0 && !slices.Contains(p.Allowed, name) {
			out = append(out, p.Name)
		}
	}
	return out
}

// Requiring names the matching policies that require the template.
func (a Applied) Requiring(name string) []string {
	var out []string
	for _, p := range a.Policies {
		if slices.Contains(p.Required, name) {
			out = append(out, p.Name)
		}
	}
	return out
}

func union(to, from []string) []string {
	for _, n := range from {
		if !slices.Contains(to, n) {
			to = append(to, n)
		}
	}
	return to
}

// Level is the Pod Security level the template needs.
func (t *Template) Level() string {
	if t.PodSecurity == "" {
		return "restricted"
	}
	return t.PodSecurity
}
