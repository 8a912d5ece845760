package node

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/conformance"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/test/cluster"
)

// Under an admission chain that changes the sidecars after the webhook
// (AlwaysPullImages, which the node's API server runs, so every image is
// pulled from the node's registry; an agent webhook adding an env var
// from the host's IP, a mount of its volume and a label, called after
// ours; a LimitRange that defaults every resource, ephemeral storage
// too), the content filler and the log shipper run Ready on the node,
// their Pods classify current, and the shipper still ships the app's
// lines.
func TestSidecarsRunUnderTheAdmissionChain(t *testing.T) {
	ns := namespace(t, "chain", "node")
	ctx := context.Background()
	agent, err := cluster.StartAgent(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(agent.Stop)
	cfg := agent.Config("zzz-monitoring-agent", &metav1.LabelSelector{MatchLabels: map[string]string{"chain": "node"}})
	if err := suite.cluster.InstallWebhook(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = suite.cluster.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), cfg.Name, metav1.DeleteOptions{})
	})
	limits := &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "defaults", Namespace: ns}, Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
		Type:           corev1.LimitTypeContainer,
		Default:        corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("128Mi"), corev1.ResourceEphemeralStorage: resource.MustParse("1Gi")},
		DefaultRequest: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi"), corev1.ResourceEphemeralStorage: resource.MustParse("64Mi")},
	}}}}
	if _, err := suite.cluster.Client.CoreV1().LimitRanges(ns).Create(ctx, limits, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait(ctx, "the agent webhook to take effect", func() bool {
		got, err := suite.cluster.Client.CoreV1().Pods(ns).Create(ctx, Upstream(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil && got.Labels[cluster.AgentLabel] == cluster.AgentLabelValue
	})
	if err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.Parse(catalog.Source{Name: "default.yaml", Data: catalog.DefaultYAML()}, catalog.Source{Name: "shipper.yaml", Data: []byte(TestCatalog)})
	if err != nil {
		t.Fatal(err)
	}
	run(t, ns, WebPod(false))
	run(t, ns, ShipperApp())
	for _, c := range []struct{ pod, sidecar string }{{"web", "content-filler"}, {"app", "tail-shipper"}} {
		p := until(t, ns, c.pod, c.pod+" Ready with its "+c.sidecar+" under the chain", ready)
		var sidecar *corev1.Container
		for _, list := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
			for i := range list {
				if list[i].Name == c.sidecar {
					sidecar = &list[i]
				}
			}
		}
		if sidecar == nil {
			t.Fatalf("%s has no %s", c.pod, c.sidecar)
		}
		_, storage := sidecar.Resources.Limits[corev1.ResourceEphemeralStorage]
		if !storage || !hasEnv(sidecar.Env, cluster.AgentEnv) || sidecar.ImagePullPolicy != corev1.PullAlways {
			t.Errorf("%s: ephemeral-storage limit %v, agent env %v, pull policy %s; want what the chain adds", c.sidecar, storage, hasEnv(sidecar.Env, cluster.AgentEnv), sidecar.ImagePullPolicy)
		}
		if got := conformance.Classify(p, map[string]string{inject.InjectionLabel: "enabled", "chain": "node"}, cat, suite.keys); got.State != conformance.Current {
			t.Errorf("%s is %s: %+v", c.pod, got.State, got.Templates)
		}
	}
	err = wait(ctx, "the shipper to ship the app's lines", func() bool {
		return strings.Contains(logs(t, ns, "app", "tail-shipper"), "order 3 shipped")
	})
	if err != nil {
		t.Fatalf("%v: %q", err, logs(t, ns, "app", "tail-shipper"))
	}
}

func hasEnv(list []corev1.EnvVar, name string) bool {
	for _, e := range list {
		if e.Name == name {
			return true
		}
	}
	return false
}
