package catalog

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
)

// Content is what a template adds to a Pod, with parameters substituted
// and every container given resources and a restricted security context
// where the template leaves them open. Content returned by Render is
// shared between requests: read it, never modify it.
type Content struct {
	InitContainers   []corev1.Container            `json:"initContainers,omitempty"`
	Containers       []corev1.Container            `json:"containers,omitempty"`
	Volumes          []corev1.Volume               `json:"volumes,omitempty"`
	AppVolumeMounts  []corev1.VolumeMount          `json:"appVolumeMounts,omitempty"`
	AppEnv           []corev1.EnvVar               `json:"appEnv,omitempty"`
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`
	// LocalPorts are ports the containers listen on without declaring
	// them, such as an ambassador bound to localhost; they may hold
	// placeholders. They count in the Pod's port conflict check.
	LocalPorts []string `json:"localPorts,omitempty"`
	// Hash identifies this content: it changes when anything in it does.
	Hash string `json:"-"`
}

// renderCacheSize bounds the rendered variants kept per template; values
// beyond it are rendered per request.
const renderCacheSize = 256

// renderCache holds a template's rendered content by parameter values.
type renderCache struct {
	mu      sync.Mutex
	entries map[string]*Content // values key -> content
}

func (c *renderCache) load(key string) *Content {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entries[key]
}

// store keeps content under key unless the cache is full, and returns
// the content kept under key, which an earlier store may have set.
func (c *renderCache) store(key string, content *Content) *Content {
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.entries[key]; ok {
		return prev
	}
	if len(c.entries) < renderCacheSize {
		c.entries[key] = content
	}
	return content
}

// prepare readies a template once per catalog version; rendering then
// costs a map lookup for values seen before.
func (t *Template) prepare(defaults corev1.ResourceRequirements) {
	t.defaults = defaults
	t.cache = &renderCache{entries: map[string]*Content{}}
}

// Values are a template's parameter values by parameter name; a
// parameter without one takes its default.
type Values map[string]string

// Render returns the template's content with every {{name}} placeholder
// in a string field replaced by the parameter's value. Values must
// already have passed validation; the YAML text is never templated, so a
// value can change a string but never the structure. The result is
// shared.
func (t *Template) Render(values Values) *Content {
	resolved := make([]string, len(t.Parameters))
	for i, p := range t.Parameters {
		v, ok := values[p.Name]
		if !ok {
			v = p.Default
		}
		resolved[i] = v
	}
	// The key is the values in parameter order, each after its length: a
	// parameter's own validation may allow any byte, so no separator is
	// safe.
	var key []byte
	for _, v := range resolved {
		key = append(binary.AppendUvarint(key, uint64(len(v))), v...)
	}
	if c := t.cache.load(string(key)); c != nil {
		return c
	}
	return t.cache.store(string(key), t.render(resolved))
}

// render renders values, one per parameter in t.Parameters order.
func (t *Template) render(values []string) *Content {
	src := &t.Content
	out := &Content{
		InitContainers:   copyContainers(src.InitContainers),
		Containers:       copyContainers(src.Containers),
		Volumes:          make([]corev1.Volume, len(src.Volumes)),
		AppVolumeMounts:  make([]corev1.VolumeMount, len(src.AppVolumeMounts)),
		AppEnv:           make([]corev1.EnvVar, len(src.AppEnv)),
		ImagePullSecrets: slices.Clone(src.ImagePullSecrets),
		LocalPorts:       slices.Clone(src.LocalPorts),
	}
	for i := range src.Volumes {
		src.Volumes[i].DeepCopyInto(&out.Volumes[i])
	}
	for i := range src.AppVolumeMounts {
		src.AppVolumeMounts[i].DeepCopyInto(&out.AppVolumeMounts[i])
	}
	for i := range src.AppEnv {
		src.AppEnv[i].DeepCopyInto(&out.AppEnv[i])
	}
	if len(values) > 0 {
		pairs := make([]string, 0, 2*len(values))
		for i, p := range t.Parameters {
			pairs = append(pairs, "{{"+p.Name+"}}", values[i])
		}
		r := strings.NewReplacer(pairs...)
		walkStrings(reflect.ValueOf(out), func(s string) string {
			if !strings.Contains(s, "{{") {
				return s
			}
			return r.Replace(s)
		})
	}
	for _, group := range [][]corev1.Container{out.InitContainers, out.Containers} {
		for i := range group {
			withResources(&group[i], t.defaults)
			withSecurity(&group[i])
		}
	}
	data, _ := json.Marshal(out) // API types always marshal
	sum := sha256.Sum256(data)
	out.Hash = hex.EncodeToString(sum[:8])
	return out
}

func copyContainers(in []corev1.Container) []corev1.Container {
	if in == nil {
		return nil
	}
	out := make([]corev1.Container, len(in))
	for i := range in {
		in[i].DeepCopyInto(&out[i])
	}
	return out
}

// withSecurity fills in a restricted security context where the template
// leaves it open.
func withSecurity(c *corev1.Container) {
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

// walkStrings calls f on every settable string reachable from v through
// exported fields, pointers, slices and maps, and stores what f returns.
func walkStrings(v reflect.Value, f func(string) string) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			walkStrings(v.Elem(), f)
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				walkStrings(v.Field(i), f)
			}
		}
	case reflect.Slice, reflect.Array:
		for i := 0; i < v.Len(); i++ {
			walkStrings(v.Index(i), f)
		}
	case reflect.Map:
		iter := v.MapRange()
		for iter.Next() {
			val := reflect.New(iter.Value().Type()).Elem()
			val.Set(iter.Value())
			walkStrings(val, f)
			v.SetMapIndex(iter.Key(), val)
		}
	case reflect.String:
		s := f(v.String())
		if v.CanSet() && s != v.String() {
			v.SetString(s)
		}
	}
}
