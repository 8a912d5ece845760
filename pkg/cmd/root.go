package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/podpatterns/sidecar-injector/pkg/server"
	"github.com/podpatterns/sidecar-injector/pkg/version"
)

// Exit codes shared by every subcommand.
const (
	ExitOK       = 0
	ExitDenied   = 1 // inject: a document was denied; diagnose: an error-level finding
	ExitBadInput = 2 // unusable input or flags
)

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withCode(code int, err error) error { return &exitError{code: code, err: err} }

// Execute runs the command line and returns the process exit code.
func Execute(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := NewRootCommand(server.Run)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err != nil && err.Error() != "" {
		fmt.Fprintln(stderr, "Error:", err)
	}
	return exitCode(err)
}

// exitCode maps an error to the process exit code: flag and input errors
// are ExitBadInput unless they carry their own code.
func exitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return ExitBadInput
}

// NewRootCommand builds the command tree; serve runs runServe.
func NewRootCommand(runServe func(context.Context, server.Options) error) *cobra.Command {
	root := &cobra.Command{
		Use:           "sidecar-injector",
		Short:         "Inject vetted sidecar, ambassador and adapter containers into Pods",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		NewServeCommand(runServe),
		newVersionCommand(),
		newInjectCommand(),
		newDiagnoseCommand(),
		newAuditCommand(),
		newControllerCommand(),
		newCatalogCommand(),
		newCertsCommand(),
	)
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), version.Version)
			return err
		},
	}
}
