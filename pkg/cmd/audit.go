package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/conformance"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/pkg/manifest"
)

// The catalog the cluster's injector serves, as deploy/base installs it.
const (
	catalogNamespace = "sidecar-injector"
	catalogConfigMap = "sidecar-injector-catalog"
)

type auditFlags struct {
	file, catalogPath, output   string
	kubeconfig, context, namesp string
	allNamespaces, all          bool
	nsLabels                    map[string]string
}

// auditPod is one Pod's state, as -o json prints it.
type auditPod struct {
	Namespace string                 `json:"namespace"`
	Name      string                 `json:"name"`
	Owner     conformance.Owner      `json:"owner"`
	State     conformance.State      `json:"state"`
	Templates []conformance.Template `json:"templates"`
}

// auditReport is the whole answer; its JSON is stable for scripts.
type auditReport struct {
	Catalog string `json:"catalog"`
	// Unlabelled are namespaces a policy requires templates in that lack
	// the opt-in label: the webhook never sees their Pods.
	Unlabelled []string                  `json:"unlabelledNamespaces,omitempty"`
	Pods       []auditPod                `json:"pods"`
	Finished   []auditPod                `json:"finished,omitempty"`
	Summary    map[conformance.State]int `json:"summary"`
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

Exit codes: 0 nothing missing, stale or tampered; 1 something is; 2 bad input.`,
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
	fs.BoolVar(&f.all, "all", f.all, "also list workloads whose Pods are current or ask for nothing")
	fs.StringToStringVar(&f.nsLabels, "namespace-labels", f.nsLabels, "with -f: labels of the Pods' namespaces, for policies: k=v,k2=v2")
	fs.StringVar(&f.kubeconfig, "kubeconfig", f.kubeconfig, "kubeconfig; $KUBECONFIG or ~/.kube/config if empty")
	fs.StringVar(&f.context, "context", f.context, "kubeconfig context")
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
	var rep *auditReport
	var err error
	if f.file != "" {
		rep, err = f.offline(stdin)
	} else {
		rep, err = f.live(ctx)
	}
	if err != nil {
		return withCode(ExitBadInput, err)
	}
	if err := f.print(stdout, rep); err != nil {
		return err
	}
	for _, p := range rep.Pods {
		if p.State.NeedsRepair() {
			return withCode(ExitDenied, errors.New(""))
		}
	}
	return nil
}

func (f *auditFlags) offline(stdin io.Reader) (*auditReport, error) {
	cat, err := loadCatalogFlag(f.catalogPath)
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
	rep := newReport(describeCatalog(f.catalogPath))
	for _, doc := range docs {
		pods, err := podsOf(doc.JSON)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc.Index, err)
		}
		for _, p := range pods {
			rep.add(p, f.nsLabels, cat, nil)
		}
	}
	return rep, nil
}

// podsOf returns the Pods a document holds, itself or a List's items.
func podsOf(doc []byte) ([]*corev1.Pod, error) {
	head, err := manifest.ReadHead(doc)
	if err != nil {
		return nil, err
	}
	if head.APIVersion == "v1" && head.Kind == "List" {
		list := &corev1.List{}
		if err := json.Unmarshal(doc, list); err != nil {
			return nil, err
		}
		var out []*corev1.Pod
		for i, item := range list.Items {
			pods, err := podsOf(item.Raw)
			if err != nil {
				return nil, fmt.Errorf("items[%d]: %w", i, err)
			}
			out = append(out, pods...)
		}
		return out, nil
	}
	if head.APIVersion != "v1" || head.Kind != "Pod" {
		return nil, nil // workloads: their Pods are what runs
	}
	pod := &corev1.Pod{}
	if err := jsonv2.Unmarshal(doc, pod); err != nil { // as the API server reads it
		return nil, manifest.FieldError(err)
	}
	return []*corev1.Pod{pod}, nil
}

func (f *auditFlags) live(ctx context.Context) (*auditReport, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = f.kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: f.context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("no cluster to audit (use -f for files): %w", err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	cat, source, err := clusterCatalog(ctx, client, f.catalogPath)
	if err != nil {
		return nil, err
	}
	rep := newReport(source)
	namespaces, err := client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	owners := ownerCache{client: client, jobs: map[string]string{}}
	for _, ns := range namespaces.Items {
		optedIn := ns.Labels[inject.InjectionLabel] == "enabled"
		required := len(cat.Apply(ns.Labels).Required) > 0
		switch {
		case f.namesp != "" && ns.Name != f.namesp:
			continue
		case f.namesp == "" && !f.allNamespaces && !optedIn && !required:
			continue
		}
		if required && !optedIn {
			rep.Unlabelled = append(rep.Unlabelled, ns.Name)
		}
		pods, err := client.CoreV1().Pods(ns.Name).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for i := range pods.Items {
			rep.add(&pods.Items[i], ns.Labels, cat, owners.jobOwner(ctx))
		}
	}
	return rep, nil
}

// clusterCatalog is the catalog at path, or else the one the cluster's
// injector serves, and a name for it.
func clusterCatalog(ctx context.Context, client kubernetes.Interface, path string) (*catalog.Catalog, string, error) {
	if path != "" {
		cat, err := catalog.Load(path)
		return cat, path, err
	}
	cm, err := client.CoreV1().ConfigMaps(catalogNamespace).Get(ctx, catalogConfigMap, metav1.GetOptions{})
	if err != nil {
		return nil, "", fmt.Errorf("reading the cluster's catalog (or give --catalog): %w", err)
	}
	var sources []catalog.Source
	for _, key := range slices.Sorted(maps.Keys(cm.Data)) {
		if strings.HasSuffix(key, ".yaml") || strings.HasSuffix(key, ".yml") {
			sources = append(sources, catalog.Source{Name: key, Data: []byte(cm.Data[key])})
		}
	}
	cat, err := catalog.Parse(sources...)
	if err != nil {
		return nil, "", fmt.Errorf("configmap %s/%s: %w", catalogNamespace, catalogConfigMap, err)
	}
	return cat, fmt.Sprintf("configmap %s/%s", catalogNamespace, catalogConfigMap), nil
}

func describeCatalog(path string) string {
	if path == "" {
		return "embedded default"
	}
	return path
}

func newReport(source string) *auditReport {
	rep := &auditReport{Catalog: source, Pods: []auditPod{}, Summary: map[conformance.State]int{}}
	for _, s := range conformance.States {
		rep.Summary[s] = 0
	}
	return rep
}

// add classifies one Pod. Finished Pods are kept apart and not counted.
func (r *auditReport) add(pod *corev1.Pod, nsLabels map[string]string, cat *catalog.Catalog, jobOwner func(ns, job string) string) {
	res := conformance.Classify(pod, nsLabels, cat)
	p := auditPod{Namespace: pod.Namespace, Name: pod.Name, Owner: ownerOf(pod, jobOwner), State: res.State, Templates: res.Templates}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		r.Finished = append(r.Finished, p)
		return
	}
	r.Pods = append(r.Pods, p)
	r.Summary[res.State]++
}

// ownerOf names the workload that owns the Pod, a CronJob through its
// Job where jobOwner can tell.
func ownerOf(pod *corev1.Pod, jobOwner func(ns, job string) string) conformance.Owner {
	o := conformance.OwnerOf(pod)
	if o.Kind == "Job" && jobOwner != nil {
		if cron := jobOwner(pod.Namespace, o.Name); cron != "" {
			return conformance.Owner{Kind: "CronJob", Name: cron}
		}
	}
	return o
}

// ownerCache looks up the CronJob that owns a Job, once per Job.
type ownerCache struct {
	client kubernetes.Interface
	jobs   map[string]string
}

func (c ownerCache) jobOwner(ctx context.Context) func(ns, job string) string {
	return func(ns, job string) string {
		key := ns + "/" + job
		if cron, ok := c.jobs[key]; ok {
			return cron
		}
		cron := ""
		if j, err := c.client.BatchV1().Jobs(ns).Get(ctx, job, metav1.GetOptions{}); err == nil {
			if ref := metav1.GetControllerOf(j); ref != nil && ref.Kind == "CronJob" {
				cron = ref.Name
			}
		}
		c.jobs[key] = cron
		return cron
	}
}

// repair is the command that re-creates an owner's Pods.
func repair(ns string, o conformance.Owner) string {
	switch o.Kind {
	case "Deployment", "StatefulSet", "DaemonSet":
		return fmt.Sprintf("kubectl rollout restart %s/%s -n %s", strings.ToLower(o.Kind), o.Name, ns)
	case "Pod":
		return fmt.Sprintf("re-create the Pod (kubectl delete pod %s -n %s, then apply it again)", o.Name, ns)
	}
	return "its next run is injected; re-run it to repair now"
}

func (f *auditFlags) print(w io.Writer, rep *auditReport) error {
	if f.output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprintf(w, "catalog: %s\n", rep.Catalog)
	if len(rep.Unlabelled) > 0 {
		fmt.Fprintln(w, "\nnamespaces where a policy requires templates but that did not opt in (the webhook never sees their Pods):")
		for _, ns := range rep.Unlabelled {
			fmt.Fprintf(w, "  %s: kubectl label namespace %s %s=enabled\n", ns, ns, inject.InjectionLabel)
		}
	}
	type group struct {
		ns     string
		owner  conformance.Owner
		states map[conformance.State]int
		worst  conformance.State
	}
	groups := map[string]*group{}
	for _, p := range rep.Pods {
		key := p.Namespace + "/" + p.Owner.Kind + "/" + p.Owner.Name
		g := groups[key]
		if g == nil {
			g = &group{ns: p.Namespace, owner: p.Owner, states: map[conformance.State]int{}, worst: conformance.None}
			groups[key] = g
		}
		g.states[p.State]++
		g.worst = conformance.Worst(g.worst, p.State)
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nNAMESPACE\tOWNER\tPODS\tREPAIR")
	listed := 0
	for _, k := range keys {
		g := groups[k]
		if !f.all && (g.worst == conformance.Current || g.worst == conformance.None) {
			continue
		}
		listed++
		var counts []string
		for _, s := range conformance.States {
			if n := g.states[s]; n > 0 {
				counts = append(counts, fmt.Sprintf("%s %d", s, n))
			}
		}
		fix := "-"
		if g.worst.NeedsRepair() || g.worst == conformance.NotWanted {
			fix = repair(g.ns, g.owner)
		}
		fmt.Fprintf(tw, "%s\t%s %s\t%s\t%s\n", g.ns, g.owner.Kind, g.owner.Name, strings.Join(counts, ", "), fix)
	}
	if listed == 0 {
		fmt.Fprintln(tw, "(every workload is current or asks for nothing)\t\t\t")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, p := range rep.Pods {
		if f.all || p.State.NeedsRepair() || p.State == conformance.NotWanted {
			for _, t := range p.Templates {
				if t.State != conformance.Current {
					fmt.Fprintf(w, "  %s/%s: %s %s: %s\n", p.Namespace, p.Name, t.Name, t.State, t.Reason)
				}
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
