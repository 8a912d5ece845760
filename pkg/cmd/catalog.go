package cmd

import (
	"fmt"
	"strings"

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
			for _, w := range c.Warnings() {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", w)
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
			return c.WriteList(cmd.OutOrStdout())
		},
	}
	list.Flags().StringVar(&path, "catalog", path, "catalog file or directory; the embedded default if empty")
	cmd.AddCommand(list, newPinCommand(), newCompileCommand(), newCatalogTestCommand())
	return cmd
}
