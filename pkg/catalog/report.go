package catalog

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// Warnings are what `catalog validate` warns about in a valid catalog:
// each image pinned by tag only, a shell as PID 1 that ignores SIGTERM,
// a native sidecar whose preStop hook delays its stop.
func (c *Catalog) Warnings() []string {
	var out []string
	for _, img := range c.Images() {
		if !img.Pinned() {
			out = append(out, fmt.Sprintf("%s: %s is pinned by tag only; a retagged image changes what runs (sidecar-injector catalog pin)", img.Path, img.Ref))
		}
	}
	for _, name := range c.Names() {
		t := c.Template(name)
		for _, ctr := range t.Containers {
			if IgnoresSIGTERM(ctr) {
				out = append(out, fmt.Sprintf("templates[%s] container %q runs a shell as PID 1 that ignores SIGTERM: every Pod waits out its grace period to stop, and a Job's sidecar ends only then; trap TERM (trap 'exit 0' TERM, and sleep N & wait $!) or exec the program", name, ctr.Name))
			}
			if delay := DelaysStop(ctr); delay != "" && t.NativeSidecar {
				out = append(out, fmt.Sprintf("templates[%s] container %q is a native sidecar with %s: the kubelet runs it as soon as the Pod is deleted, beside the app's, not after the app has ended, so the app loses the sidecar while it still runs; drop the hook and stop on SIGTERM", name, ctr.Name, delay))
			}
		}
	}
	return out
}

// WriteList prints each template as `catalog list` does: its name and
// pattern, description, Pod Security level, images and parameters.
func (c *Catalog) WriteList(w io.Writer) error {
	for i, name := range c.Names() {
		t := c.Template(name)
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s (%s)\n", t.Name, t.Pattern)
		fmt.Fprintf(w, "  %s\n", t.Description)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "  pod security\t%s\n", t.Level())
		for _, ctr := range append(t.InitContainers, t.Containers...) {
			fmt.Fprintf(tw, "  image\t%s\t%s\n", ctr.Name, ctr.Image)
		}
		for _, p := range t.Parameters {
			value := "default " + fmt.Sprintf("%q", p.Default)
			if p.Required {
				value = "required"
			}
			fmt.Fprintf(tw, "  parameter\t%s\t%s\t%s\n", p.Name, value, p.Description)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}
