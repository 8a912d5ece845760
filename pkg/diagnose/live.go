package diagnose

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/manifest"
	"github.com/podpatterns/sidecar-injector/pkg/workload"
)

// Report is one Pod's findings, as `diagnose -o json` prints them.
type Report struct {
	Pod      string            `json:"pod"`
	Findings []Finding         `json:"findings"`
	Logs     map[string]string `json:"logs,omitempty"`
}

// Manifests checks every Pod and pod template of manifests (Pods,
// workloads, Lists) against cat, in order.
func Manifests(input []byte, cat *catalog.Catalog) ([]*Report, error) {
	docs, err := manifest.Split(bytes.NewReader(input))
	if err != nil {
		return nil, err
	}
	var reports []*Report
	for _, doc := range docs {
		pods, err := workload.PodsOf(doc.JSON)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc.Index, err)
		}
		for _, p := range pods {
			reports = append(reports, &Report{Pod: p.Name, Findings: Pod(p.Pod, cat)})
		}
	}
	return reports, nil
}

// Live reads Pod ns/name from the cluster and checks it against cat.
// With tail > 0 it also reads the last tail lines of each container's
// logs, and what they say happened comes first among the findings.
func Live(ctx context.Context, client kubernetes.Interface, ns, name string, cat *catalog.Catalog, tail int64) (*Report, error) {
	pod, err := client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	r := &Report{Pod: "Pod " + ns + "/" + name, Findings: Pod(pod, cat)}
	if tail > 0 {
		r.Logs = containerLogs(ctx, client, pod, tail)
		r.Findings = append(Logs(pod, r.Logs), r.Findings...)
	}
	return r, nil
}

// containerLogs reads the last lines of each container's log, and of its
// previous run when it restarted (a crashed container's reason is there).
func containerLogs(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod, tail int64) map[string]string {
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
			data, err := client.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: c.Name, TailLines: &tail, Previous: previous}).DoRaw(ctx)
			if err != nil {
				data = []byte("(no logs: " + err.Error() + ")\n")
			}
			text += string(data)
		}
		logs[c.Name] = text
	}
	return logs
}

// WriteText prints reports as `diagnose` does: per Pod its findings with
// their fixes, then the logs read, tail lines each.
func WriteText(w io.Writer, reports []*Report, tail int64) error {
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
		names := make([]string, 0, len(r.Logs))
		for name := range r.Logs {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			fmt.Fprintf(w, "--- logs of %s (last %d lines)\n%s", name, tail, r.Logs[name])
		}
	}
	return nil
}
