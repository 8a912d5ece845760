package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podpatterns/sidecar-injector/pkg/admissionpolicy"
	"github.com/podpatterns/sidecar-injector/pkg/admissionpolicy/policytest"
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
		cfg := agent.Config(order.config, &metav1.LabelSelector{MatchLabels: optIn})
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
		// The next order is tested only once this one is gone.
		eventually(t, "the agent webhook to be gone", func() bool {
			got, err := suite.client.CoreV1().Pods(ns).Create(ctx, nginxPod("probe", ""), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err == nil && got.Labels[cluster.AgentLabel] == ""
		})
	}
	if admitted == nil {
		t.Fatal("no content-filler Pod admitted")
	}

	t.Run("a look-alike with the chain's additions under a status the app team signed", func(t *testing.T) {
		lookAlike := resubmitted(admitted)
		status := policytest.ReadStatus(lookAlike)
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
			status := policytest.ReadStatus(updated)
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

// Resource rules the sidecars would break are said in the injector's
// words through the real API server: a LimitRange's ratio is denied
// naming the template and the override (the API server would say "cpu
// max limit to request ratio per Container is 4, but provided ratio is
// 10.000000"), a ResourceQuota the sidecars push over comes with a warning
// naming their share, and a Pod with pod-level resources is stored with
// them raised by the sidecars' share (the API server would refuse it:
// "must be greater than or equal to aggregate container requests").
func TestResourceRulesAreSaidInOurWords(t *testing.T) {
	ctx := ctxFor(t)
	core := suite.cluster.Client.CoreV1()

	ratioNS := namespace(t, "rules-ratio", optIn)
	lr := &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "ratio", Namespace: ratioNS},
		Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{Type: corev1.LimitTypeContainer, MaxLimitRequestRatio: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4")}}}}}
	if _, err := core.LimitRanges(ratioNS).Create(ctx, lr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var err error
	eventually(t, "the webhook to see the LimitRange", func() bool {
		_, err = suite.client.CoreV1().Pods(ratioNS).Create(ctx, nginxPod("filler", "content-filler"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil && strings.Contains(err.Error(), "denied the request")
	})
	if want := `template "content-filler" renders container "content-filler" with a cpu request of 5m and a limit of 50m, a limit 10 times its request; LimitRange "ratio" of this namespace allows a cpu limit of at most 4 times its request`; !strings.Contains(err.Error(), want) {
		t.Errorf("content-filler under a ratio: %v; want %q", err, want)
	}
	shipper := nginxPod("shipper", "log-shipper")
	shipper.Spec.Containers[0].Resources = corev1.ResourceRequirements{ // the app within the ratio itself
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m")},
	}
	_, err = suite.client.CoreV1().Pods(ratioNS).Create(ctx, shipper, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	want := `set the annotation log-shipper.sidecars.podpatterns.io/cpu-request: "50m" on the Pod`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("log-shipper under a ratio: %v; want %q", err, want)
	}
	shipper.Annotations[inject.ParameterAnnotation("log-shipper", "cpu-request")] = "50m"
	if _, err := suite.client.CoreV1().Pods(ratioNS).Create(ctx, shipper, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Errorf("log-shipper with the override the denial named: %v", err)
	}

	quotaNS := namespace(t, "rules-quota", optIn)
	quota := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "team", Namespace: quotaNS},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourceRequestsCPU: resource.MustParse("52m")}}}
	if _, err := core.ResourceQuotas(quotaNS).Create(ctx, quota, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the quota's status", func() bool {
		q, err := core.ResourceQuotas(quotaNS).Get(ctx, "team", metav1.GetOptions{})
		return err == nil && q.Status.Hard != nil
	})
	sized := nginxPod("sized", "content-filler")
	sized.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m")}
	suite.warnings.take()
	eventually(t, "the webhook to warn of the quota", func() bool {
		_, err = suite.client.CoreV1().Pods(quotaNS).Create(ctx, sized, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return slices.ContainsFunc(suite.warnings.take(), func(w string) bool { return strings.Contains(w, `ResourceQuota "team"`) })
	})
	if err == nil || !strings.Contains(err.Error(), "exceeded quota") {
		t.Errorf("over quota: %v; want ResourceQuota admission to refuse it", err)
	}

	levelNS := namespace(t, "rules-pod-level", optIn)
	level := nginxPod("level", "content-filler")
	level.Spec.Resources = &corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("256Mi")},
	}
	level.Spec.Containers[0].Resources.Requests = level.Spec.Resources.Requests
	got, err := suite.client.CoreV1().Pods(levelNS).Create(ctx, level, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatalf("a Pod with pod-level resources: %v", err)
	}
	r := got.Spec.Resources
	if cpu, mem := r.Requests[corev1.ResourceCPU], r.Limits[corev1.ResourceMemory]; cpu.String() != "105m" || mem.String() != "288Mi" {
		t.Errorf("pod-level requests %v, limits %v; want cpu requests 105m and memory limits 288Mi", r.Requests, r.Limits)
	}
}

// The compiled policies under the same chain: kube-apiserver runs the
// mutating policy before any webhook and not again (reinvocationPolicy
// Never), so the agent adds to the sidecars after it; the validating
// policy still admits the Pods, and with no keys (policy mode's
// controller has none) they classify current.
func TestCompiledPoliciesUnderTheAdmissionChain(t *testing.T) {
	ctx := ctxFor(t)
	cat, err := catalog.Load(suite.catalogDir)
	if err != nil {
		t.Fatal(err)
	}
	const mode = "chain-policies"
	selector := &metav1.LabelSelector{MatchLabels: map[string]string{modeLabel: mode}}
	compiled := admissionpolicy.Compile(cat, admissionpolicy.Options{Name: "sidecar-injector-" + mode, NamespaceSelector: selector})
	installPolicies(t, ctx, suite.cluster.Client, compiled, mode)
	agent, err := cluster.StartAgent(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(agent.Stop)
	cfg := agent.Config("zzz-monitoring-agent-policies", selector)
	if err := suite.cluster.InstallWebhook(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = suite.cluster.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), cfg.Name, metav1.DeleteOptions{})
	})
	labels := map[string]string{modeLabel: mode}
	ns := namespace(t, "chain-policies", labels)
	if _, err := suite.cluster.Client.CoreV1().LimitRanges(ns).Create(ctx, limitRange(ns), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the agent webhook to take effect", func() bool {
		got, err := suite.client.CoreV1().Pods(ns).Create(ctx, nginxPod("probe", ""), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil && got.Labels[cluster.AgentLabel] == cluster.AgentLabelValue
	})
	refused := map[string]bool{}
	for _, r := range compiled.Refused {
		refused[r.Template] = true
	}
	for name, pod := range chainPods() {
		t.Run(name, func(t *testing.T) {
			if refused[name] {
				t.Skipf("the compiler refuses %s: the webhook injects it", name)
			}
			got, err := suite.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if err != nil {
				t.Fatalf("denied under the chain: %v", err)
			}
			checkChainAdded(t, got, cat.Template(name))
			if res := conformance.Classify(got, labels, cat, nil); res.State != conformance.Current {
				t.Errorf("classified %s, want current: %+v", res.State, res.Templates)
			}
		})
	}
}
