package cmd

import (
	"fmt"
	"os"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podpatterns/sidecar-injector/pkg/controller"
)

type controllerFlags struct {
	controller.ManagerOptions
	repair, logLevel, kubeconfig string
}

func newControllerCommand() *cobra.Command {
	f := &controllerFlags{
		ManagerOptions: controller.ManagerOptions{
			Options:                 controller.Options{MaxConcurrentRestarts: 1, AuditInterval: 10 * time.Minute},
			MetricsAddr:             ":8080",
			HealthAddr:              ":8081",
			LeaderElection:          true,
			LeaderElectionNamespace: catalogNamespace,
		},
		repair:   "off",
		logLevel: "info",
	}
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Keep every Pod's sidecars conformant: metrics, Events and, if asked, rollouts that repair them",
		Long: `Classify every Pod of the opted-in namespaces, and of those a policy with
required templates matches, as audit does, whenever Pods, namespaces or
the catalog change and every --audit-interval. It exports
sidecar_injector_pods{namespace,template,state}, records an Event on each
workload whose Pods turn missing, stale or tampered, and with
--repair=restart rolls out the owning Deployments, StatefulSets and
DaemonSets as kubectl rollout restart does, at most
--max-concurrent-restarts at a time, each only once the previous one has
finished; never a workload mid-rollout, a bare Pod or a Job. Replicas take
turns through a Lease, so two never both repair.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch f.repair {
			case "off":
			case "restart":
				f.Repair = true
			default:
				return withCode(ExitBadInput, fmt.Errorf("--repair %q not supported; use off or restart", f.repair))
			}
			if f.MaxConcurrentRestarts < 1 || f.AuditInterval <= 0 {
				return withCode(ExitBadInput, fmt.Errorf("--max-concurrent-restarts must be at least 1 and --audit-interval positive"))
			}
			log, err := newLogger(f.logLevel)
			if err != nil {
				return withCode(ExitBadInput, err)
			}
			f.Log = log
			ctrllog.SetLogger(log)
			// The Pod cache is most of the heap (about 10 KiB a Pod); a soft
			// limit keeps a 10,000-Pod fleet near 140 MiB instead of 210
			// (docs/performance.md). Raise GOMEMLIMIT for larger fleets.
			if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
				debug.SetMemoryLimit(110 << 20)
			}
			rules := clientcmd.NewDefaultClientConfigLoadingRules()
			rules.ExplicitPath = f.kubeconfig
			cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
			if err != nil {
				return withCode(ExitBadInput, fmt.Errorf("no cluster: %w", err))
			}
			return controller.Run(cmd.Context(), cfg, f.ManagerOptions)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.CatalogPath, "catalog", f.CatalogPath, "catalog file or directory (the mounted ConfigMap), watched for changes; the embedded default if empty")
	fs.StringVar(&f.repair, "repair", f.repair, "off, or restart: roll out the workloads whose Pods need repair")
	fs.BoolVar(&f.DryRun, "dry-run", f.DryRun, "with --repair=restart: log and count the rollouts, start none")
	fs.IntVar(&f.MaxConcurrentRestarts, "max-concurrent-restarts", f.MaxConcurrentRestarts, "rollouts in progress at once")
	fs.DurationVar(&f.AuditInterval, "audit-interval", f.AuditInterval, "full resync; between them the controller follows events")
	fs.StringVar(&f.MetricsAddr, "metrics-addr", f.MetricsAddr, `address of /metrics; "0" disables it`)
	fs.StringVar(&f.HealthAddr, "health-addr", f.HealthAddr, `address of /healthz and /readyz; "0" disables them`)
	fs.BoolVar(&f.LeaderElection, "leader-elect", f.LeaderElection, "take turns with other replicas through a Lease")
	fs.StringVar(&f.LeaderElectionNamespace, "leader-election-namespace", f.LeaderElectionNamespace, "namespace of the Lease")
	fs.StringVar(&f.logLevel, "log-level", f.logLevel, "debug, info or error")
	fs.StringVar(&f.kubeconfig, "kubeconfig", f.kubeconfig, "kubeconfig; in-cluster config or $KUBECONFIG if empty")
	return cmd
}
