// Package manifest reads Kubernetes manifests: multi-document YAML (JSON
// is YAML too) split into JSON documents, and the head every object
// starts with. The catalog, the offline tools and the tests read their
// input through it.
package manifest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
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
