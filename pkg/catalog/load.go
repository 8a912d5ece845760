package catalog

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/podpatterns/sidecar-injector/pkg/manifest"
)

//go:embed default.yaml
var defaultCatalog []byte

// DefaultYAML returns the text of the embedded default catalog.
func DefaultYAML() []byte { return bytes.Clone(defaultCatalog) }

// Default returns the embedded default catalog. It is validated by the
// tests, so an error here is a build defect.
func Default() (*Catalog, error) {
	return Parse(Source{Name: "default.yaml", Data: defaultCatalog})
}

// LoadOrDefault loads the catalog at path, or the embedded default when
// path is empty: what every command's --catalog means.
func LoadOrDefault(path string) (*Catalog, error) {
	if path == "" {
		return Default()
	}
	return Load(path)
}

// Describe names the catalog at path as logs and reports show it.
func Describe(path string) string {
	if path == "" {
		return "embedded default catalog"
	}
	return path
}

// The ConfigMap the cluster's injector serves its catalog from, as
// deploy/base installs it.
const (
	ConfigMapNamespace = "sidecar-injector"
	ConfigMapName      = "sidecar-injector-catalog"
)

// ParseConfigMap parses a catalog ConfigMap's data: its *.yaml and *.yml
// keys in name order, as the mounted directory reads them.
func ParseConfigMap(data map[string]string) (*Catalog, error) {
	var sources []Source
	for _, key := range slices.Sorted(maps.Keys(data)) {
		if strings.HasSuffix(key, ".yaml") || strings.HasSuffix(key, ".yml") {
			sources = append(sources, Source{Name: key, Data: []byte(data[key])})
		}
	}
	return Parse(sources...)
}

// Source is one named piece of catalog YAML; the name prefixes its errors.
type Source struct {
	Name string
	Data []byte
}

// Load reads a catalog from a file, or from every *.yaml and *.yml file of
// a directory. Names starting with a dot are skipped, so a mounted
// ConfigMap's ..data and timestamped directories are read once, through
// the key symlinks.
func Load(path string) (*Catalog, error) {
	sources, err := ReadSources(path)
	if err != nil {
		return nil, err
	}
	return Parse(sources...)
}

// ReadSources reads the catalog files at path without parsing them.
func ReadSources(path string) ([]Source, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading catalog: %w", err)
	}
	if !info.IsDir() {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading catalog: %w", err)
		}
		return []Source{{Name: path, Data: data}}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("reading catalog directory: %w", err)
	}
	var sources []Source
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
			continue
		}
		file := filepath.Join(path, name)
		data, err := os.ReadFile(file) // follows the ConfigMap's symlinks
		if err != nil {
			return nil, fmt.Errorf("reading catalog: %w", err)
		}
		sources = append(sources, Source{Name: file, Data: data})
	}
	if len(sources) == 0 {
		return nil, fmt.Errorf("catalog directory %s holds no *.yaml files", path)
	}
	return sources, nil
}

// Parse decodes, merges and validates catalog sources. Each source may hold
// several YAML documents. All problems are reported together.
func Parse(sources ...Source) (*Catalog, error) {
	var docs []namedDoc
	var errs []error
	for _, src := range sources {
		ds, err := decode(src)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		docs = append(docs, ds...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(docs) == 0 {
		return nil, errors.New("catalog is empty")
	}
	return build(docs)
}

type namedDoc struct {
	source string
	doc    *Document
}

func decode(src Source) ([]namedDoc, error) {
	docs, err := manifest.Split(bytes.NewReader(src.Data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src.Name, err)
	}
	var out []namedDoc
	for _, d := range docs {
		if err := valuesAreText(d.JSON); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", src.Name, d.Index, err)
		}
		doc := &Document{}
		if err := yaml.UnmarshalStrict(d.JSON, doc); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", src.Name, d.Index, err)
		}
		out = append(out, namedDoc{source: fmt.Sprintf("%s (document %d)", src.Name, d.Index), doc: doc})
	}
	return out, nil
}

// valuesAreText refuses a label value in a policy's selector, or a
// parameter's default, that YAML read as a boolean or a number: `env:
// yes` would otherwise become "true" and never match a namespace
// labelled env=yes (kubectl refuses them too), and `default: 1.10` would
// become "1.1", `0755` "493".
func valuesAreText(doc []byte) error {
	var d struct {
		Templates []struct {
			Parameters []struct {
				Default any `json:"default"`
			} `json:"parameters"`
		} `json:"templates"`
		Policies []struct {
			NamespaceSelector *struct {
				MatchLabels      map[string]any `json:"matchLabels"`
				MatchExpressions []struct {
					Values []any `json:"values"`
				} `json:"matchExpressions"`
			} `json:"namespaceSelector"`
		} `json:"policies"`
	}
	if json.Unmarshal(doc, &d) != nil {
		return nil // the strict decode says what is wrong
	}
	var errs []error
	for i, t := range d.Templates {
		for j, p := range t.Parameters {
			if p.Default != nil && !isText(p.Default) {
				errs = append(errs, fmt.Errorf("templates[%d].parameters[%d].default: %v is not text: YAML reads unquoted numbers, yes, no, on, off, true and false as other types and changes them (1.10 is 1.1, 0755 is 493); quote the value", i, j, p.Default))
			}
		}
	}
	for i, p := range d.Policies {
		if p.NamespaceSelector == nil {
			continue
		}
		at := fmt.Sprintf("policies[%d].namespaceSelector", i)
		for _, k := range slices.Sorted(maps.Keys(p.NamespaceSelector.MatchLabels)) {
			if v := p.NamespaceSelector.MatchLabels[k]; !isText(v) {
				errs = append(errs, fmt.Errorf("%s.matchLabels.%s: %v is not text: YAML reads unquoted yes, no, on, off, true, false and numbers as other types; quote the value", at, k, v))
			}
		}
		for j, e := range p.NamespaceSelector.MatchExpressions {
			for k, v := range e.Values {
				if !isText(v) {
					errs = append(errs, fmt.Errorf("%s.matchExpressions[%d].values[%d]: %v is not text; quote the value", at, j, k, v))
				}
			}
		}
	}
	return errors.Join(errs...)
}

func isText(v any) bool {
	_, ok := v.(string)
	return ok
}

// merge puts the documents' templates, policies and defaults into one
// catalog, each document validated on its own and against the others:
// a template name, a policy name and the defaults are set once.
func merge(docs []namedDoc) (*Catalog, []error) {
	c := &Catalog{templates: map[string]*Template{}}
	var errs []error
	seen := map[string]string{}
	var defaultsFrom string           // the document that set defaults.resources
	policyFrom := map[string]string{} // policy name -> its document
	for _, nd := range docs {
		for _, e := range validateDocument(nd.doc, seen, nd.source) {
			errs = append(errs, fmt.Errorf("%s: %s", nd.source, e))
		}
		for _, t := range nd.doc.Templates {
			if t != nil && t.Name != "" && c.templates[t.Name] == nil {
				c.templates[t.Name] = t
				c.names = append(c.names, t.Name)
			}
		}
		c.policies = append(c.policies, nd.doc.Policies...)
		if nd.doc.Defaults != nil && nd.doc.Defaults.Resources != nil {
			if defaultsFrom != "" {
				errs = append(errs, fmt.Errorf("%s: defaults.resources: Duplicate value: set in %s already; one document of a catalog sets the defaults", nd.source, defaultsFrom))
			}
			defaultsFrom = nd.source
			c.defaults = *nd.doc.Defaults.Resources.DeepCopy()
		}
		for i, p := range nd.doc.Policies {
			if where, dup := policyFrom[p.Name]; dup && p.Name != "" {
				errs = append(errs, fmt.Errorf("%s: policies[%d].name: Duplicate value: %q, a policy of %s", nd.source, i, p.Name, where))
			}
			policyFrom[p.Name] = nd.source
		}
	}
	return c, errs
}

func build(docs []namedDoc) (*Catalog, error) {
	c, errs := merge(docs)
	for i, nd := range docs {
		for _, e := range validatePolicyRefs(nd.doc, c) {
			errs = append(errs, fmt.Errorf("%s: %s", docs[i].source, e))
		}
	}
	for _, e := range validateOverlaps(c.policies) {
		errs = append(errs, e)
	}
	if slices.ContainsFunc(docs, func(nd namedDoc) bool { return nd.doc.RequireDigests }) {
		for _, img := range c.Images() {
			if !img.Pinned() {
				errs = append(errs, fmt.Errorf("%s: Invalid value: %q: requireDigests is set: pin it by digest (sidecar-injector catalog pin)", img.Path, img.Ref))
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	sort.Strings(c.names)
	c.defaults = withBuiltinResources(c.defaults)
	for _, t := range c.templates {
		t.prepare(c.defaults)
	}
	if errs := validateRenderings(c); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	sum := sha256.New()
	for _, nd := range docs {
		b, _ := json.Marshal(nd.doc) // Document always marshals
		sum.Write(b)
	}
	c.Version = hex.EncodeToString(sum.Sum(nil))[:16]
	return c, nil
}
