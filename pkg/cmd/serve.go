package cmd

import (
	"context"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podpatterns/sidecar-injector/pkg/server"
	"github.com/podpatterns/sidecar-injector/pkg/statuskey"
)

// newServeCommand returns `serve`, which binds its flags to
// server.Options and calls run.
func newServeCommand(run func(context.Context, server.Options) error) *cobra.Command {
	o := server.NewOptions()
	var logLevel string
	var cluster kubeFlags
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
			if err := o.Validate(); err != nil {
				return withCode(ExitBadInput, err)
			}
			var err error
			if o.Log, err = newLogger(logLevel); err != nil {
				return withCode(ExitBadInput, err)
			}
			if o.RestConfig, err = cluster.optionalConfig(); err != nil {
				return withCode(ExitBadInput, err)
			}
			tuneGC()
			ctrllog.SetLogger(o.Log) // certwatcher logs through controller-runtime
			return run(cmd.Context(), o)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.CatalogPath, "catalog", o.CatalogPath, "catalog file or directory of *.yaml (a mounted ConfigMap); the embedded default catalog if empty")
	fs.StringVar(&o.CertFile, "tls-cert-file", o.CertFile, "serving certificate (PEM); defaults to tls.crt in --cert-dir")
	fs.StringVar(&o.KeyFile, "tls-key-file", o.KeyFile, "serving key (PEM); defaults to tls.key in --cert-dir")
	fs.StringVar(&o.CertDir, "cert-dir", o.CertDir, "directory holding tls.crt and tls.key")
	fs.StringVar(&o.StatusKeyDir, "status-key-dir", o.StatusKeyDir, "directory holding the keys that sign status entries, as the Secret "+statuskey.SecretName+" is mounted: current (signs) and previous (still verifies during a rotation); a random key of this process if empty")
	fs.IntVar(&o.Port, "port", o.Port, "HTTPS port of the webhook")
	fs.StringVar(&o.MetricsAddr, "metrics-addr", o.MetricsAddr, `address of /metrics; "0" disables it`)
	fs.StringVar(&o.HealthAddr, "health-addr", o.HealthAddr, `address of /healthz and /readyz; "0" disables them`)
	fs.StringVar(&logLevel, "log-level", "info", "debug, info or error; debug logs one line per request")
	fs.DurationVar(&o.ShutdownGrace, "shutdown-grace", o.ShutdownGrace, "how long in-flight requests may take to finish after SIGTERM")
	fs.StringVar(&o.PprofAddr, "pprof-addr", o.PprofAddr, "address of net/http/pprof, for profiling; off if empty")
	fs.DurationVar(&o.MaxConnectionAge, "max-connection-age", o.MaxConnectionAge, "close a connection gracefully once it is this old (plus up to 10% jitter), so the API server reconnects through the Service and spreads over replicas; 0 keeps connections open")
	fs.StringVar(&o.ClientCAFile, "client-ca-file", o.ClientCAFile, "require a client certificate signed by this CA (PEM), such as the one the API server presents through its admission kubeconfig; off if empty")
	fs.StringVar(&cluster.kubeconfig, "kubeconfig", "", "kubeconfig for namespace labels; in-cluster config or $KUBECONFIG if empty")
	return cmd
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
	setMemoryLimit(32 << 20)
}

// setMemoryLimit sets a soft memory limit unless GOMEMLIMIT does.
func setMemoryLimit(bytes int64) {
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		debug.SetMemoryLimit(bytes)
	}
}
