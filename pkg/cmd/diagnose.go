package cmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/diagnose"
	"github.com/podpatterns/sidecar-injector/pkg/manifest"
	"github.com/podpatterns/sidecar-injector/pkg/workload"
)

type diagnoseFlags struct {
	file, catalogPath, output string
	cluster                   kubeFlags
	namesp                    string
	logs                      bool
	tail                      int64
}

// report is one Pod's findings, as `-o json` prints them.
type report struct {
	Pod      string             `json:"pod"`
	Findings []diagnose.Finding `json:"findings"`
	Logs     map[string]string  `json:"logs,omitempty"`
}

func newDiagnoseCommand() *cobra.Command {
	f := &diagnoseFlags{output: "text", tail: 20}
	cmd := &cobra.Command{
		Use:   "diagnose (-f FILE|- | -n NAMESPACE POD)",
		Short: "Check a multi-container Pod for broken sharing, users, resources, ports and sidecar lifecycles",
		Long: `Check a multi-container Pod for the mistakes that break the sidecar,
ambassador and adapter patterns: a shared volume one side does not mount,
paths or env that disagree with the template that injected them, a
read-only writer, containers sharing a volume as different users without
fsGroup, missing requests and limits, two containers on one port, a Job
kept alive by a classic sidecar, a sidecar that starts after the app, and
for a live Pod restarts, OOMKilled, CrashLoopBackOff and image pull errors.

` + exitCodes("an error-level finding"),
		Example: `  sidecar-injector diagnose -f pod.yaml
  sidecar-injector inject -f app.yaml | sidecar-injector diagnose -f -
  sidecar-injector diagnose -n shop checkout-7d9c5b8f6d-x2k4p --logs`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.run(cmd.Context(), args, cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&f.file, "filename", "f", f.file, `manifest file, or "-" for standard input`)
	fs.StringVar(&f.catalogPath, "catalog", f.catalogPath, "catalog that injected the Pod; the embedded default if empty")
	fs.StringVarP(&f.output, "output", "o", f.output, "text or json")
	fs.StringVar(&f.cluster.kubeconfig, "kubeconfig", "", "kubeconfig for a live Pod; $KUBECONFIG or ~/.kube/config if empty")
	fs.StringVar(&f.cluster.context, "context", "", "kubeconfig context")
	fs.StringVarP(&f.namesp, "namespace", "n", f.namesp, "namespace of a live Pod; the context's if empty")
	fs.BoolVar(&f.logs, "logs", f.logs, "also print the last lines of each container's logs (live Pods)")
	fs.Int64Var(&f.tail, "tail", f.tail, "log lines per container with --logs")
	return cmd
}

func (f *diagnoseFlags) run(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	if f.output != "text" && f.output != "json" {
		return withCode(ExitBadInput, fmt.Errorf("--output %q not supported; use text or json", f.output))
	}
	if (f.file == "") == (len(args) == 0) {
		return withCode(ExitBadInput, errors.New("give either -f FILE or the name of a live Pod"))
	}
	cat, err := catalog.LoadOrDefault(f.catalogPath)
	if err != nil {
		return withCode(ExitBadInput, err)
	}
	var reports []*report
	if f.file != "" {
		reports, err = f.fromFile(stdin, cat)
	} else {
		reports, err = f.live(ctx, args[0], cat)
	}
	if err != nil {
		return withCode(ExitBadInput, err)
	}
	if err := f.print(stdout, reports); err != nil {
		return err
	}
	failing := 0
	for _, r := range reports {
		if diagnose.HasErrors(r.Findings) {
			failing++
		}
	}
	if failing > 0 {
		return found("%d of %d Pods have an error-level finding", failing, len(reports))
	}
	return nil
}

func (f *diagnoseFlags) fromFile(stdin io.Reader, cat *catalog.Catalog) ([]*report, error) {
	input, err := readInput(f.file, stdin)
	if err != nil {
		return nil, err
	}
	docs, err := manifest.Split(bytes.NewReader(input))
	if err != nil {
		return nil, err
	}
	var reports []*report
	for _, doc := range docs {
		pods, err := workload.PodsOf(doc.JSON)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc.Index, err)
		}
		for _, p := range pods {
			reports = append(reports, &report{Pod: p.Name, Findings: diagnose.Pod(p.Pod, cat)})
		}
	}

	return reports, nil
}

func (f *diagnoseFlags) live(ctx context.Context, name string, cat *catalog.Catalog) ([]*report, error) {
	client, ns, err := f.cluster.client()
	if err != nil {
		return nil, fmt.Errorf("no cluster to read Pod %s from: %w", name, err)
	}
	if f.namesp != "" {
		ns = f.namesp
	}
	pod, err := client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	r := &report{Pod: "Pod " + ns + "/" + name, Findings: diagnose.Pod(pod, cat)}
	if f.logs {
		r.Logs = f.containerLogs(ctx, client, pod)
		// What the logs say happened comes first: it is what happened.
		r.Findings = append(diagnose.Logs(pod, r.Logs), r.Findings...)
	}
	return []*report{r}, nil
}

// containerLogs reads the last lines of each container's log, and of its
// previous run when it restarted (a crashed container's reason is there).
func (f *diagnoseFlags) containerLogs(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod) map[string]string {
	restarted := map[string]bool{}
	for _, s := range slices.Concat(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses) {
		restarted[s.Name] = s.RestartCount > 0
	}
	logs := map[string]string{}
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		var text string
		for _, previous := range []bool{true, false} {
			if previous && !restarted[c.Name] {
				continue
			}
			data, err := client.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: c.Name, TailLines: &f.tail, Previous: previous}).DoRaw(ctx)
			if err != nil {
				data = []byte("(no logs: " + err.Error() + ")\n")
			}
			text += string(data)
		}
		logs[c.Name] = text
	}
	return logs
}

func (f *diagnoseFlags) print(w io.Writer, reports []*report) error {
	if f.output == "json" {
		// One shape whatever the count, for scripts.
		return writeJSON(w, struct {
			Pods []*report `json:"pods"`
		}{reports})
	}
	if len(reports) == 0 {
		_, err := fmt.Fprintln(w, "no Pod or pod template in the input: nothing to check")
		return err
	}
	for i, r := range reports {
		if i > 0 {
			fmt.Fprintln(w)
		}
		switch len(r.Findings) {
		case 0:
			fmt.Fprintf(w, "%s: no findings\n", r.Pod)
		case 1:
			fmt.Fprintf(w, "%s: 1 finding\n", r.Pod)
		default:
			fmt.Fprintf(w, "%s: %d findings\n", r.Pod, len(r.Findings))
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, fd := range r.Findings {
			container := fd.Container
			if container == "" {
				container = "-"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", strings.ToUpper(string(fd.Severity)), container, fd.Check, fd.Problem)
			fmt.Fprintf(tw, "  \t\t\tfix: %s\n", fd.Fix)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, name := range sortedKeys(r.Logs) {
			fmt.Fprintf(w, "--- logs of %s (last %d lines)\n%s", name, f.tail, r.Logs[name])
		}
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
