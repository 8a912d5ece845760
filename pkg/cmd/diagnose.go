package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/diagnose"
)

type diagnoseFlags struct {
	file, catalogPath, output string
	cluster                   kubeFlags
	namesp                    string
	logs                      bool
	tail                      int64
}

func newDiagnoseCommand() *cobra.Command {
	f := &diagnoseFlags{output: "text", tail: 20}
	cmd := &cobra.Command{
		Use:   "diagnose (-f FILE|- | -n NAMESPACE POD)",
		Short: "Check a multi-container Pod for broken sharing, users, resources, ports and sidecar lifecycles",
		Long: `Check a multi-container Pod for the mistakes that break the sidecar,
ambassador and adapter patterns: a shared volume one side does not mount,
paths or env that disagree with the template that injected them, a
read-only writer, containers sharing a volume as different users without
fsGroup, missing requests and limits, two containers on one port, a Job
kept alive by a classic sidecar, a sidecar that starts after the app, and
for a live Pod restarts, OOMKilled, CrashLoopBackOff and image pull errors.

` + exitCodes("an error-level finding"),
		Example: `  sidecar-injector diagnose -f pod.yaml
  sidecar-injector inject -f app.yaml | sidecar-injector diagnose -f -
  sidecar-injector diagnose -n shop checkout-7d9c5b8f6d-x2k4p --logs`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.run(cmd.Context(), args, cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&f.file, "filename", "f", f.file, `manifest file, or "-" for standard input`)
	fs.StringVar(&f.catalogPath, "catalog", f.catalogPath, "catalog that injected the Pod; the embedded default if empty")
	fs.StringVarP(&f.output, "output", "o", f.output, "text or json")
	fs.StringVar(&f.cluster.kubeconfig, "kubeconfig", "", "kubeconfig for a live Pod; $KUBECONFIG or ~/.kube/config if empty")
	fs.StringVar(&f.cluster.context, "context", "", "kubeconfig context")
	fs.StringVarP(&f.namesp, "namespace", "n", f.namesp, "namespace of a live Pod; the context's if empty")
	fs.BoolVar(&f.logs, "logs", f.logs, "also print the last lines of each container's logs (live Pods)")
	fs.Int64Var(&f.tail, "tail", f.tail, "log lines per container with --logs")
	return cmd
}

func (f *diagnoseFlags) run(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	if f.output != "text" && f.output != "json" {
		return withCode(ExitBadInput, fmt.Errorf("--output %q not supported; use text or json", f.output))
	}
	if (f.file == "") == (len(args) == 0) {
		return withCode(ExitBadInput, errors.New("give either -f FILE or the name of a live Pod"))
	}
	cat, err := catalog.LoadOrDefault(f.catalogPath)
	if err != nil {
		return withCode(ExitBadInput, err)
	}
	var reports []*diagnose.Report
	if f.file != "" {
		reports, err = f.fromFile(stdin, cat)
	} else {
		reports, err = f.live(ctx, args[0], cat)
	}
	if err != nil {
		return withCode(ExitBadInput, err)
	}
	if err := f.print(stdout, reports); err != nil {
		return err
	}
	failing := 0
	for _, r := range reports {
		if diagnose.HasErrors(r.Findings) {
			failing++
		}
	}
	if failing > 0 {
		return found("%d of %d Pods have an error-level finding", failing, len(reports))
	}
	return nil
}

func (f *diagnoseFlags) fromFile(stdin io.Reader, cat *catalog.Catalog) ([]*diagnose.Report, error) {
	input, err := readInput(f.file, stdin)
	if err != nil {
		return nil, err
	}
	return diagnose.Manifests(input, cat)
}

func (f *diagnoseFlags) live(ctx context.Context, name string, cat *catalog.Catalog) ([]*diagnose.Report, error) {
	client, ns, err := f.cluster.client()
	if err != nil {
		return nil, fmt.Errorf("no cluster to read Pod %s from: %w", name, err)
	}
	if f.namesp != "" {
		ns = f.namesp
	}
	tail := int64(0)
	if f.logs {
		tail = f.tail
	}
	r, err := diagnose.Live(ctx, client, ns, name, cat, tail)
	if err != nil {
		return nil, err
	}
	return []*diagnose.Report{r}, nil
}

func (f *diagnoseFlags) print(w io.Writer, reports []*diagnose.Report) error {
	if f.output == "json" {
		// One shape whatever the count, for scripts.
		return writeJSON(w, struct {
			Pods []*diagnose.Report `json:"pods"`
		}{reports})
	}
	return diagnose.WriteText(w, reports, f.tail)
}
