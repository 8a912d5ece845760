package inject_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/pkg/inject/injecttest"
)

// A status annotation listing thousands of entries, the same template
// again and again or names the catalog lacks, costs one verification per
// template and one warning, not one per entry: the Pod's author writes
// the list.
func TestAStatusFloodGetsOneWarning(t *testing.T) {
	cat := testCatalog(t)
	for name, entry := range map[string]func(i int) string{
		"one template listed 20,000 times": func(int) string { return `{"name":"content-filler","hash":"x"}` },
		"20,000 names the catalog lacks":   func(i int) string { return fmt.Sprintf(`{"name":"t%d","hash":"x"}`, i) },
	} {
		t.Run(name, func(t *testing.T) {
			entries := make([]string, 20000)
			for i := range entries {
				entries[i] = entry(i)
			}
			pod := &corev1.Pod{}
			pod.Annotations = map[string]string{
				inject.InjectAnnotation: "content-filler",
				inject.StatusAnnotation: `{"templates":[` + strings.Join(entries, ",") + `]}`,
			}
			pod.Spec.Containers = []corev1.Container{{Name: "app", Image: "app:1"}}
			res, err := inject.Pod(pod, nil, cat, injecttest.Keys)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], inject.StatusAnnotation) {
				t.Errorf("warnings %q; want one, about the status", res.Warnings)
			}
			if res.Plan == nil || len(res.Plan.Status.Templates) != 1 || res.Plan.Status.Templates[0].Name != "content-filler" {
				t.Errorf("status written %+v; want content-filler alone, injected now", res.Plan)
			}
		})
	}
}

// Thousands of parameter annotations for templates the Pod does not get
// give a few warnings, not one each.
func TestStrayParametersAreBounded(t *testing.T) {
	pod := &corev1.Pod{}
	pod.Annotations = map[string]string{inject.InjectAnnotation: "content-filler"}
	for i := range 5000 {
		pod.Annotations[inject.ParameterAnnotation(fmt.Sprintf("t%d", i), "p")] = "x"
	}
	pod.Spec.Containers = []corev1.Container{{Name: "app", Image: "app:1"}}
	res, err := inject.Pod(pod, nil, testCatalog(t), injecttest.Keys)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 4 || !strings.Contains(res.Warnings[3], "4997 more annotations") {
		t.Errorf("%d warnings, last %q; want three and a count of the rest", len(res.Warnings), res.Warnings[len(res.Warnings)-1])
	}
}

// What the rest of the admission chain adds to an injected container
// within the request (a reinvocation) leaves it the template's: its
// signed entry is fresh and the container still holds every field of it.
// The same additions on a Pod that brings its own copy of the template
// are not the template's: under a status copied from an injected Pod
// later than inject.Fresh, or under an entry signed with another key,
// only the exact rendering counts, and the webhook denies the name
// conflict. A change to a field the template sets is never the
// template's.
func TestALookAlikeWithExtraFieldsIsNotTheTemplate(t *testing.T) {
	cat := testCatalog(t)
	asked := &corev1.Pod{}
	asked.Annotations = map[string]string{inject.InjectAnnotation: "log-shipper"}
	asked.Spec.Containers = []corev1.Container{{Name: "app", Image: "app:1"}}
	raw, _ := json.Marshal(asked)
	injected := run(t, raw, nil, cat).pod

	additions := map[string]func(c *corev1.Container){
		"a command of its own": func(c *corev1.Container) { c.Command = []string{"/bin/sleep", "infinity"} },
		"an env entry":         func(c *corev1.Container) { c.Env = append(c.Env, corev1.EnvVar{Name: "DD_AGENT_HOST", Value: "1"}) },
		"envFrom":              func(c *corev1.Container) { c.EnvFrom = []corev1.EnvFromSource{{Prefix: "X"}} },
		"a capability added":   func(c *corev1.Container) { c.SecurityContext.Capabilities.Add = []corev1.Capability{"NET_RAW"} },
		"stdin":                func(c *corev1.Container) { c.Stdin = true },
		"a tty":                func(c *corev1.Container) { c.TTY = true },
		"a working directory":  func(c *corev1.Container) { c.WorkingDir = "/tmp" },
		"a lifecycle hook": func(c *corev1.Container) {
			c.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 1}}}
		},
		"a liveness probe": func(c *corev1.Container) {
			c.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}
		},
		"a mount of another volume": func(c *corev1.Container) {
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "secrets", MountPath: "/s"})
		},
		"imagePullPolicy Always": func(c *corev1.Container) { c.ImagePullPolicy = corev1.PullAlways },
		"an ephemeral-storage limit": func(c *corev1.Container) {
			c.Resources.Limits[corev1.ResourceEphemeralStorage] = resource.MustParse("1Gi")
			c.Resources.Requests[corev1.ResourceEphemeralStorage] = resource.MustParse("1Gi")
		},
	}
	changes := map[string]func(c *corev1.Container){
		"a write to its log volume":  func(c *corev1.Container) { c.VolumeMounts[0].ReadOnly = false },
		"privilege escalation again": func(c *corev1.Container) { c.SecurityContext.AllowPrivilegeEscalation = nil },
		"another image":              func(c *corev1.Container) { c.Image = "registry.k8s.io/pause:3.10" },
		"another argument":           func(c *corev1.Container) { c.Args = append(c.Args, "--verbose") },
		"a cpu limit raised":         func(c *corev1.Container) { c.Resources.Limits[corev1.ResourceCPU] = resource.MustParse("4") },
	}
	forged := func(pod *corev1.Pod) { // the status of the same Pod injected with a key of the app team's
		other, err := inject.NewKeys([]byte("a key the app team made up, 32 bytes or more"))
		if err != nil {
			t.Fatal(err)
		}
		res, err := inject.Pod(asked, nil, cat, other)
		if err != nil {
			t.Fatal(err)
		}
		pod.Annotations[inject.StatusAnnotation] = res.Plan.Status.String()
	}
	for _, arrival := range []struct {
		name   string
		keys   *inject.Keys
		status func(*corev1.Pod)
		ours   bool // additions count as the chain's
	}{
		{"within the request", injecttest.KeysAt(injecttest.SignedAt.Add(10 * time.Second)), nil, true},
		{"copied later", injecttest.KeysAt(injecttest.SignedAt.Add(inject.Fresh + time.Second)), nil, false},
		{"under a forged signature", injecttest.Keys, forged, false},
	} {
		for name, change := range additions {
			t.Run(arrival.name+"/"+name, func(t *testing.T) {
				pod := &corev1.Pod{}
				if err := json.Unmarshal(injected, pod); err != nil {
					t.Fatal(err)
				}
				change(&pod.Spec.InitContainers[0])
				if arrival.status != nil {
					arrival.status(pod)
				}
				res, err := inject.Pod(pod, nil, cat, arrival.keys)
				if arrival.ours {
					if err != nil || res.Plan != nil {
						t.Fatalf("the webhook's own injection with the chain's %s: %v, plan %+v; want a no-op", name, err, res)
					}
					return
				}
				wantLookAlike(t, res, err)
			})
		}
	}
	for name, change := range changes {
		t.Run("within the request/"+name, func(t *testing.T) {
			pod := &corev1.Pod{}
			if err := json.Unmarshal(injected, pod); err != nil {
				t.Fatal(err)
			}
			change(&pod.Spec.InitContainers[0])
			res, err := inject.Pod(pod, nil, cat, injecttest.Keys)
			wantLookAlike(t, res, err)
		})
	}
	t.Run("copied later, unchanged", func(t *testing.T) {
		pod := &corev1.Pod{}
		if err := json.Unmarshal(injected, pod); err != nil {
			t.Fatal(err)
		}
		res, err := inject.Pod(pod, nil, cat, injecttest.KeysAt(injecttest.SignedAt.Add(time.Hour)))
		if err != nil || len(res.Verified) != 1 || len(res.Injected) != 0 {
			t.Fatalf("an exact copy of an injected Pod: %v, %+v; want it verified, nothing injected", err, res)
		}
	})
}

func wantLookAlike(t *testing.T, res *inject.Result, err error) {
	t.Helper()
	var denial *inject.Denial
	if !errors.As(err, &denial) || !strings.Contains(denial.Message, "has the name of the template's container but not its content") {
		t.Fatalf("got %v, result %+v; want a denial of the look-alike", err, res)
	}
}

// Lists and values the Pod's author writes are bounded: a list of more
// names than any Pod needs is denied before it is looked at, and a
// denial quotes a huge value briefly, so neither the answer nor the logs
// grow with it. The happy case: a list at the cap is read.
func TestHugeListsAndValuesAreDeniedBriefly(t *testing.T) {
	cat := testCatalog(t)
	names := func(n int, prefix string) string {
		list := make([]string, n)
		for i := range list {
			list[i] = fmt.Sprintf("%s%d", prefix, i)
		}
		return strings.Join(list, ",")
	}
	megabyte := strings.Repeat("a", 1<<20)
	for name, c := range map[string]struct {
		annotations map[string]string
		want        string
	}{
		"120,000 template names": {map[string]string{inject.InjectAnnotation: names(120000, "t")},
			"lists 120000 entries; at most 128"},
		"50,000 target containers": {map[string]string{inject.InjectAnnotation: "content-filler", inject.TargetContainersAnnotation: names(50000, "c")},
			"lists 50000 entries; at most 128"},
		"a template name of a megabyte": {map[string]string{inject.InjectAnnotation: megabyte},
			"(1048576 bytes) not found in the catalog"},
		"a parameter value of a megabyte": {map[string]string{inject.InjectAnnotation: "log-shipper", inject.ParameterAnnotation("log-shipper", "log-dir"): "/" + megabyte},
			"(1048577 bytes) is not valid for parameter"},
		"a duplicate among the cap": {map[string]string{inject.InjectAnnotation: names(127, "t") + ",t5"},
			`"t5" is listed twice`},
	} {
		t.Run(name, func(t *testing.T) {
			pod := &corev1.Pod{}
			pod.Annotations = c.annotations
			pod.Spec.Containers = []corev1.Container{{Name: "app", Image: "app:1"}}
			_, err := inject.Pod(pod, nil, cat, injecttest.Keys)
			var denial *inject.Denial
			if !errors.As(err, &denial) || !strings.Contains(denial.Message, c.want) {
				t.Fatalf("got %.300v; want a denial holding %q", err, c.want)
			}
			if len(denial.Message) > 1024 {
				t.Errorf("the denial is %d bytes; want it brief", len(denial.Message))
			}
		})
	}
}

// What the API server sets on its own between two webhook calls is the
// only thing a Pod's copy of a template may add: each such default,
// added to an injected container, leaves it the template's (a
// reinvocation adds nothing).
func TestTheAPIServersDefaultsAreTolerated(t *testing.T) {
	cat := testCatalog(t)
	asked := &corev1.Pod{}
	asked.Annotations = map[string]string{
		inject.InjectAnnotation:                              "ambassador,metrics-adapter",
		inject.ParameterAnnotation("ambassador", "upstream"): "redis:6379",
	}
	asked.Spec.Containers = []corev1.Container{{Name: "app", Image: "app:1"}}
	raw, _ := json.Marshal(asked)
	injected := run(t, raw, nil, cat).pod
	each := func(pod *corev1.Pod, f func(c *corev1.Container)) {
		for i := range pod.Spec.InitContainers {
			f(&pod.Spec.InitContainers[i])
		}
		for i := range pod.Spec.Containers {
			f(&pod.Spec.Containers[i])
		}
	}
	for name, change := range map[string]func(p *corev1.Pod){
		"terminationMessagePath and Policy": func(p *corev1.Pod) {
			each(p, func(c *corev1.Container) {
				c.TerminationMessagePath, c.TerminationMessagePolicy = corev1.TerminationMessagePathDefault, corev1.TerminationMessageReadFile
			})
		},
		"imagePullPolicy": func(p *corev1.Pod) {
			each(p, func(c *corev1.Container) { c.ImagePullPolicy = corev1.PullIfNotPresent })
		},
		"probe timings": func(p *corev1.Pod) {
			each(p, func(c *corev1.Container) {
				if pr := c.StartupProbe; pr != nil {
					pr.TimeoutSeconds, pr.SuccessThreshold = 1, 1
				}
			})
		},
		"the service account token mount": func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "kube-api-access-abcde", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{}}})
			each(p, func(c *corev1.Container) {
				c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "kube-api-access-abcde", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true})
			})
		},
		"a mount of the token volume elsewhere is not a default": nil,
	} {
		t.Run(name, func(t *testing.T) {
			pod := &corev1.Pod{}
			if err := json.Unmarshal(injected, pod); err != nil {
				t.Fatal(err)
			}
			if change == nil { // the hostile twin: the same volume, another path
				pod.Spec.InitContainers[0].VolumeMounts = append(pod.Spec.InitContainers[0].VolumeMounts, corev1.VolumeMount{Name: "kube-api-access-abcde", MountPath: "/tokens"})
				pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: "kube-api-access-abcde", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{}}})
				later := injecttest.KeysAt(injecttest.SignedAt.Add(inject.Fresh + time.Second)) // not within the request
				if _, err := inject.Pod(pod, nil, cat, later); err == nil {
					t.Error("a token mount at another path was taken as the template's")
				}
				return
			}
			change(pod)
			res, err := inject.Pod(pod, nil, cat, injecttest.Keys)
			if err != nil || res.Plan != nil {
				t.Errorf("with the API server's %s: %v, plan %+v; want a no-op", name, err, res)
			}
		})
	}
}
