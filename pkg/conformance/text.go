package conformance

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	corev1 "k8s.io/api/core/v1"

	"github.com/podpatterns/sidecar-injector/pkg/inject"
)

// WriteText prints the report as `audit` does: the namespaces that
// should opt in, a line per workload that needs attention (every one
// with all) with the command that repairs it, the templates of each Pod
// that are not current, and a summary.
func (r *Report) WriteText(w io.Writer, all bool) error {
	fmt.Fprintf(w, "catalog: %s\n", r.Catalog)
	if len(r.Unlabelled) > 0 {
		fmt.Fprintln(w, "\nnamespaces where a policy requires templates but that did not opt in (the webhook never sees their Pods):")
		for _, ns := range r.Unlabelled {
			fmt.Fprintf(w, "  %s: kubectl label namespace %s %s=enabled\n", ns, ns, inject.InjectionLabel)
		}
	}
	if err := writeWorkloads(w, r.Workloads(), all); err != nil {
		return err
	}
	for _, p := range r.Pods {
		if !all && !p.State.NeedsRepair() && p.State != NotWanted {
			continue
		}
		for _, t := range p.Templates {
			if t.State != Current {
				fmt.Fprintf(w, "  %s/%s: %s %s: %s\n", p.Namespace, p.Name, t.Name, t.State, t.Reason)
			}
		}
	}
	if len(r.Sidecars) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "\nSIDECARS\tNAMESPACE\tPODS\tREQUESTS\tLIMITS")
		for _, t := range r.Sidecars {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", t.Template, t.Namespace, t.Pods, resources(t.Requests), resources(t.Limits))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(r.Finished) > 0 {
		fmt.Fprintf(w, "\n%d finished Pods (Succeeded or Failed) not counted\n", len(r.Finished))
	}
	var summary []string
	for _, s := range States {
		summary = append(summary, fmt.Sprintf("%s %d", s, r.Summary[s]))
	}
	_, err := fmt.Fprintf(w, "\nsummary: %s\n", strings.Join(summary, ", "))
	return err
}

// writeWorkloads prints a line per workload that needs attention, or per
// workload with all, with its Pods' states and the command that repairs it.
func writeWorkloads(w io.Writer, workloads []Workload, all bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nNAMESPACE\tOWNER\tPODS\tREPAIR")
	listed := 0
	for _, wl := range workloads {
		if !all && !wl.Attention() {
			continue
		}
		listed++
		var counts []string
		for _, s := range States {
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

// resources reads "cpu 200m, memory 96Mi", or "-" for none.
func resources(l corev1.ResourceList) string {
	var parts []string
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := l[name]; ok {
			parts = append(parts, fmt.Sprintf("%s %s", name, q.String()))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}
