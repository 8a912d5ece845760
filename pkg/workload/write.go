package workload

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/pmezard/go-difflib/difflib"
	"sigs.k8s.io/yaml"

	"github.com/podpatterns/sidecar-injector/pkg/patch"
)

// Write prints each result as the inject command does, in format: yaml
// (documents separated by ---), json (indented), patch (the JSON Patch
// the server would send) or diff (a unified diff of the document from
// docs, the input, to the result).
func Write(w io.Writer, docs [][]byte, results []*Result, format string) error {
	for i, r := range results {
		switch {
		case format == "diff":
			before, _ := yaml.JSONToYAML(docs[i])
			after, _ := yaml.JSONToYAML(r.Out)
			text, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
				A: difflib.SplitLines(string(before)), B: difflib.SplitLines(string(after)),
				FromFile: "a/" + r.Name, ToFile: "b/" + r.Name, Context: 3,
			})
			if err != nil {
				return err
			}
			fmt.Fprint(w, text)
		case format == "patch":
			data, err := patch.Marshal(r.Patch)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "%s\n", data)
		case format == "json":
			var buf bytes.Buffer
			if err := json.Indent(&buf, r.Out, "", "  "); err != nil {
				return err
			}
			fmt.Fprintf(w, "%s\n", buf.Bytes())
		default:
			y, err := yaml.JSONToYAML(r.Out)
			if err != nil {
				return err
			}
			if i > 0 {
				fmt.Fprintln(w, "---")
			}
			fmt.Fprintf(w, "%s", y)
		}
	}
	return nil
}
