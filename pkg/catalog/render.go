package catalog

import (
	"reflect"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Content is what a template adds to a Pod, with parameters substituted.
type Content struct {
	InitContainers   []corev1.Container            `json:"initContainers,omitempty"`
	Containers       []corev1.Container            `json:"containers,omitempty"`
	Volumes          []corev1.Volume               `json:"volumes,omitempty"`
	AppVolumeMounts  []corev1.VolumeMount          `json:"appVolumeMounts,omitempty"`
	AppEnv           []corev1.EnvVar               `json:"appEnv,omitempty"`
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`
	LocalPorts       []string                      `json:"localPorts,omitempty"`
}

func (t *Template) content() *Content {
	return &Content{
		InitContainers:   t.InitContainers,
		Containers:       t.Containers,
		Volumes:          t.Volumes,
		AppVolumeMounts:  t.AppVolumeMounts,
		AppEnv:           t.AppEnv,
		ImagePullSecrets: t.ImagePullSecrets,
		LocalPorts:       t.LocalPorts,
	}
}

// prepare indexes parameters and notes whether rendering needs the
// reflective substitution at all; it runs once per catalog version.
func (t *Template) prepare() {
	t.params = make(map[string]*Parameter, len(t.Parameters))
	for i := range t.Parameters {
		t.params[t.Parameters[i].Name] = &t.Parameters[i]
	}
	for _, s := range templateStrings(t) {
		if placeholder.MatchString(s) {
			t.hasPlaceRef = true
			return
		}
	}
}

// Render returns a deep copy of the template's content with every
// {{name}} placeholder in a string field replaced by values[name]. Values
// must already have passed validation; the YAML text is never templated, so
// a value can change a string but never the structure.
func (t *Template) Render(values map[string]string) *Content {
	c := t.content()
	out := &Content{
		InitContainers:   copyContainers(c.InitContainers),
		Containers:       copyContainers(c.Containers),
		Volumes:          make([]corev1.Volume, len(c.Volumes)),
		AppVolumeMounts:  make([]corev1.VolumeMount, len(c.AppVolumeMounts)),
		AppEnv:           make([]corev1.EnvVar, len(c.AppEnv)),
		ImagePullSecrets: append([]corev1.LocalObjectReference(nil), c.ImagePullSecrets...),
		LocalPorts:       append([]string(nil), c.LocalPorts...),
	}
	for i := range c.Volumes {
		c.Volumes[i].DeepCopyInto(&out.Volumes[i])
	}
	for i := range c.AppVolumeMounts {
		c.AppVolumeMounts[i].DeepCopyInto(&out.AppVolumeMounts[i])
	}
	for i := range c.AppEnv {
		c.AppEnv[i].DeepCopyInto(&out.AppEnv[i])
	}
	if !t.hasPlaceRef {
		return out
	}
	pairs := make([]string, 0, 2*len(values))
	for name, v := range values {
		pairs = append(pairs, "{{"+name+"}}", v)
	}
	r := strings.NewReplacer(pairs...)
	walkStrings(reflect.ValueOf(out), func(s string) string {
		if !strings.Contains(s, "{{") {
			return s
		}
		return r.Replace(s)
	})
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
