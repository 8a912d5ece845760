package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"go.uber.org/zap/zapcore"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/podpatterns/sidecar-injector/pkg/server"
)

type serveFlags struct {
	server.Options
	logLevel   string
	kubeconfig string
}

// NewServeCommand returns `serve`, which parses its flags into
// server.Options and calls run.
func NewServeCommand(run func(context.Context, server.Options) error) *cobra.Command {
	f := &serveFlags{
		Options: server.Options{
			Port:             9443,
			MetricsAddr:      ":8080",
			HealthAddr:       ":8081",
			ShutdownGrace:    25 * time.Second,
			MaxConnectionAge: 5 * time.Minute,
		},
		logLevel: "info",
	}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the mutating admission webhook over HTTPS",
		Long: `Serve the mutating admission webhook over HTTPS.

POST /mutate-pods takes admission.k8s.io/v1 AdmissionReviews. /healthz and
/readyz are served on --health-addr, Prometheus metrics on --metrics-addr.
The certificate and key are re-read when they change on disk, and the
catalog when it changes; a broken catalog is refused and the last good one
keeps serving. On SIGTERM /readyz fails at once and in-flight requests get
--shutdown-grace to finish.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := f.complete()
			if err != nil {
				return withCode(ExitBadInput, err)
			}
			tuneGC()
			ctrllog.SetLogger(o.Log) // certwatcher logs through controller-runtime
			return run(cmd.Context(), o)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.CatalogPath, "catalog", f.CatalogPath, "catalog file or directory of *.yaml (a mounted ConfigMap); the embedded default catalog if empty")
	fs.StringVar(&f.CertFile, "tls-cert-file", f.CertFile, "serving certificate (PEM); defaults to tls.crt in --cert-dir")
	fs.StringVar(&f.KeyFile, "tls-key-file", f.KeyFile, "serving key (PEM); defaults to tls.key in --cert-dir")
	fs.StringVar(&f.CertDir, "cert-dir", f.CertDir, "directory holding tls.crt and tls.key")
	fs.IntVar(&f.Port, "port", f.Port, "HTTPS port of the webhook")
	fs.StringVar(&f.MetricsAddr, "metrics-addr", f.MetricsAddr, `address of /metrics; "0" disables it`)
	fs.StringVar(&f.HealthAddr, "health-addr", f.HealthAddr, `address of /healthz and /readyz; "0" disables them`)
	fs.StringVar(&f.logLevel, "log-level", f.logLevel, "debug, info or error; debug logs one line per request")
	fs.DurationVar(&f.ShutdownGrace, "shutdown-grace", f.ShutdownGrace, "how long in-flight requests may take to finish after SIGTERM")
	fs.StringVar(&f.PprofAddr, "pprof-addr", f.PprofAddr, "address of net/http/pprof, for profiling; off if empty")
	fs.StringVar(&f.kubeconfig, "kubeconfig", f.kubeconfig, "kubeconfig for namespace labels; in-cluster config or $KUBECONFIG if empty")
	fs.DurationVar(&f.MaxConnectionAge, "max-connection-age", f.MaxConnectionAge, "close a connection gracefully once it is this old (plus up to 10% jitter), so the API server reconnects through the Service and spreads over replicas; 0 or negative keeps connections open")
	fs.StringVar(&f.ClientCAFile, "client-ca-file", f.ClientCAFile, "require a client certificate signed by this CA (PEM), such as the one the API server presents through its admission kubeconfig; off if empty")
	return cmd
}

func (f *serveFlags) complete() (server.Options, error) {
	o := f.Options
	if o.CertFile == "" && o.KeyFile == "" && o.CertDir == "" {
		return o, errors.New("no serving certificate: set --cert-dir, or --tls-cert-file and --tls-key-file (`sidecar-injector certs` makes development ones)")
	}
	if (o.CertFile == "") != (o.KeyFile == "") && o.CertDir == "" {
		return o, errors.New("--tls-cert-file and --tls-key-file go together")
	}
	if o.Port < 1 || o.Port > 65535 {
		return o, fmt.Errorf("--port %d is not a port", o.Port)
	}
	if o.MaxConnectionAge == 0 {
		o.MaxConnectionAge = -1 // the flag's 0 means never; Options' zero means the default
	}
	if o.ShutdownGrace <= 0 {
		return o, fmt.Errorf("--shutdown-grace %s must be positive", o.ShutdownGrace)
	}
	log, err := newLogger(f.logLevel)
	if err != nil {
		return o, err
	}
	o.Log = log
	if o.RestConfig, err = restConfig(f.kubeconfig); err != nil {
		return o, err
	}
	return o, nil
}

// tuneGC sets the collector for a server whose live heap is a few MiB:
// with the default GOGC=100 it collects after every few MiB allocated,
// dozens of times a second under load. Unless GOGC or GOMEMLIMIT are set,
// collect at 4x the live heap, with a soft limit of 32 MiB that keeps RSS
// well under the Deployment's 128Mi limit (docs/performance.md).
func tuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(400)
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		debug.SetMemoryLimit(32 << 20)
	}
}

func newLogger(level string) (logr.Logger, error) {
	levels := map[string]zapcore.Level{"debug": zapcore.DebugLevel, "info": zapcore.InfoLevel, "error": zapcore.ErrorLevel}
	l, ok := levels[level]
	if !ok {
		return logr.Discard(), fmt.Errorf("--log-level %q not supported; use debug, info or error", level)
	}
	return zap.New(zap.Level(l), zap.UseDevMode(false)), nil
}

// restConfig finds a cluster: --kubeconfig, $KUBECONFIG, ~/.kube/config or
// the in-cluster service account. It is nil, with no error, only when
// none of them is there at all; one that is there but cannot be loaded
// is an error, never a silent run without namespace labels.
func restConfig(kubeconfig string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	switch {
	case err == nil:
		return cfg, nil
	case kubeconfig == "" && os.Getenv("KUBECONFIG") == "" && clientcmd.IsEmptyConfig(err):
		return nil, nil
	}
	return nil, fmt.Errorf("loading the cluster configuration: %w", err)
}
