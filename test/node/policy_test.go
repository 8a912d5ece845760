package node

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podpatterns/sidecar-injector/pkg/admissionpolicy"
	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/test/cluster"
)

// With no webhook in the path, the node's catalog compiled to admission
// policies injects, and the Pods run on the real kubelet: the content
// filler's page is served, the log shipper, as the app's user, ships the
// app's lines.
func TestPodsThePoliciesInjectRun(t *testing.T) {
	if suite.cluster == nil {
		t.Skip("no node on this machine (see the line above)")
	}
	ctx := context.Background()
	cat, err := catalog.Parse(catalog.Source{Name: "default.yaml", Data: catalog.DefaultYAML()}, catalog.Source{Name: "shipper.yaml", Data: []byte(TestCatalog)})
	if err != nil {
		t.Fatal(err)
	}
	// Not the opt-in label: the node's webhook leaves this namespace alone.
	label := map[string]string{"node.podpatterns.io/injection": "policy"}
	compiled := admissionpolicy.Compile(cat, admissionpolicy.Options{Name: "node-policies", NamespaceSelector: &metav1.LabelSelector{MatchLabels: label}})
	remove, err := cluster.InstallPolicies(ctx, suite.cluster.Client, compiled)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(remove)
	ns := "policy-injected"
	if _, err := suite.cluster.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: label}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	web := run(t, ns, WebPod(false))
	if !strings.Contains(web.Annotations[inject.StatusAnnotation], `"held":`) {
		t.Fatalf("the Pod was not injected by the policies: status %q", web.Annotations[inject.StatusAnnotation])
	}
	until(t, ns, "web", "the app to serve the page the policies' content-filler wrote", ready)

	shipper := ShipperApp()
	uid := *shipper.Spec.SecurityContext.RunAsUser
	created := run(t, ns, shipper)
	for _, c := range created.Spec.InitContainers {
		if c.Name == "tail-shipper" && (c.SecurityContext == nil || c.SecurityContext.RunAsUser == nil || *c.SecurityContext.RunAsUser != uid) {
			t.Errorf("the shipper runs as %+v, want the app's user %d", c.SecurityContext, uid)
		}
	}
	until(t, ns, "app", "the app and the policies' shipper to run", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	err = wait(ctx, "the policies' shipper to ship the app's lines", func() bool {
		return strings.Contains(logs(t, ns, "app", "tail-shipper"), "order 3 shipped")
	})
	if err != nil {
		t.Fatal(err)
	}
}
