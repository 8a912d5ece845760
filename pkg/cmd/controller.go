package cmd

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podpatterns/sidecar-injector/pkg/controller"
)

// newControllerCommand returns `controller`, which binds its flags to
// controller.ManagerOptions and calls run.
func newControllerCommand(run func(context.Context, controller.ManagerOptions) error) *cobra.Command {
	o := controller.NewManagerOptions()
	repair, logLevel := "off", "info"
	var cluster kubeFlags
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
			switch repair {
			case "off":
			case "restart":
				o.Repair = true
			default:
				return withCode(ExitBadInput, fmt.Errorf("--repair %q not supported; use off or restart", repair))
			}
			if err := o.Validate(); err != nil {
				return withCode(ExitBadInput, err)
			}
			var err error
			if o.Log, err = newLogger(logLevel); err != nil {
				return withCode(ExitBadInput, err)
			}
			if o.RestConfig, err = cluster.config(); err != nil {
				return withCode(ExitBadInput, err)
			}
			ctrllog.SetLogger(o.Log)
			// The Pod cache is most of the heap (about 10 KiB a Pod); a soft
			// limit keeps a 10,000-Pod fleet near 140 MiB instead of 210
			// (docs/performance.md). Raise GOMEMLIMIT for larger fleets.
			setMemoryLimit(110 << 20)
			return run(cmd.Context(), o)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.CatalogPath, "catalog", o.CatalogPath, "catalog file or directory (the mounted ConfigMap), watched for changes; the embedded default if empty")
	fs.StringVar(&repair, "repair", repair, "off, or restart: roll out the workloads whose Pods need repair")
	fs.BoolVar(&o.DryRun, "dry-run", o.DryRun, "with --repair=restart: log and count the rollouts, start none")
	fs.IntVar(&o.MaxConcurrentRestarts, "max-concurrent-restarts", o.MaxConcurrentRestarts, "rollouts in progress at once")
	fs.DurationVar(&o.AuditInterval, "audit-interval", o.AuditInterval, "full resync; between them the controller follows events")
	fs.StringVar(&o.MetricsAddr, "metrics-addr", o.MetricsAddr, `address of /metrics; "0" disables it`)
	fs.StringVar(&o.HealthAddr, "health-addr", o.HealthAddr, `address of /healthz and /readyz; "0" disables them`)
	fs.BoolVar(&o.LeaderElection, "leader-elect", o.LeaderElection, "take turns with other replicas through a Lease")
	fs.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", o.LeaderElectionNamespace, "namespace of the Lease")
	fs.StringVar(&logLevel, "log-level", logLevel, "debug, info or error")
	fs.StringVar(&cluster.kubeconfig, "kubeconfig", "", "kubeconfig; in-cluster config or $KUBECONFIG if empty")
	return cmd
}
