package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/catalogtest"
)

type catalogTestFlags struct {
	catalog, output string
	paths           []string
}

func newCatalogTestCommand() *cobra.Command {
	f := &catalogTestFlags{output: "text", paths: []string{string(catalogtest.Engine), string(catalogtest.Policies)}}
	cmd := &cobra.Command{
		Use:   "test DIR|FILE...",
		Short: "Run the cases kept beside a catalog, through the engine and the compiled policies",
		Long: `Run the cases kept beside a catalog, with no cluster. A case file holds
one or more YAML documents, each a case:

  name: what the case proves
  namespace: {name: apps, labels: {sidecars.podpatterns.io/injection: enabled}}
  object: <the Pod as created>
  expect:
    object: <the Pod as admitted>     # or
    denied: <a part of the denial's message>

Each case runs through the engine, as the webhook injects, and through
the catalog's compiled admission policies, evaluated in process by
kube-apiserver's own admission-policy code. The status annotation is
left out of the comparison and must verify. A failing case prints why,
with a diff from the expected Pod; sidecar-injector inject prints the
Pod as admitted, to start an expectation from.

` + exitCodes("a case failed"),
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.run(cmd.Context(), args, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&f.catalog, "catalog", f.catalog, "catalog file or directory; the embedded default if empty")
	cmd.Flags().StringSliceVar(&f.paths, "path", f.paths, "the ways to admit each case: engine (the webhook's), policies (the compiled admission policies')")
	cmd.Flags().StringVarP(&f.output, "output", "o", f.output, "text or json")
	return cmd
}

func (f *catalogTestFlags) run(ctx context.Context, args []string, stdout io.Writer) error {
	var through []catalogtest.Path
	for _, p := range f.paths {
		if p != string(catalogtest.Engine) && p != string(catalogtest.Policies) {
			return withCode(ExitBadInput, fmt.Errorf("--path %q: want engine or policies", p))
		}
		through = append(through, catalogtest.Path(p))
	}
	if f.output != "text" && f.output != "json" {
		return withCode(ExitBadInput, fmt.Errorf("-o %q: want text or json", f.output))
	}
	c, err := catalog.LoadOrDefault(f.catalog)
	if err != nil {
		return withCode(ExitBadInput, err)
	}
	cases, err := catalogtest.Load(args...)
	if err != nil {
		return withCode(ExitBadInput, err)
	}
	runner, err := catalogtest.NewRunner(c)
	if err != nil {
		return withCode(ExitBadInput, err)
	}
	var results []catalogtest.Result
	for _, tc := range cases {
		results = append(results, runner.Run(ctx, tc, through))
	}
	sum := catalogtest.Summarize(results)
	if f.output == "json" {
		err = writeJSON(stdout, struct {
			Catalog string `json:"catalog"`
			catalogtest.Summary
			Results []catalogtest.Result `json:"results"`
		}{catalog.Describe(f.catalog), sum, results})
	} else {
		err = catalogtest.WriteText(stdout, results, sum)
	}
	if err != nil {
		return err
	}
	if sum.Failed > 0 {
		return found("%d of %d cases failed", sum.Failed, sum.Cases)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
