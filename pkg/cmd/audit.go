package cmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/conformance"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/pkg/manifest"
	"github.com/podpatterns/sidecar-injector/pkg/statuskey"
	"github.com/podpatterns/sidecar-injector/pkg/workload"
)

type auditFlags struct {
	file, catalogPath, output string
	keyDir                    string
	cluster                   kubeFlags
	namesp                    string
	allNamespaces, all        bool
	nsLabels                  map[string]string
}

func newAuditCommand() *cobra.Command {
	f := &auditFlags{output: "text"}
	cmd := &cobra.Command{
		Use:   "audit [-n NAMESPACE | -A] | audit -f FILE|-",
		Short: "Find the Pods that lack, or run a stale or tampered copy of, what they should carry",
		Long: `Classify every Pod against what it should carry: the templates it asks
for, or its namespace's policies default or require, injected as the
catalog renders them today. Each Pod is current, stale (the catalog now
renders something else), missing (not injected), tampered (the status
annotation and the containers disagree), not-wanted (injected, no longer
asked for) or none. Pods are grouped by the workload that owns them, with
the command that repairs it.

Live, it reads the catalog the cluster's injector serves (the ConfigMap
sidecar-injector/sidecar-injector-catalog) unless --catalog is given, and
looks at every namespace that opted in plus every namespace a policy with
required templates matches. With -f it reads manifests or the output of
kubectl get pods -A -o yaml.

The webhook signs each status entry with a key of the Secret
sidecar-injector/sidecar-injector-status-key. Live, audit reads that
Secret; offline, give its keys with --status-key-dir. Without them a
signed entry is unverified, never current: the content is still checked
against the entry, and a mismatch is tampered.

` + exitCodes("a Pod is missing, stale or tampered"),
		Example: `  sidecar-injector audit
  sidecar-injector audit -n shop --all
  kubectl get pods -A -o yaml | sidecar-injector audit -f - -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd.Context(), cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&f.file, "filename", "f", f.file, `manifests to audit offline, or "-" for standard input`)
	fs.StringVar(&f.catalogPath, "catalog", f.catalogPath, "catalog file or directory; live, the cluster's catalog ConfigMap if empty, offline the embedded default")
	fs.StringVarP(&f.output, "output", "o", f.output, "text or json")
	fs.StringVar(&f.keyDir, "status-key-dir", f.keyDir, "directory holding the status keys (current, previous) that verify the webhook's signed status entries; live, the Secret "+catalog.ConfigMapNamespace+"/"+statuskey.SecretName+" if empty; without keys those entries read unverified")
	fs.BoolVar(&f.all, "all", f.all, "also list workloads whose Pods are current or ask for nothing")
	fs.StringToStringVar(&f.nsLabels, "namespace-labels", f.nsLabels, "with -f: labels of the Pods' namespaces, for policies: k=v,k2=v2")
	fs.StringVar(&f.cluster.kubeconfig, "kubeconfig", "", "kubeconfig; $KUBECONFIG or ~/.kube/config if empty")
	fs.StringVar(&f.cluster.context, "context", "", "kubeconfig context")
	fs.StringVarP(&f.namesp, "namespace", "n", f.namesp, "audit this namespace only")
	fs.BoolVarP(&f.allNamespaces, "all-namespaces", "A", f.allNamespaces, "audit every namespace, opted in or not")
	return cmd
}

func (f *auditFlags) run(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	if f.output != "text" && f.output != "json" {
		return withCode(ExitBadInput, fmt.Errorf("--output %q not supported; use text or json", f.output))
	}
	if f.namesp != "" && f.allNamespaces {
		return withCode(ExitBadInput, errors.New("-n and -A go apart"))
	}
	var rep *conformance.Report
	var err error
	if f.file != "" {
		rep, err = f.offline(stdin)
	} else {
		rep, err = f.live(ctx)
	}
	if err != nil {
		return withCode(ExitBadInput, err)
	}
	if f.output == "json" {
		err = writeJSON(stdout, rep)
	} else {
		err = printAudit(stdout, rep, f.all)
	}
	if err != nil {
		return err
	}
	if n := rep.NeedRepair(); n > 0 {
		return found("%d of %d Pods need repair", n, len(rep.Pods))
	}
	return nil
}

func (f *auditFlags) offline(stdin io.Reader) (*conformance.Report, error) {
	cat, err := catalog.LoadOrDefault(f.catalogPath)
	if err != nil {
		return nil, err
	}
	input, err := readInput(f.file, stdin)
	if err != nil {
		return nil, err
	}
	docs, err := manifest.Split(bytes.NewReader(input))
	if err != nil {
		return nil, err
	}
	keys, err := f.keys(nil)
	if err != nil {
		return nil, err
	}
	rep := conformance.NewReport(catalog.Describe(f.catalogPath))
	for _, doc := range docs {
		pods, err := workload.RunningPods(doc.JSON)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc.Index, err)
		}
		for _, p := range pods {
			rep.Add(p, f.nsLabels, cat, keys, conformance.OwnerOf(p))
		}
	}
	return rep, nil
}

func (f *auditFlags) live(ctx context.Context) (*conformance.Report, error) {
	client, _, err := f.cluster.client()
	if err != nil {
		return nil, fmt.Errorf("no cluster to audit (use -f for files): %w", err)
	}
	cat, source, err := clusterCatalog(ctx, client, f.catalogPath)
	if err != nil {
		return nil, err
	}
	keys, err := f.keys(func() (map[string][]byte, error) {
		s, err := client.CoreV1().Secrets(catalog.ConfigMapNamespace).Get(ctx, statuskey.SecretName, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return s.Data, nil
	})
	if err != nil {
		return nil, err
	}
	rep := conformance.NewReport(source)
	namespaces, err := client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	cronJobs := cronJobOf(ctx, client)
	for _, ns := range namespaces.Items {
		switch {
		case f.namesp != "" && ns.Name != f.namesp:
			continue
		case f.namesp == "" && !f.allNamespaces && !conformance.InScope(ns.Labels, cat):
			continue
		}
		if conformance.Unlabelled(ns.Labels, cat) {
			rep.Unlabelled = append(rep.Unlabelled, ns.Name)
		}
		pods, err := client.CoreV1().Pods(ns.Name).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for i := range pods.Items {
			pod := &pods.Items[i]
			owner := conformance.OwnerOf(pod)
			if cron := cronJobs(pod.Namespace, owner); cron != "" {
				owner = conformance.Owner{Kind: "CronJob", Name: cron}
			}
			rep.Add(pod, ns.Labels, cat, keys, owner)
		}
	}
	return rep, nil
}

// keys are the status keys of --status-key-dir, or else of the Secret
// secret reads (nil offline); none if the Secret cannot be read, which
// leaves signed entries unverified.
func (f *auditFlags) keys(secret func() (map[string][]byte, error)) (*inject.Keys, error) {
	switch {
	case f.keyDir != "":
		return statuskey.Read(f.keyDir)
	case secret == nil:
		return nil, nil
	}
	data, err := secret()
	if err != nil {
		return nil, nil // no right to read it, or no webhook: unverified entries say so
	}
	return statuskey.FromSecret(data)
}

// clusterCatalog is the catalog at path, or else the one the cluster's
// injector serves, and a name for it.
func clusterCatalog(ctx context.Context, client kubernetes.Interface, path string) (*catalog.Catalog, string, error) {
	if path != "" {
		cat, err := catalog.Load(path)
		return cat, path, err
	}
	source := fmt.Sprintf("configmap %s/%s", catalog.ConfigMapNamespace, catalog.ConfigMapName)
	cm, err := client.CoreV1().ConfigMaps(catalog.ConfigMapNamespace).Get(ctx, catalog.ConfigMapName, metav1.GetOptions{})
	if err != nil {
		return nil, "", fmt.Errorf("reading the cluster's catalog (or give --catalog): %w", err)
	}
	cat, err := catalog.ParseConfigMap(cm.Data)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", source, err)
	}
	return cat, source, nil
}

// cronJobOf names the CronJob that owns a Job owner, looked up once per
// Job; "" for other owners, or when it cannot tell.
func cronJobOf(ctx context.Context, client kubernetes.Interface) func(ns string, o conformance.Owner) string {
	seen := map[string]string{}
	return func(ns string, o conformance.Owner) string {
		if o.Kind != "Job" {
			return ""
		}
		key := ns + "/" + o.Name
		if cron, ok := seen[key]; ok {
			return cron
		}
		if j, err := client.BatchV1().Jobs(ns).Get(ctx, o.Name, metav1.GetOptions{}); err == nil {
			if ref := metav1.GetControllerOf(j); ref != nil && ref.Kind == "CronJob" {
				seen[key] = ref.Name
			}
		}
		return seen[key]
	}
}

func printAudit(w io.Writer, rep *conformance.Report, all bool) error {
	fmt.Fprintf(w, "catalog: %s\n", rep.Catalog)
	if len(rep.Unlabelled) > 0 {
		fmt.Fprintln(w, "\nnamespaces where a policy requires templates but that did not opt in (the webhook never sees their Pods):")
		for _, ns := range rep.Unlabelled {
			fmt.Fprintf(w, "  %s: kubectl label namespace %s %s=enabled\n", ns, ns, inject.InjectionLabel)
		}
	}
	if err := printWorkloads(w, rep.Workloads(), all); err != nil {
		return err
	}
	for _, p := range rep.Pods {
		if !all && !p.State.NeedsRepair() && p.State != conformance.NotWanted {
			continue
		}
		for _, t := range p.Templates {
			if t.State != conformance.Current {
				fmt.Fprintf(w, "  %s/%s: %s %s: %s\n", p.Namespace, p.Name, t.Name, t.State, t.Reason)
			}
		}
	}
	if len(rep.Finished) > 0 {
		fmt.Fprintf(w, "\n%d finished Pods (Succeeded or Failed) not counted\n", len(rep.Finished))
	}
	var summary []string
	for _, s := range conformance.States {
		summary = append(summary, fmt.Sprintf("%s %d", s, rep.Summary[s]))
	}
	_, err := fmt.Fprintf(w, "\nsummary: %s\n", strings.Join(summary, ", "))
	return err
}

// printWorkloads prints a line per workload that needs attention, or per
// workload with all, with its Pods' states and the command that repairs it.
func printWorkloads(w io.Writer, workloads []conformance.Workload, all bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nNAMESPACE\tOWNER\tPODS\tREPAIR")
	listed := 0
	for _, wl := range workloads {
		if !all && !wl.Attention() {
			continue
		}
		listed++
		var counts []string
		for _, s := range conformance.States {
			if n := wl.States[s]; n > 0 {
				counts = append(counts, fmt.Sprintf("%s %d", s, n))
			}
		}
		fix := "-"
		if wl.Attention() {
			fix = wl.Owner.Repair(wl.Namespace)
		}
		fmt.Fprintf(tw, "%s\t%s %s\t%s\t%s\n", wl.Namespace, wl.Owner.Kind, wl.Owner.Name, strings.Join(counts, ", "), fix)
	}
	if listed == 0 {
		fmt.Fprintln(tw, "(every workload is current or asks for nothing)\t\t\t")
	}
	return tw.Flush()
}
