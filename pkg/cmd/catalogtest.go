package cmd

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/catalogtest"
)

func newCatalogTestCommand() *cobra.Command {
	var path, output string
	paths := []string{string(catalogtest.Engine), string(catalogtest.Policies)}
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
			var through []catalogtest.Path
			for _, p := range paths {
				if p != string(catalogtest.Engine) && p != string(catalogtest.Policies) {
					return withCode(ExitBadInput, fmt.Errorf("--path %q: want engine or policies", p))
				}
				through = append(through, catalogtest.Path(p))
			}
			if output != "text" && output != "json" {
				return withCode(ExitBadInput, fmt.Errorf("-o %q: want text or json", output))
			}
			c, err := catalog.LoadOrDefault(path)
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
				results = append(results, runner.Run(cmd.Context(), tc, through))
			}
			sum := catalogtest.Summarize(results)
			if output == "json" {
				err = writeJSON(cmd.OutOrStdout(), struct {
					Catalog string `json:"catalog"`
					catalogtest.Summary
					Results []catalogtest.Result `json:"results"`
				}{catalog.Describe(path), sum, results})
			} else {
				err = catalogtest.WriteText(cmd.OutOrStdout(), results, sum)
			}
			if err != nil {
				return err
			}
			if sum.Failed > 0 {
				return found("%d of %d cases failed", sum.Failed, sum.Cases)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "catalog", path, "catalog file or directory; the embedded default if empty")
	cmd.Flags().StringSliceVar(&paths, "path", paths, "the ways to admit each case: engine (the webhook's), policies (the compiled admission policies')")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
