// Package manifest reads Kubernetes manifests: multi-document YAML (JSON
// is YAML too) split into JSON documents, and the head every object
// starts with. The catalog, the offline tools and the tests read their
// input through it.
package manifest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	yamlv3 "go.yaml.in/yaml/v3"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Document is one document of a stream, as JSON.
type Document struct {
	// Index counts from 1 among the documents of the stream, those that
	// hold only comments included (a "---" with nothing after it is not
	// a document).
	Index int
	JSON  []byte
}

// Split reads every document of r as JSON. Empty documents (nothing, or
// only comments) are skipped; one that is not an object is an error.
func Split(r io.Reader) ([]Document, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var docs []Document
	for i := 1; ; i++ {
		chunk, err := reader.Read()
		if err == io.EOF {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if err := expansionFits(chunk); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		j, err := yaml.YAMLToJSON(chunk)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		j = bytes.TrimSpace(j)
		if len(j) == 0 || string(j) == "null" {
			continue
		}
		if j[0] != '{' {
			return nil, fmt.Errorf("document %d is not an object", i)
		}
		docs = append(docs, Document{Index: i, JSON: j})
	}
}

// MaxExpansion caps how much larger YAML aliases may make a document
// than its text: a 100 KB string and 990 aliases to it would expand to
// 100 MB, in memory, before anything could check it.
const MaxExpansion = 4 << 20

// expansionFits refuses a document whose aliases expand it by more than
// MaxExpansion bytes, counted on the parsed tree without expanding it.
func expansionFits(chunk []byte) error {
	if !bytes.Contains(chunk, []byte("*")) {
		return nil // no alias
	}
	var root yamlv3.Node
	if err := yamlv3.Unmarshal(chunk, &root); err != nil {
		return nil // the conversion says what is wrong
	}
	sizes := map[*yamlv3.Node]int{}
	var size func(n *yamlv3.Node) int
	size = func(n *yamlv3.Node) int {
		if s, ok := sizes[n]; ok {
			return s
		}
		sizes[n] = 0 // a cycle adds nothing; the conversion refuses it
		s := len(n.Value) + 1
		if n.Kind == yamlv3.AliasNode && n.Alias != nil {
			s = size(n.Alias)
		}
		for _, c := range n.Content {
			s += size(c)
			if s > len(chunk)+MaxExpansion {
				break
			}
		}
		sizes[n] = s
		return s
	}
	if expanded := size(&root); expanded > len(chunk)+MaxExpansion {
		return fmt.Errorf("its aliases expand it to over %d bytes from %d; at most %d more are allowed", expanded, len(chunk), MaxExpansion)
	}
	return nil
}

// Head is what every Kubernetes object starts with.
type Head struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name         string `json:"name"`
		GenerateName string `json:"generateName"`
	} `json:"metadata"`
}

// ReadHead reads a JSON object's head as the API server would: member
// names are case-sensitive ("Kind" is not "kind").
func ReadHead(doc []byte) (Head, error) {
	var h Head
	if err := jsonv2.Unmarshal(doc, &h); err != nil {
		return Head{}, fmt.Errorf("not a Kubernetes object: %w", err)
	}
	return h, nil
}

// Name reads "Deployment web" for messages.
func (h Head) Name() string {
	return strings.TrimSpace(h.Kind + " " + h.Metadata.Name + h.Metadata.GenerateName)
}

// FieldError words a jsonv2 decode error for a person: the field as a
// path ("metadata.labels.team"), what it holds and what it must hold,
// with a hint to quote a YAML boolean or number where text is wanted.
// Other errors come back as they are.
func FieldError(err error) error {
	var se *jsonv2.SemanticError
	if !errors.As(err, &se) || se.GoType == nil {
		return err
	}
	field := fieldPath(string(se.JSONPointer))
	got := map[jsontext.Kind]string{'n': "null", 't': "a boolean", 'f': "a boolean", '"': "a string", '0': "a number", '{': "an object", '[': "an array"}[se.JSONKind]
	want := se.GoType.Kind().String()
	switch se.GoType.Kind() {
	case reflect.String:
		want = "a string"
	case reflect.Struct, reflect.Map, reflect.Pointer:
		want = "an object"
	case reflect.Slice:
		want = "a list"
	case reflect.Bool:
		want = "a boolean"
	case reflect.Int, reflect.Int32, reflect.Int64:
		want = "an integer"
	}
	if got == "" {
		return fmt.Errorf("%s: %v", field, se.Err)
	}
	msg := fmt.Sprintf("%s: %s, want %s", field, got, want)
	if want == "a string" && (got == "a boolean" || got == "a number") {
		msg += ` (quote it: in YAML, yes, no, on, off, true and 123 are not text)`
	}
	return errors.New(msg)
}

// fieldPath turns a JSON pointer into a field path: /spec/containers/0/name
// is spec.containers[0].name.
func fieldPath(pointer string) string {
	if pointer == "" {
		return "the document"
	}
	var b strings.Builder
	for _, tok := range strings.Split(strings.TrimPrefix(pointer, "/"), "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		if _, err := strconv.Atoi(tok); err == nil {
			b.WriteString("[" + tok + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
	}
	return b.String()
}
