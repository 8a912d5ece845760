// Package diagnose checks a multi-container Pod for the mistakes that
// break the sidecar, ambassador and adapter patterns: a shared volume one
// side does not mount, paths that disagree, a reader that cannot read the
// writer's files, missing resources, port clashes, sidecars that keep a
// Job alive or start too late, and, for a live Pod, crashing containers.
package diagnose

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
)

// Severity of a finding; an Error makes `diagnose` exit 1.
type Severity string

// Severities, most severe first.
const (
	Error   Severity = "error"
	Warning Severity = "warning"
)

// Finding is one problem and how to fix it.
type Finding struct {
	Severity  Severity `json:"severity"`
	Check     string   `json:"check"`
	Container string   `json:"container,omitempty"`
	Problem   string   `json:"problem"`
	Fix       string   `json:"fix"`
}

// Pod runs every check; the catalog explains what injected templates
// should look like. Findings come sorted: errors first, then by check and
// container.
func Pod(pod *corev1.Pod, cat *catalog.Catalog) []Finding {
	d := &diagnosis{pod: pod, cat: cat, findings: []Finding{}}
	d.index()
	for _, check := range []func(){
		d.status, d.hostNetwork, d.sharedVolumes, d.templateDrift, d.users, d.resources, d.ports, d.completion, d.startOrder, d.sidecarStop, d.statuses,
	} {
		check()
	}
	sort.SliceStable(d.findings, func(i, j int) bool {
		a, b := d.findings[i], d.findings[j]
		if a.Severity != b.Severity {
			return a.Severity == Error
		}
		if a.Check != b.Check {
			return a.Check < b.Check
		}
		return a.Container < b.Container
	})
	return d.findings
}

// HasErrors reports whether any finding is an error.
func HasErrors(fs []Finding) bool {
	for _, f := range fs {
		if f.Severity == Error {
			return true
		}
	}
	return false
}

type diagnosis struct {
	pod      *corev1.Pod
	cat      *catalog.Catalog
	findings []Finding

	all       []*corev1.Container          // running containers: app, native sidecars
	mounts    map[string][]mount           // volume -> who mounts it
	injected  map[string]*catalog.Template // injected container -> its template
	templates []*catalog.Template          // from the status annotation
}

type mount struct {
	c *corev1.Container
	m corev1.VolumeMount
}

func (d *diagnosis) add(sev Severity, check, container, problem, fix string) {
	d.findings = append(d.findings, Finding{sev, check, container, problem, fix})
}

func (d *diagnosis) index() {
	d.mounts = map[string][]mount{}
	d.injected = map[string]*catalog.Template{}
	for i := range d.pod.Spec.InitContainers {
		c := &d.pod.Spec.InitContainers[i]
		if native(c) {
			d.all = append(d.all, c)
		}
	}
	for i := range d.pod.Spec.Containers {
		d.all = append(d.all, &d.pod.Spec.Containers[i])
	}
	for _, c := range d.all {
		for _, m := range c.VolumeMounts {
			d.mounts[m.Name] = append(d.mounts[m.Name], mount{c, m})
		}
	}
	var status inject.Status
	if v, ok := d.pod.Annotations[inject.StatusAnnotation]; ok && d.cat != nil {
		if json.Unmarshal([]byte(v), &status) == nil {
			for _, in := range status.Templates {
				if t := d.cat.Template(in.Name); t != nil {
					d.templates = append(d.templates, t)
					for _, c := range append(t.InitContainers, t.Containers...) {
						d.injected[c.Name] = t
					}
				}
			}
		}
	}
}

// status: every template the status annotation names is in the Pod as
// the catalog renders it, as the webhook checks before it trusts one.
func (d *diagnosis) status() {
	if d.cat == nil {
		return
	}
	claims, err := inject.VerifyStatus(d.pod, d.cat, nil)
	if err != nil {
		d.add(Error, "status-mismatch", "", "the status annotation cannot be checked: "+err.Error(), "fix the Pod's annotations")
		return
	}
	for _, c := range claims {
		if c.Unverifiable && c.Rendered {
			continue // diagnose has no key; the content is the entry's, and today's rendering
		}
		if c.Reason != "" {
			d.add(Error, "status-mismatch", "", fmt.Sprintf("annotation %s names %s, but the Pod does not carry it: %s", inject.StatusAnnotation, c.Name, c.Reason),
				"re-create the Pod so the webhook injects it afresh; the webhook never takes a status it cannot verify")
		}
	}
}

// hostNetwork: on the host's network, every port an injected container
// declares is a port of the node.
func (d *diagnosis) hostNetwork() {
	if !d.pod.Spec.HostNetwork {
		return
	}
	for _, c := range d.all {
		t := d.injected[c.Name]
		if t == nil || t.HostNetwork == "allowed" {
			continue
		}
		for _, p := range c.Ports {
			d.add(Error, "host-network", c.Name, fmt.Sprintf("the Pod runs on the host's network, so port %d of template %s is port %d of the node", p.ContainerPort, t.Name, p.ContainerPort),
				"run the Pod off the host network, or have the cluster admin set hostNetwork: allowed on the template")
		}
	}
}

func native(c *corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

func (d *diagnosis) container(name string) *corev1.Container {
	for _, c := range d.all {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// sharedVolumes: a template's shared volume must be mounted on both sides,
// and someone must be able to write it.
func (d *diagnosis) sharedVolumes() {
	shared := map[string]string{} // volume -> template
	for _, t := range d.templates {
		if len(t.AppVolumeMounts) == 0 {
			continue
		}
		for _, v := range t.Volumes {
			shared[v.Name] = t.Name
		}
	}
	for _, v := range d.pod.Spec.Volumes {
		ms := d.mounts[v.Name]
		if t, ok := shared[v.Name]; ok && len(ms) < 2 {
			who := "no container"
			if len(ms) == 1 {
				who = "only " + ms[0].c.Name
			}
			d.add(Error, "volume-not-shared", "", fmt.Sprintf("volume %q of template %s is mounted by %s; the pattern shares it between the app and the sidecar", v.Name, t, who),
				fmt.Sprintf("mount %q in both containers (check %s on the app)", v.Name, inject.TargetContainersAnnotation))
		}
		if len(ms) >= 2 && allReadOnly(ms) {
			d.add(Error, "volume-read-only", ms[0].c.Name, fmt.Sprintf("every container mounts volume %q read-only, so nothing can write what the others read", v.Name),
				"drop readOnly on the writing side's mount")
		}
	}
}

func allReadOnly(ms []mount) bool {
	for _, m := range ms {
		if !m.m.ReadOnly {
			return false
		}
	}
	return true
}

// templateDrift: what the injected templates expect against what the Pod has.
func (d *diagnosis) templateDrift() {
	for _, t := range d.templates {
		values := catalog.Values{}
		for _, p := range t.Parameters {
			if v, ok := d.pod.Annotations[inject.ParameterAnnotation(t.Name, p.Name)]; ok {
				values[p.Name] = v
			}
		}
		want := t.Render(values)
		for _, wc := range append(want.InitContainers, want.Containers...) {
			c := d.container(wc.Name)
			if c == nil {
				continue
			}
			for _, wm := range wc.VolumeMounts {
				got := mountOf(c.VolumeMounts, wm.Name)
				switch {
				case got == nil:
					d.add(Error, "template-mismatch", c.Name, fmt.Sprintf("template %s mounts volume %q at %s, but the container does not mount it", t.Name, wm.Name, wm.MountPath), "re-create the Pod so the webhook injects it afresh")
				case got.MountPath != wm.MountPath:
					d.add(Error, "template-mismatch", c.Name, fmt.Sprintf("volume %q is mounted at %s; template %s expects %s", wm.Name, got.MountPath, t.Name, wm.MountPath), "mount it where the template expects, or set the template's parameter")
				case got.ReadOnly && !wm.ReadOnly:
					d.add(Error, "volume-read-only", c.Name, fmt.Sprintf("volume %q is mounted read-only on the side that writes it (template %s)", wm.Name, t.Name), "drop readOnly from this mount")
				}
			}
		}
		for _, app := range d.pod.Spec.Containers {
			if d.injected[app.Name] != nil {
				continue
			}
			for _, wm := range want.AppVolumeMounts {
				if got := mountOf(app.VolumeMounts, wm.Name); got != nil && got.MountPath != wm.MountPath {
					d.add(Error, "template-mismatch", app.Name, fmt.Sprintf("the app mounts volume %q at %s; template %s shares it at %s", wm.Name, got.MountPath, t.Name, wm.MountPath), "use the template's path, or set its parameter annotation so both sides agree")
				}
			}
			for _, we := range want.AppEnv {
				for _, e := range app.Env {
					if e.Name == we.Name && e.ValueFrom == nil && e.Value != we.Value {
						d.add(Warning, "template-mismatch", app.Name, fmt.Sprintf("%s is %q; template %s provides %q", e.Name, e.Value, t.Name, we.Value), "remove the app's own value, or set the template's parameter to match")
					}
				}
			}
		}
	}
}

// mountOf returns c's mount of volume, or nil.
func mountOf(ms []corev1.VolumeMount, volume string) *corev1.VolumeMount {
	for i := range ms {
		if ms[i].Name == volume {
			return &ms[i]
		}
	}
	return nil
}

// users: containers sharing a volume as different users need fsGroup.
func (d *diagnosis) users() {
	psc := d.pod.Spec.SecurityContext
	if psc != nil && psc.FSGroup != nil {
		return
	}
	names := make([]string, 0, len(d.mounts))
	for v := range d.mounts {
		names = append(names, v)
	}
	sort.Strings(names)
	for _, v := range names {
		ms := d.mounts[v]
		users := map[string][]string{}
		for _, m := range ms {
			u := "the image's user"
			if id := effectiveUser(psc, m.c); id != nil {
				u = fmt.Sprint(*id)
			}
			users[u] = append(users[u], m.c.Name)
		}
		if len(users) > 1 {
			var parts []string
			for u, cs := range users {
				parts = append(parts, strings.Join(cs, ",")+" as "+u)
			}
			sort.Strings(parts)
			d.add(Warning, "users-differ", "", fmt.Sprintf("volume %q is shared by containers running as different users (%s) and the Pod sets no fsGroup; one side may not read what the other writes", v, strings.Join(parts, "; ")),
				"set spec.securityContext.fsGroup, or run both sides as one user")
		}
	}
}

// effectiveUser is the user c runs as: its own runAsUser, else the Pod's.
func effectiveUser(psc *corev1.PodSecurityContext, c *corev1.Container) *int64 {
	if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
		return c.SecurityContext.RunAsUser
	}
	if psc != nil {
		return psc.RunAsUser
	}
	return nil
}

func (d *diagnosis) resources() {
	for _, c := range d.all {
		var missing []string
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := c.Resources.Requests[r]; !ok {
				missing = append(missing, "requests."+string(r))
			}
			if _, ok := c.Resources.Limits[r]; !ok {
				missing = append(missing, "limits."+string(r))
			}
		}
		if len(missing) > 0 && len(d.all) > 1 {
			d.add(Warning, "resources", c.Name, fmt.Sprintf("no %s: in a multi-container Pod one container can starve the others", strings.Join(missing, ", ")),
				"set requests and limits for CPU and memory on every container")
		}
	}
}

func (d *diagnosis) ports() {
	owner := map[string]string{}
	for _, c := range d.all {
		for _, p := range c.Ports {
			proto := p.Protocol
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			key := fmt.Sprintf("%d/%s", p.ContainerPort, proto)
			if prev, ok := owner[key]; ok {
				d.add(Error, "port-conflict", c.Name, fmt.Sprintf("port %s is also declared by %s; containers share one network namespace, so one of them cannot bind it", key, prev), "move one container to another port")
				continue
			}
			owner[key] = c.Name
		}
	}
}

func (d *diagnosis) completion() {
	rp := d.pod.Spec.RestartPolicy
	if rp != corev1.RestartPolicyNever && rp != corev1.RestartPolicyOnFailure {
		return
	}
	for _, c := range d.pod.Spec.Containers {
		if t := d.injected[c.Name]; t != nil {
			d.add(Error, "job-sidecar", c.Name, fmt.Sprintf("the Pod's restartPolicy is %s but sidecar %s (template %s) is a regular container: it never exits, so the Pod never completes", rp, c.Name, t.Name),
				"make it a native sidecar (an init container with restartPolicy: Always); re-creating the Pod through the webhook does this")
		}
	}
}

func (d *diagnosis) startOrder() {
	for _, c := range d.pod.Spec.Containers {
		t := d.injected[c.Name]
		if t == nil {
			continue
		}
		if t.NativeSidecar || t.Pattern == catalog.Ambassador {
			d.add(Warning, "start-order", c.Name, fmt.Sprintf("template %s (%s) should start before the app, but %s is a regular container, started alongside it", t.Name, t.Pattern, c.Name),
				"run it as a native sidecar (init container with restartPolicy: Always) so the app starts after it")
		}
	}
}

// sidecarStop: a native sidecar whose preStop hook holds it up. The
// kubelet runs it when the Pod is deleted, beside the app's, so the app
// loses the sidecar while it still runs.
func (d *diagnosis) sidecarStop() {
	for _, c := range d.pod.Spec.InitContainers {
		if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			continue
		}
		if delay := catalog.DelaysStop(c); delay != "" {
			d.add(Warning, "sidecar-prestop", c.Name, fmt.Sprintf("native sidecar %s has %s: when the Pod is deleted the kubelet runs it at once, beside the app's, not after the app has ended, so the app loses the sidecar while it still runs", c.Name, delay),
				"drop the hook and have the sidecar stop on SIGTERM, which the kubelet sends native sidecars only after the app has ended")
		}
	}
}

// statuses: a live Pod's containers.
func (d *diagnosis) statuses() {
	all := append(append([]corev1.ContainerStatus(nil), d.pod.Status.InitContainerStatuses...), d.pod.Status.ContainerStatuses...)
	for _, s := range all {
		if w := s.State.Waiting; w != nil {
			switch w.Reason {
			case "CrashLoopBackOff":
				d.add(Error, "crashloop", s.Name, "the container keeps crashing (CrashLoopBackOff): "+w.Message, "read its logs: diagnose --logs, or kubectl logs --previous -c "+s.Name)
			case "ImagePullBackOff", "ErrImagePull", "InvalidImageName":
				d.add(Error, "image-pull", s.Name, fmt.Sprintf("the image %q cannot be pulled (%s): %s", s.Image, w.Reason, w.Message), "check the image name and tag, and imagePullSecrets for a private registry")
			}
		}
		if t := s.LastTerminationState.Terminated; t != nil && t.Reason == "OOMKilled" {
			d.add(Error, "oom-killed", s.Name, "the container was killed for exceeding its memory limit (OOMKilled)", "raise its memory limit, or lower what it buffers")
		}
		if s.RestartCount > 0 {
			d.add(Warning, "restarts", s.Name, fmt.Sprintf("the container restarted %d times", s.RestartCount), "read its previous logs: kubectl logs --previous -c "+s.Name)
		}
	}
}
