package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"go.uber.org/zap/zapcore"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/podpatterns/sidecar-injector/pkg/controller"
	"github.com/podpatterns/sidecar-injector/pkg/server"
	"github.com/podpatterns/sidecar-injector/pkg/version"
)

// Exit codes, the same for every command; each command's help and the
// README's "Exit codes" table repeat this one.
const (
	ExitOK = 0
	// ExitFound: the command ran and found what its help names: a
	// document denied (inject), an invalid catalog (catalog validate), a
	// Pod that needs repair (audit), an error-level finding (diagnose), an
	// image unpinned or a tag moved (catalog pin --check).
	ExitFound = 1
	// ExitBadInput: unusable input or flags, or a cluster or registry
	// that could not be read.
	ExitBadInput = 2
)

// exitCodes is the table as a command's help prints it, with what 1
// means for that command.
func exitCodes(found string) string {
	return "Exit codes: 0 ok; 1 " + found + "; 2 bad input, or a cluster or registry that could not be read."
}

// ExitError is an error that ends the process with Code.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

func withCode(code int, err error) error { return &ExitError{Code: code, Err: err} }

// found ends a command that ran and found something, with a message
// that says what (the details are already on stdout or stderr).
func found(format string, args ...any) error {
	return &ExitError{Code: ExitFound, Err: fmt.Errorf(format, args...)}
}

// Runners are what the long-running commands call once their flags are
// parsed: tests pass their own, so no server or controller starts.
type Runners struct {
	Serve      func(context.Context, server.Options) error
	Controller func(context.Context, controller.ManagerOptions) error
}

// Execute runs the command line and returns the process exit code.
func Execute(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := NewRootCommand(Runners{Serve: server.Run, Controller: controller.Run})
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err != nil {
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
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return ExitBadInput
}

// NewRootCommand builds the command tree.
func NewRootCommand(run Runners) *cobra.Command {
	root := &cobra.Command{
		Use:           "sidecar-injector",
		Short:         "Inject vetted sidecar, ambassador and adapter containers into Pods",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newServeCommand(run.Serve),
		newVersionCommand(),
		newInjectCommand(),
		newDiagnoseCommand(),
		newAuditCommand(),
		newControllerCommand(run.Controller),
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

// newLogger is the structured logger of the long-running commands.
func newLogger(level string) (logr.Logger, error) {
	levels := map[string]zapcore.Level{"debug": zapcore.DebugLevel, "info": zapcore.InfoLevel, "error": zapcore.ErrorLevel}
	l, ok := levels[level]
	if !ok {
		return logr.Discard(), fmt.Errorf("--log-level %q not supported; use debug, info or error", level)
	}
	return zap.New(zap.Level(l), zap.UseDevMode(false)), nil
}

// kubeFlags find a cluster: --kubeconfig (and --context where a command
// has it), $KUBECONFIG, ~/.kube/config or the in-cluster service account.
type kubeFlags struct {
	kubeconfig, context string
}

func (k kubeFlags) clientConfig() clientcmd.ClientConfig {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = k.kubeconfig
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: k.context})
}

// config is the cluster's configuration; none is an error.
func (k kubeFlags) config() (*rest.Config, error) {
	cfg, err := k.clientConfig().ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading the cluster configuration: %w", err)
	}
	return cfg, nil
}

// optionalConfig is nil, with no error, only when no cluster is
// configured at all; one that is there but cannot be loaded is an error.
func (k kubeFlags) optionalConfig() (*rest.Config, error) {
	cfg, err := k.config()
	if err != nil && k.kubeconfig == "" && os.Getenv("KUBECONFIG") == "" && clientcmd.IsEmptyConfig(errors.Unwrap(err)) {
		return nil, nil
	}
	return cfg, err
}

// client is a clientset for the cluster, and the namespace of the
// kubeconfig's context.
func (k kubeFlags) client() (kubernetes.Interface, string, error) {
	cfg, err := k.config()
	if err != nil {
		return nil, "", err
	}
	ns, _, err := k.clientConfig().Namespace()
	if err != nil {
		return nil, "", err
	}
	client, err := kubernetes.NewForConfig(cfg)
	return client, ns, err
}
