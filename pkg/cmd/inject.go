package cmd

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/manifest"
	"github.com/podpatterns/sidecar-injector/pkg/workload"
)

type injectFlags struct {
	file     string
	catalog  string
	nsLabels map[string]string
	output   string
	diff     bool
}

func newInjectCommand() *cobra.Command {
	f := &injectFlags{output: "yaml"}
	cmd := &cobra.Command{
		Use:   "inject -f FILE|-",
		Short: "Inject templates into manifests offline, as the webhook would",
		Long: `Inject templates into manifests offline, as the webhook would.

Reads multi-document YAML or JSON: Pods, the pod templates of Deployments,
StatefulSets, DaemonSets, ReplicaSets, ReplicationControllers, Jobs and
CronJobs, and v1 Lists of them. Other kinds pass through unchanged and in order.

` + exitCodes("a document was denied"),
		Example: `  sidecar-injector inject -f app.yaml
  kubectl apply -f <(sidecar-injector inject -f app.yaml)
  sidecar-injector inject -f app.yaml --namespace-labels team=a --diff`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&f.file, "filename", "f", f.file, `manifest file, or "-" for standard input`)
	fs.StringVar(&f.catalog, "catalog", f.catalog, "catalog file or directory; the embedded default if empty")
	fs.StringToStringVar(&f.nsLabels, "namespace-labels", f.nsLabels, "labels of the target namespace, for policies: k=v,k2=v2")
	fs.StringVarP(&f.output, "output", "o", f.output, "yaml, json or patch")
	fs.BoolVar(&f.diff, "diff", f.diff, "print a unified diff of each changed document instead")
	_ = cmd.MarkFlagRequired("filename")
	return cmd
}

func readInput(file string, stdin io.Reader) ([]byte, error) {
	if file == "-" {
		return io.ReadAll(stdin)
	}
	return os.ReadFile(file)
}

func (f *injectFlags) run(stdin io.Reader, stdout, stderr io.Writer) error {
	if f.output != "yaml" && f.output != "json" && f.output != "patch" {
		return withCode(ExitBadInput, fmt.Errorf("--output %q not supported; use yaml, json or patch", f.output))
	}
	cat, err := catalog.LoadOrDefault(f.catalog)
	if err != nil {
		return withCode(ExitBadInput, err)
	}
	input, err := readInput(f.file, stdin)
	if err != nil {
		return withCode(ExitBadInput, err)
	}
	split, err := manifest.Split(bytes.NewReader(input))
	if err != nil {
		return withCode(ExitBadInput, err)
	}
	docs := make([][]byte, len(split))
	for i, d := range split {
		docs[i] = d.JSON
	}
	var results []*workload.Result
	denied := 0
	for i, doc := range docs {
		r, err := workload.Inject(doc, f.nsLabels, cat)
		switch {
		case workload.IsDenial(err):
			fmt.Fprintf(stderr, "document %d (%s): denied: %v\n", i+1, name(doc), err)
			denied++
			continue
		case err != nil:
			return withCode(ExitBadInput, fmt.Errorf("document %d: %w", i+1, err))
		}
		for _, w := range r.Warnings {
			fmt.Fprintf(stderr, "document %d (%s): warning: %s\n", i+1, r.Name, w)
		}
		if r.Notice != "" {
			fmt.Fprintf(stderr, "document %d (%s): passed through unchanged: %s\n", i+1, r.Name, r.Notice)
		}
		results = append(results, r)
	}
	if denied > 0 {
		return found("%d of %d documents denied; nothing written", denied, len(docs))
	}
	format := f.output
	if f.diff {
		format = "diff"
	}
	if err := workload.Write(stdout, docs, results, format); err != nil {
		return withCode(ExitBadInput, err)
	}
	return nil
}

func name(doc []byte) string {
	head, _ := manifest.ReadHead(doc)
	return head.Name()
}
