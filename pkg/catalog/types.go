package catalog

import (
	"regexp"

	corev1 "k8s.io/api/core/v1"
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
	APIVersion string      `json:"apiVersion"`
	Kind       string      `json:"kind"`
	Defaults   *Defaults   `json:"defaults,omitempty"`
	Templates  []*Template `json:"templates,omitempty"`
	Policies   []*Policy   `json:"policies,omitempty"`
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
	// RunAsAppUser runs the injected containers with the runAsUser and
	// runAsGroup of the first target app container (or of the Pod), so a
	// reader can read what the app wrote to a shared volume.
	RunAsAppUser bool `json:"runAsAppUser,omitempty"`

	Parameters []Parameter `json:"parameters,omitempty"`

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
	Default     string `json:"default,omitempty"`
	Required    bool   `json:"required,omitempty"`
	// Validation is a regular expression the whole value must match.
	// Defaulted to printable text with no braces if unspecified.
	Validation string `json:"validation,omitempty"`

	re *regexp.Regexp
}

// Policy maps namespaces, by their labels, to the templates allowed there
// and the templates injected when a Pod asks for none.
type Policy struct {
	Name              string                `json:"name"`
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector"`
	// Allowed lists the templates Pods may request; empty allows all.
	Allowed []string `json:"allowed,omitempty"`
	// Defaults are injected into Pods that have no inject annotation.
	Defaults []string `json:"defaults,omitempty"`

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

// DefaultResources are the resources given to containers that leave them open.
func (c *Catalog) DefaultResources() corev1.ResourceRequirements { return c.defaults }

// ParameterNames lists t's parameter names in declaration order.
func (t *Template) ParameterNames() []string {
	names := make([]string, len(t.Parameters))
	for i := range t.Parameters {
		names[i] = t.Parameters[i].Name
	}
	return names
}

// Valid reports whether value passes the parameter's validation.
func (p *Parameter) Valid(value string) bool { return p.re.MatchString(value) }

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

// AllPolicies returns every policy in catalog order.
func (c *Catalog) AllPolicies() []*Policy { return c.policies }
