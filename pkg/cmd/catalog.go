package cmd

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
)

func newCatalogCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "catalog",
		Short: "Validate, list, pin, compile and test catalogs",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "validate [PATH]",
		Short: "Validate a catalog file or directory (the embedded default without PATH)",
		Long: `Validate a catalog file or directory (the embedded default without PATH):
every problem is reported with its path, images pinned by tag only are
warned about.

` + exitCodes("the catalog is invalid"),
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := ""
			if len(args) == 1 {
				path = args[0]
			}
			c, err := catalog.LoadOrDefault(path)
			if err != nil {
				return withCode(ExitFound, err)
			}
			for _, img := range c.Images() {
				if !img.Pinned() {
					fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s: %s is pinned by tag only; a retagged image changes what runs (sidecar-injector catalog pin)\n", img.Path, img.Ref)
				}
			}
			for _, name := range c.Names() {
				t := c.Template(name)
				for _, ctr := range t.Containers {
					if catalog.IgnoresSIGTERM(ctr) {
						fmt.Fprintf(cmd.ErrOrStderr(), "warning: templates[%s] container %q runs a shell as PID 1 that ignores SIGTERM: every Pod waits out its grace period to stop, and a Job's sidecar ends only then; trap TERM (trap 'exit 0' TERM, and sleep N & wait $!) or exec the program\n", name, ctr.Name)
					}
					if delay := catalog.DelaysStop(ctr); delay != "" && t.NativeSidecar {
						fmt.Fprintf(cmd.ErrOrStderr(), "warning: templates[%s] container %q is a native sidecar with %s: the kubelet runs it as soon as the Pod is deleted, beside the app's, not after the app has ended, so the app loses the sidecar while it still runs; drop the hook and stop on SIGTERM\n", name, ctr.Name, delay)
					}
				}
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s: valid, %d templates (%s), version %s\n", catalog.Describe(path), len(c.Names()), strings.Join(c.Names(), ", "), c.Version)
			return err
		},
	})
	var path string
	list := &cobra.Command{
		Use:   "list",
		Short: "List templates: name, pattern, description, parameters and images",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := catalog.LoadOrDefault(path)
			if err != nil {
				return withCode(ExitBadInput, err)
			}
			return listCatalog(cmd.OutOrStdout(), c)
		},
	}
	list.Flags().StringVar(&path, "catalog", path, "catalog file or directory; the embedded default if empty")
	cmd.AddCommand(list, newPinCommand(), newCompileCommand(), newCatalogTestCommand())
	return cmd
}

func listCatalog(w io.Writer, c *catalog.Catalog) error {
	for i, name := range c.Names() {
		t := c.Template(name)
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s (%s)\n", t.Name, t.Pattern)
		fmt.Fprintf(w, "  %s\n", t.Description)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "  pod security\t%s\n", t.Level())
		for _, ctr := range append(t.InitContainers, t.Containers...) {
			fmt.Fprintf(tw, "  image\t%s\t%s\n", ctr.Name, ctr.Image)
		}
		for _, p := range t.Parameters {
			value := "default " + fmt.Sprintf("%q", p.Default)
			if p.Required {
				value = "required"
			}
			fmt.Fprintf(tw, "  parameter\t%s\t%s\t%s\n", p.Name, value, p.Description)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}
