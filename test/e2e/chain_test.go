package e2e

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/conformance"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/test/cluster"
)

// chainPods ask for every template of the default catalog.
func chainPods() map[string]*corev1.Pod {
	pods := map[string]*corev1.Pod{}
	for _, name := range []string{"log-shipper", "content-filler", "metrics-adapter", "ambassador"} {
		p := nginxPod("chain-"+name, name)
		if name == "ambassador" {
			p.Annotations[inject.ParameterAnnotation("ambassador", "upstream")] = "redis.shared.svc.cluster.local:6379"
		}
		pods[name] = p
	}
	return pods
}

// limitRange defaults every resource, ephemeral-storage too, as
// multi-tenant clusters do.
func limitRange(ns string) *corev1.LimitRange {
	defaults := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("256Mi"), corev1.ResourceEphemeralStorage: resource.MustParse("1Gi")}
	requests := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi"), corev1.ResourceEphemeralStorage: resource.MustParse("256Mi")}
	return &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "defaults", Namespace: ns},
		Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{Type: corev1.LimitTypeContainer, Default: defaults, DefaultRequest: requests}}}}
}

// Under a hardened cluster's admission chain (AlwaysPullImages, a
// LimitRange that defaults every resource, and another mutating webhook
// that adds an env var, a mount and a label to every container, called
// before ours and after ours), every template of the default catalog is
// injected, carries what the chain added, and classifies current with the
// webhook's keys. The hostile twins: the same content and additions made
// by an app team under a status it signed itself are denied at create,
// and an app team's UPDATE of a sidecar's image with a status entry it
// wrote reads tampered.
func TestInjectionSurvivesTheAdmissionChain(t *testing.T) {
	ctx := ctxFor(t)
	cat, err := catalog.Load(suite.catalogDir)
	if err != nil {
		t.Fatal(err)
	}
	agent, err := cluster.StartAgent(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(agent.Stop)
	ns := namespace(t, "chain", optIn)
	if _, err := suite.cluster.Client.CoreV1().LimitRanges(ns).Create(ctx, limitRange(ns), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var admitted *corev1.Pod
	for _, order := range []struct{ name, config string }{
		{"the agent before ours", "aaa-monitoring-agent"},
		{"the agent after ours", "zzz-monitoring-agent"},
	} {
		cfg := agent.Config(order.config)
		if err := suite.cluster.InstallWebhook(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the agent webhook to take effect", func() bool {
			got, err := suite.client.CoreV1().Pods(ns).Create(ctx, nginxPod("probe", ""), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err == nil && got.Labels[cluster.AgentLabel] == cluster.AgentLabelValue
		})
		for name, pod := range chainPods() {
			t.Run(order.name+"/"+name, func(t *testing.T) {
				got, err := suite.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
				if err != nil {
					t.Fatalf("denied under the chain: %v", err)
				}
				checkChainAdded(t, got, cat.Template(name))
				if res := conformance.Classify(got, optIn, cat, suite.keys); res.State != conformance.Current {
					t.Errorf("classified %s, want current: %+v", res.State, res.Templates)
				}
				if name == "content-filler" {
					admitted = got
				}
			})
		}
		if err := suite.cluster.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, cfg.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if admitted == nil {
		t.Fatal("no content-filler Pod admitted")
	}

	t.Run("a look-alike with the chain's additions under a status the app team signed", func(t *testing.T) {
		lookAlike := resubmitted(admitted)
		status := readStatus(lookAlike)
		for i := range status.Templates {
			status.Templates[i].MAC = strings.Repeat("0", 64)
		}
		lookAlike.Annotations[inject.StatusAnnotation] = status.String()
		_, err := suite.client.CoreV1().Pods(ns).Create(ctx, lookAlike, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "has the name of the template's container but not its content") {
			t.Fatalf("got %v; want the look-alike denied", err)
		}
	})

	t.Run("an UPDATE of the sidecar's image under a status entry the app team wrote", func(t *testing.T) {
		pod := resubmitted(admitted)
		pod.Name = "chain-forged"
		live, err := suite.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		forgeries := map[string]func(in inject.Injected) inject.Injected{
			"unsigned":         func(in inject.Injected) inject.Injected { in.Signed, in.MAC = "", ""; return in },
			"signed elsewhere": func(in inject.Injected) inject.Injected { in.MAC = strings.Repeat("ab", 32); return in },
		}
		for how, forge := range forgeries {
			updated := live.DeepCopy()
			for i := range updated.Spec.Containers {
				if updated.Spec.Containers[i].Name == "content-filler" {
					updated.Spec.Containers[i].Image = "registry.k8s.io/pause:3.10"
				}
			}
			status := readStatus(updated)
			for i := range status.Templates {
				status.Templates[i].Held = strings.ReplaceAll(status.Templates[i].Held, "docker.io/library/busybox:1.37.0", "registry.k8s.io/pause:3.10")
				status.Templates[i] = forge(status.Templates[i])
			}
			updated.Annotations[inject.StatusAnnotation] = status.String()
			got, err := suite.client.CoreV1().Pods(ns).Update(ctx, updated, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}})
			if err != nil {
				t.Fatalf("%s: the UPDATE: %v", how, err)
			}
			if res := conformance.Classify(got, optIn, cat, suite.keys); res.State != conformance.Tampered {
				t.Errorf("%s: classified %s, want tampered: %+v", how, res.State, res.Templates)
			}
		}
	})
}

// checkChainAdded fails unless every container of t in pod carries what
// the chain adds: the agent's env and mount, AlwaysPullImages' pull
// policy and the LimitRange's ephemeral-storage.
func checkChainAdded(t *testing.T, pod *corev1.Pod, tmpl *catalog.Template) {
	t.Helper()
	if pod.Labels[cluster.AgentLabel] != cluster.AgentLabelValue {
		t.Errorf("the Pod lacks the agent's label: %v", pod.Labels)
	}
	for _, name := range tmpl.ContainerNames() {
		c := findAnyContainer(pod, name)
		if c == nil {
			t.Fatalf("no container %q: %v", name, containerNames(append(pod.Spec.InitContainers, pod.Spec.Containers...)))
		}
		var env, mount bool
		for _, e := range c.Env {
			env = env || e.Name == cluster.AgentEnv
		}
		for _, m := range c.VolumeMounts {
			mount = mount || m.MountPath == cluster.AgentMountPath
		}
		_, storage := c.Resources.Limits[corev1.ResourceEphemeralStorage]
		if !env || !mount || c.ImagePullPolicy != corev1.PullAlways || !storage {
			t.Errorf("container %q: agent env %v, agent mount %v, pull policy %s, ephemeral-storage limit %v; want what the whole chain adds", name, env, mount, c.ImagePullPolicy, storage)
		}
	}
}

func findAnyContainer(pod *corev1.Pod, name string) *corev1.Container {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// resubmitted is a stored Pod as a person would create it again.
func resubmitted(p *corev1.Pod) *corev1.Pod {
	out := p.DeepCopy()
	out.ResourceVersion, out.UID, out.CreationTimestamp, out.ManagedFields = "", "", metav1.Time{}, nil
	out.Status = corev1.PodStatus{}
	return out
}
