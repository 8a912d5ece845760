package cmd

import (
	"context"

	"github.com/spf13/cobra"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podpatterns/sidecar-injector/pkg/controller"
	"github.com/podpatterns/sidecar-injector/pkg/statuskey"
)

const controllerLong = `Classify every Pod of the opted-in namespaces, and of those a policy with
required templates matches, as audit does, whenever Pods, namespaces or
the catalog change and every --audit-interval. It exports
sidecar_injector_pods{namespace,template,state}, records an Event on each
workload whose Pods turn missing, stale or tampered. A Pod event costs
that Pod's classification; a catalog change reclassifies every Pod once.

--repair=restart rolls out the owning Deployments, StatefulSets and
DaemonSets as kubectl rollout restart does, at most
--max-concurrent-restarts at a time, each only once the previous one has
finished; never a workload mid-rollout, a bare Pod or a Job.

--repair=in-place upgrades a stale Pod whose only difference from what
the catalog renders today is the image of its sidecars: it patches those
images and the status annotation, and the kubelet restarts the sidecars
alone, the app keeps running. Per workload at most --max-unavailable
Pods at once, each once it is ready; a sidecar not ready within
--upgrade-timeout stops that workload's upgrade (an Event says why).
Pods no Deployment, StatefulSet or DaemonSet owns only with
--upgrade-bare-pods. Anything more than an image needs a rollout: an
Event says so. --repair=auto upgrades in place where it can and rolls
out elsewhere.

--admission-policies applies the catalog compiled to admission policies
(see catalog compile) at start, at every catalog change and every
--audit-interval (a policy edited or deleted by hand comes back), for
clusters that inject without the webhook; a broken catalog leaves the
last good policies in place, with an Event on the policy.

Replicas take turns through a Lease, so two never both repair.`

// newControllerCommand returns `controller`, which binds its flags to
// controller.ManagerOptions and calls run.
func newControllerCommand(run func(context.Context, controller.ManagerOptions) error) *cobra.Command {
	o := controller.NewManagerOptions()
	logLevel := "info"
	var cluster kubeFlags
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Keep every Pod's sidecars conformant: metrics, Events and, if asked, upgrades in place or rollouts that repair them",
		Long:  controllerLong,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
			// The Pod cache is most of the live heap, about 1 KiB a Pod. A
			// soft limit under the Deployment's 512 MiB lets the heap of a
			// 150,000-Pod fleet grow to it before the collector works harder
			// (docs/performance.md); a limit under the live heap would have
			// it collect without end. GOMEMLIMIT overrides it.
			setMemoryLimit(400 << 20)
			return run(cmd.Context(), o)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.CatalogPath, "catalog", o.CatalogPath, "catalog file or directory (the mounted ConfigMap), watched for changes; the embedded default if empty")
	fs.StringVar(&o.StatusKeyDir, "status-key-dir", o.StatusKeyDir, "directory holding the keys the webhook signs status entries with (the Secret "+statuskey.SecretName+" mounted); without it, signed entries read unverified (right only where the compiled admission policies inject alone)")
	fs.StringVar((*string)(&o.Repair), "repair", string(o.Repair), "off; restart: roll out the workloads whose Pods need repair; in-place: upgrade stale Pods whose sidecars differ only in image without restarting them; auto: in place where it can, a rollout elsewhere")
	fs.BoolVar(&o.DryRun, "dry-run", o.DryRun, "with --repair: log and count the rollouts and upgrades, start none")
	fs.IntVar(&o.MaxConcurrentRestarts, "max-concurrent-restarts", o.MaxConcurrentRestarts, "rollouts in progress at once")
	fs.IntVar(&o.MaxUnavailable, "max-unavailable", o.MaxUnavailable, "per workload, Pods upgraded in place at once")
	fs.DurationVar(&o.UpgradeTimeout, "upgrade-timeout", o.UpgradeTimeout, "how long an upgraded sidecar has to run and be ready before the workload's upgrade stops")
	fs.BoolVar(&o.UpgradeBarePods, "upgrade-bare-pods", o.UpgradeBarePods, "also upgrade in place Pods no Deployment, StatefulSet or DaemonSet owns")
	fs.DurationVar(&o.AuditInterval, "audit-interval", o.AuditInterval, "full resync; between them the controller follows events")
	fs.StringVar(&o.MetricsAddr, "metrics-addr", o.MetricsAddr, `address of /metrics; "0" disables it`)
	fs.StringVar(&o.HealthAddr, "health-addr", o.HealthAddr, `address of /healthz and /readyz; "0" disables them`)
	fs.BoolVar(&o.AdmissionPolicies, "admission-policies", o.AdmissionPolicies, "compile the catalog to a MutatingAdmissionPolicy and a ValidatingAdmissionPolicy and keep them applied (inject without the webhook; catalog compile shows them)")
	fs.BoolVar(&o.LeaderElection, "leader-elect", o.LeaderElection, "take turns with other replicas through a Lease")
	fs.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", o.LeaderElectionNamespace, "namespace of the Lease")
	fs.StringVar(&logLevel, "log-level", logLevel, "debug, info or error")
	fs.StringVar(&cluster.kubeconfig, "kubeconfig", "", "kubeconfig; in-cluster config or $KUBECONFIG if empty")
	return cmd
}
