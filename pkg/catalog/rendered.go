package catalog

import (
	"cmp"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	psapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

// validateRenderings renders every template with its defaults (and a
// sample value of its type for a required parameter) and refuses what
// could never work in a Pod: a local port that is not a port, a probe on
// a port bound to localhost only, an env name the app gets twice, and a
// container name two templates share when one of them is required, so
// the denial would ask an app team to rename a container it does not
// own.
func validateRenderings(c *Catalog) []error {
	var errs []error
	owner := map[string]string{} // container name -> template
	required := map[string]bool{}
	for _, p := range c.policies {
		for _, name := range p.Required {
			required[name] = true
		}
	}
	for _, name := range c.names {
		t := c.templates[name]
		at := fmt.Sprintf("templates[%s]", name)
		r := t.Render(sampleValues(t))
		errs = append(errs, renderedPorts(r, at)...)
		if err := podSecurity(t, r, at); err != nil {
			errs = append(errs, err)
		}
		var env []string
		for i, e := range r.AppEnv {
			if slices.Contains(env, e.Name) {
				errs = append(errs, fmt.Errorf("%s.appEnv[%d].name: Duplicate value: %q", at, i, e.Name))
			}
			env = append(env, e.Name)
		}
		for _, cn := range t.ContainerNames() {
			if other, ok := owner[cn]; ok && (required[name] || required[other]) {
				errs = append(errs, fmt.Errorf("%s: container name %q is also a container of template %q, and one of them is required: a Pod would be denied for a name its team does not own; rename one", at, cn, other))
			}
			owner[cn] = name
		}
	}
	return errs
}

// renderedPorts checks a rendering's local ports and its probes.
func renderedPorts(r *Content, at string) []error {
	var errs []error
	for i, lp := range r.LocalPorts {
		if n, err := strconv.Atoi(lp); err != nil || n < 1 || n > 65535 {
			errs = append(errs, fmt.Errorf("%s.localPorts[%d]: Invalid value: %q: renders to no port with the defaults; every Pod would be denied", at, i, lp))
		}
	}
	for i, ctr := range slices.Concat(r.InitContainers, r.Containers) {
		for name, probe := range map[string]*corev1.Probe{"livenessProbe": ctr.LivenessProbe, "readinessProbe": ctr.ReadinessProbe, "startupProbe": ctr.StartupProbe} {
			if port, ok := networkPort(probe); ok && slices.Contains(r.LocalPorts, port) {
				errs = append(errs, fmt.Errorf("%s.containers[%d].%s: Invalid value: %q: the kubelet probes the Pod's IP, but this port is one of localPorts, bound to localhost only; use an exec probe that connects to 127.0.0.1", at, i, name, port))
			}
		}
	}
	slices.SortFunc(errs, func(a, b error) int { return cmp.Compare(a.Error(), b.Error()) }) // the map above
	return errs
}

// sampleValues are the values a template is checked with at load: its
// defaults, and for a required parameter a value of its type.
func sampleValues(t *Template) Values {
	samples := map[ParameterType]string{Path: "/sample", Port: "1", HostPort: "sample.invalid:1", Duration: "1s", Quantity: "1"}
	values := Values{}
	for _, p := range t.Parameters {
		if p.Default == "" {
			values[p.Name] = samples[p.Type] // "" for text
		}
	}
	return values
}

// podSecurity checks a template's rendering with its defaults against
// the Pod Security level it declares (restricted unless it says
// otherwise): a Pod of its containers, as the engine adds them, and its
// volumes.
func podSecurity(t *Template, r *Content, at string) error {
	level, err := psapi.ParseLevel(t.Level())
	if err != nil {
		return fmt.Errorf("%s.podSecurity: Unsupported value: %q: supported values: \"restricted\", \"baseline\", \"privileged\"", at, t.PodSecurity)
	}
	spec := &corev1.PodSpec{Volumes: r.Volumes, InitContainers: r.InitContainers}
	for _, c := range r.Containers {
		if t.NativeSidecar {
			c.RestartPolicy = new(corev1.ContainerRestartPolicyAlways)
			spec.InitContainers = append(spec.InitContainers, c)
		} else {
			spec.Containers = append(spec.Containers, c)
		}
	}
	if len(spec.Containers) == 0 { // a Pod has an app container; this one is not the template's
		spec.Containers = []corev1.Container{{Name: "app", SecurityContext: restrictedApp()}}
	} else {
		spec.Containers = append(spec.Containers, corev1.Container{Name: "app", SecurityContext: restrictedApp()})
	}
	res := policy.AggregateCheckResults(evaluator.EvaluatePod(psapi.LevelVersion{Level: level, Version: psapi.LatestVersion()}, &metav1.ObjectMeta{}, spec))
	if !res.Allowed {
		return fmt.Errorf("%s: breaks Pod Security %s: %s: %s; fix the template, or set podSecurity to the level it needs", at, level, res.ForbiddenReason(), res.ForbiddenDetail())
	}
	return nil
}

// restrictedApp is the security context of an app that meets restricted.
func restrictedApp() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: new(false),
		RunAsNonRoot:             new(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// evaluator holds the Pod Security checks of the Kubernetes release the
// project is built with.
var evaluator = func() policy.Evaluator {
	e, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		panic(err) // the library's own checks: a build defect
	}
	return e
}()

// IgnoresSIGTERM reports whether c runs a shell script as PID 1 that
// neither traps TERM nor execs its program: such a shell ignores SIGTERM,
// so a Pod waits out its whole grace period to stop, and a Job's native
// sidecar is killed only when that period ends.
func IgnoresSIGTERM(c corev1.Container) bool {
	argv := slices.Concat(c.Command, c.Args)
	if len(argv) < 3 || argv[1] != "-c" {
		return false
	}
	switch path.Base(argv[0]) {
	case "sh", "bash", "ash", "dash":
	default:
		return false
	}
	script := strings.TrimSpace(argv[2])
	return !strings.HasPrefix(script, "exec ") && !(strings.Contains(script, "trap") && strings.Contains(script, "TERM"))
}

// DelaysStop says how c's preStop hook holds it up when its Pod is
// deleted (it sleeps, or runs or calls something named as a drain), or
// "" when it has none such. For a native sidecar that is a trap: the
// kubelet runs a native sidecar's preStop hook as soon as the Pod is
// deleted, beside the app's, not after the app has ended, so a drain
// there cuts the app off from what the sidecar serves while the app
// still runs.
func DelaysStop(c corev1.Container) string {
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		return ""
	}
	h := c.Lifecycle.PreStop
	switch {
	case h.Sleep != nil:
		return fmt.Sprintf("a preStop hook that sleeps %ds", h.Sleep.Seconds)
	case h.Exec != nil:
		cmd := strings.Join(h.Exec.Command, " ")
		for _, word := range []string{"sleep", "drain", "wait"} {
			if strings.Contains(strings.ToLower(cmd), word) {
				return fmt.Sprintf("a preStop hook that runs %q", brief(cmd))
			}
		}
	case h.HTTPGet != nil && strings.Contains(strings.ToLower(h.HTTPGet.Path), "drain"):
		return fmt.Sprintf("a preStop hook that calls %s", h.HTTPGet.Path)
	}
	return ""
}

// brief cuts s to what a warning quotes.
func brief(s string) string {
	if len(s) > 80 {
		return strings.ToValidUTF8(s[:80], "") + "..."
	}
	return s
}
