package cmd

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/podpatterns/sidecar-injector/pkg/admissionpolicy"
	"github.com/podpatterns/sidecar-injector/pkg/catalog"
)

func newCompileCommand() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "compile",
		Short: "Print the admission policies that inject the catalog without a webhook",
		Long: `Print, as YAML for kubectl apply, the MutatingAdmissionPolicy, the
ValidatingAdmissionPolicy and their bindings (admissionregistration.k8s.io/v1,
Kubernetes 1.36 or later) that inject the catalog's templates in the API
server itself, with the webhook's opt-in label, denials and status.

A template the compiler cannot express exactly is refused, named on
stderr with the reason; the policies then deny a Pod that gets it,
saying so, rather than inject it approximately.

` + exitCodes("the catalog is invalid"),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := catalog.LoadOrDefault(path)
			if err != nil {
				return withCode(ExitBadInput, err)
			}
			compiled := admissionpolicy.Compile(c, admissionpolicy.Options{})
			for _, r := range compiled.Refused {
				fmt.Fprintf(cmd.ErrOrStderr(), "refused: template %q: %s\n", r.Template, r.Reason)
			}
			return writeCompiled(cmd.OutOrStdout(), compiled)
		},
	}
	cmd.Flags().StringVar(&path, "catalog", path, "catalog file or directory; the embedded default if empty")
	return cmd
}

func writeCompiled(w io.Writer, compiled *admissionpolicy.Compiled) error {
	for _, r := range compiled.Refused {
		fmt.Fprintf(w, "# refused: template %q: %s\n", r.Template, r.Reason)
	}
	for _, o := range compiled.Objects() {
		data, err := yaml.Marshal(o)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "---\n%s", data); err != nil {
			return err
		}
	}
	return nil
}
