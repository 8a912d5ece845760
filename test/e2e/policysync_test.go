package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podpatterns/sidecar-injector/pkg/admissionpolicy"
	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/pkg/policysync"
	"github.com/podpatterns/sidecar-injector/test/cluster"
)

const probeTemplate = `apiVersion: sidecars.podpatterns.io/v1alpha1
kind: Catalog
templates:
- name: probe
  pattern: sidecar
  description: A template only this test asks for.
  containers:
  - name: probe
    image: registry.example.com/probe:1.0.0
    args: [--every, 10s]
`

// TestControllerKeepsTheCompiledPoliciesApplied runs the cluster as policy
// mode does, with no webhook and under the RBAC of deploy/overlays/policy:
// the controller applies the catalog's
// policies, follows a change, keeps the last good ones through a broken
// catalog, and a template that goes is gone from them.
func TestControllerKeepsTheCompiledPoliciesApplied(t *testing.T) {
	ctx := ctxFor(t)
	withoutWebhook(t, ctx)
	probe := filepath.Join(suite.catalogDir, "probe.yaml")
	broken := filepath.Join(suite.catalogDir, "broken.yaml")
	if err := os.WriteFile(probe, []byte(probeTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(probe); _ = os.Remove(broken) })
	// What this install's syncer applied from an earlier catalog under
	// another name: the syncer deletes what it no longer applies. Another
	// team's policy and binding with the same managed-by label, and
	// another install's, are not its own: they stay.
	cat, err := catalog.Default()
	if err != nil {
		t.Fatal(err)
	}
	api := suite.cluster.Client.AdmissionregistrationV1()
	stale := admissionpolicy.Compile(cat, admissionpolicy.Options{Name: "sidecar-injector-stale"}).ValidatingBinding
	stale.Annotations = map[string]string{policysync.OwnerAnnotation: "sidecar-injector"}
	theirs := admissionpolicy.Compile(cat, admissionpolicy.Options{Name: "other-team"})
	otherInstall := admissionpolicy.Compile(cat, admissionpolicy.Options{Name: "sidecar-injector-canary"}).ValidatingBinding
	otherInstall.Annotations = map[string]string{policysync.OwnerAnnotation: "sidecar-injector-canary"}
	for _, b := range []*admissionregistrationv1.ValidatingAdmissionPolicyBinding{stale, theirs.ValidatingBinding, otherInstall} {
		if _, err := api.ValidatingAdmissionPolicyBindings().Create(ctx, b, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := api.ValidatingAdmissionPolicies().Create(ctx, theirs.Validating, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = api.ValidatingAdmissionPolicies().Delete(context.Background(), theirs.Validating.Name, metav1.DeleteOptions{})
		for _, name := range []string{theirs.ValidatingBinding.Name, otherInstall.Name} {
			_ = api.ValidatingAdmissionPolicyBindings().Delete(context.Background(), name, metav1.DeleteOptions{})
		}
	})
	metrics, stop := startController(t, "--admission-policies", "--leader-elect=false", "--kubeconfig", asPolicyController(t))
	t.Cleanup(func() { stop(); deletePolicies(t) })
	ns := namespace(t, "policy-sync", map[string]string{inject.InjectionLabel: "enabled"})

	injected := func() (bool, string) {
		pod, err := suite.cluster.Client.CoreV1().Pods(ns).Create(ctx, nginxPod("probed", "probe"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return false, err.Error()
		}
		return len(pod.Spec.Containers) == 2 && pod.Spec.Containers[1].Name == "probe" && strings.Contains(pod.Annotations[inject.StatusAnnotation], `"held":`), ""
	}
	eventually(t, "the controller's policies to inject the probe template", func() bool { ok, _ := injected(); return ok })
	eventually(t, "the binding the catalog no longer compiles to to be deleted", func() bool {
		_, err := api.ValidatingAdmissionPolicyBindings().Get(ctx, stale.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	if _, err := api.ValidatingAdmissionPolicies().Get(ctx, theirs.Validating.Name, metav1.GetOptions{}); err != nil {
		t.Errorf("another team's policy with the managed-by label: %v; want it left alone", err)
	}
	for _, name := range []string{theirs.ValidatingBinding.Name, otherInstall.Name} {
		if _, err := api.ValidatingAdmissionPolicyBindings().Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Errorf("binding %s, not this install's: %v; want it left alone", name, err)
		}
	}
	// A policy deleted by hand comes back at the next interval (1s here).
	if err := suite.cluster.Client.AdmissionregistrationV1().MutatingAdmissionPolicyBindings().Delete(ctx, admissionpolicy.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the binding deleted by hand to be back", func() bool {
		_, err := suite.cluster.Client.AdmissionregistrationV1().MutatingAdmissionPolicyBindings().Get(ctx, admissionpolicy.Name, metav1.GetOptions{})
		return err == nil
	})
	eventually(t, "the policies to inject again", func() bool { ok, _ := injected(); return ok })

	if err := os.WriteFile(broken, []byte("templates: [{name: Not-A-Label}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the broken catalog to be counted", func() bool {
		return metric(metrics, `sidecar_injector_admission_policy_syncs_total{result="catalog-refused"}`) >= 1
	})
	if ok, err := injected(); !ok {
		t.Fatalf("after a broken catalog the last good policies should still inject: %s", err)
	}
	eventually(t, "an Event on the policy saying the catalog was refused", func() bool {
		events, err := suite.cluster.Client.CoreV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + admissionpolicy.Name + ",reason=CatalogRefused"})
		return err == nil && len(events.Items) > 0
	})

	if err := os.Remove(broken); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(probe); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the policies to drop the template that went", func() bool {
		_, err := injected()
		return strings.Contains(err, `template "probe" not found in the catalog`)
	})
	if n := metric(metrics, `sidecar_injector_admission_policy_syncs_total{result="failed"}`); n != 0 {
		t.Errorf("%v syncs failed", n)
	}
}

// asPolicyController is asController with the policy overlay's RBAC.
func asPolicyController(t *testing.T) string {
	kubeconfig := asController(t)
	installed := install(t, filepath.Join(suite.root, "deploy", "overlays", "policy"), func(o *unstructured.Unstructured) bool {
		return o.GetName() == "sidecar-injector-controller-policies"
	})
	if installed != 2 {
		t.Fatalf("installed %d objects of the policy overlay's RBAC, want its ClusterRole and ClusterRoleBinding", installed)
	}
	return kubeconfig
}

// withoutWebhook removes the webhook configuration for the test, so the
// policies alone act, and puts it back after.
func withoutWebhook(t *testing.T, ctx context.Context) {
	objs, err := cluster.Render(filepath.Join(suite.root, "deploy", "base"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := cluster.WebhookConfig(objs, suite.webhook.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	api := suite.cluster.Client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	if err := api.Delete(ctx, cfg.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := suite.cluster.InstallDeployWebhook(ctx, suite.root, suite.webhook); err != nil {
			t.Error(err)
		}
		if err := waitUntilWebhookActive(ctx); err != nil {
			t.Error(err)
		}
	})
}

// deletePolicies deletes what the syncer applied.
func deletePolicies(t *testing.T) {
	ctx := context.Background()
	api := suite.cluster.Client.AdmissionregistrationV1()
	_ = api.MutatingAdmissionPolicyBindings().Delete(ctx, admissionpolicy.Name, metav1.DeleteOptions{})
	_ = api.ValidatingAdmissionPolicyBindings().Delete(ctx, admissionpolicy.Name, metav1.DeleteOptions{})
	_ = api.MutatingAdmissionPolicies().Delete(ctx, admissionpolicy.Name, metav1.DeleteOptions{})
	_ = api.ValidatingAdmissionPolicies().Delete(ctx, admissionpolicy.Name, metav1.DeleteOptions{})
}

// Without the mutating policy (deleted, not loaded yet, or off on one API
// server of several), the validating policy alone refuses a Pod that
// should get a template and lacks its containers, naming why; a Pod that
// gets nothing is admitted. Once the mutating policy is there, the same
// Pod is injected and admitted: the order of install does not matter.
func TestTheValidatingPolicyFailsSafe(t *testing.T) {
	ctx := ctxFor(t)
	cat, err := catalog.Load(suite.catalogDir) // prod requires log-shipper
	if err != nil {
		t.Fatal(err)
	}
	const mode = "fail-safe"
	compiled := admissionpolicy.Compile(cat, admissionpolicy.Options{Name: "sidecar-injector-" + mode, NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{modeLabel: mode}}})
	api := suite.cluster.Client.AdmissionregistrationV1()
	if _, err := api.ValidatingAdmissionPolicies().Create(ctx, compiled.Validating, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.ValidatingAdmissionPolicyBindings().Create(ctx, compiled.ValidatingBinding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		bg := context.Background()
		_ = api.ValidatingAdmissionPolicyBindings().Delete(bg, compiled.ValidatingBinding.Name, metav1.DeleteOptions{})
		_ = api.ValidatingAdmissionPolicies().Delete(bg, compiled.Validating.Name, metav1.DeleteOptions{})
		_ = api.MutatingAdmissionPolicyBindings().Delete(bg, compiled.MutatingBinding.Name, metav1.DeleteOptions{})
		_ = api.MutatingAdmissionPolicies().Delete(bg, compiled.Mutating.Name, metav1.DeleteOptions{})
	})
	ns := namespace(t, "fail-safe", map[string]string{modeLabel: mode, "env": "prod"})
	create := func(pod *corev1.Pod) (*corev1.Pod, error) {
		return suite.cluster.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	}
	var err2 error
	eventually(t, "the validating policy to refuse a Pod without its required template", func() bool {
		_, err2 = create(nginxPod("bare", ""))
		return err2 != nil
	})
	if want := `template "log-shipper" is required or asked for here, and the Pod lacks its containers: the MutatingAdmissionPolicy that injects it did not run`; !strings.Contains(err2.Error(), want) {
		t.Errorf("a bare Pod where log-shipper is required: %v; want %q", err2, want)
	}
	plain := namespace(t, "fail-safe-plain", map[string]string{modeLabel: mode})
	if _, err := suite.cluster.Client.CoreV1().Pods(plain).Create(ctx, nginxPod("nothing", ""), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Errorf("a Pod that gets nothing: %v", err)
	}

	if _, err := api.MutatingAdmissionPolicies().Create(ctx, compiled.Mutating, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.MutatingAdmissionPolicyBindings().Create(ctx, compiled.MutatingBinding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the mutating policy to inject what is required", func() bool {
		got, err := create(nginxPod("bare", ""))
		return err == nil && len(got.Spec.InitContainers) == 1 && got.Spec.InitContainers[0].Name == "log-shipper"
	})
}

// kube-apiserver accepts everything `catalog compile` emits: the compiled
// policies and bindings of every catalog in the repository (each on its
// own, and beside the default catalog, as a catalog directory of
// policies is read), of the node tests' catalog, and of one that puts
// parameters in every kind of string field beside literals, are created
// with a server-side dry run.
func TestEveryCompileOutputIsAccepted(t *testing.T) {
	ctx := ctxFor(t)
	var paths []string
	err := filepath.WalkDir(suite.root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".yaml" || strings.Contains(path, "/.git/") {
			return err
		}
		if data, err := os.ReadFile(path); err == nil && strings.Contains(string(data), "kind: Catalog") {
			paths = append(paths, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(suite.cluster.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	compiled := 0
	for i, path := range paths {
		data, _ := os.ReadFile(path)
		cat, err := catalog.Parse(catalog.Source{Name: "default.yaml", Data: catalog.DefaultYAML()}, catalog.Source{Name: filepath.Base(path), Data: data})
		if err != nil {
			if cat, err = catalog.Parse(catalog.Source{Name: filepath.Base(path), Data: data}); err != nil {
				continue // a broken catalog of the CLI's tests: never compiled
			}
		}
		out := admissionpolicy.Compile(cat, admissionpolicy.Options{Name: fmt.Sprintf("accepted-%d", i)})
		for _, o := range out.Objects() {
			obj := o.(client.Object)
			if err := c.Create(ctx, obj, client.DryRunAll); err != nil {
				t.Errorf("%s: %T refused by kube-apiserver: %v", strings.TrimPrefix(path, suite.root+"/"), obj, err)
			}
		}
		compiled++
	}
	if compiled < 7 || !slices.ContainsFunc(paths, func(p string) bool { return strings.HasSuffix(p, "params-everywhere.yaml") }) {
		t.Errorf("compiled %d catalogs of %v; want every one in the repository", compiled, paths)
	}
}
