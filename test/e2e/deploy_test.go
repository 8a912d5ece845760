package e2e

import (
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podpatterns/sidecar-injector/pkg/statuskey"
	"github.com/podpatterns/sidecar-injector/test/cluster"
)

// Both overlays render; the self-signed one, after `sidecar-injector
// certs` as `make deploy` runs it, carries a serving Secret and the CA,
// and the API server accepts them.
func TestOverlaysRender(t *testing.T) {
	deploy := filepath.Join(t.TempDir(), "deploy")
	if out, err := exec.Command("cp", "-r", filepath.Join(suite.root, "deploy"), deploy).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	overlay := filepath.Join(deploy, "overlays", "self-signed")
	certs := exec.Command(suite.binary, "certs", "--out-dir", overlay, "--webhook-config", filepath.Join(overlay, "webhook-ca.yaml"))
	if out, err := certs.CombinedOutput(); err != nil {
		t.Fatalf("certs: %v: %s", err, out)
	}
	objs, err := cluster.Render(overlay)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(overlay, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	secret, hook := find(objs, "Secret", "sidecar-injector-tls"), find(objs, "MutatingWebhookConfiguration", "sidecar-injector")
	if secret == nil || hook == nil {
		t.Fatalf("self-signed overlay lacks the Secret or the webhook: %d objects", len(objs))
	}
	key := find(objs, "Secret", statuskey.SecretName)
	if current, _, _ := unstructured.NestedString(key.Object, "data", statuskey.Current); len(current) < 64 {
		t.Errorf("self-signed overlay's status key %q: want the key certs wrote", current)
	}
	bundle, _, _ := unstructured.NestedSlice(hook.Object, "webhooks")
	cc := bundle[0].(map[string]any)["clientConfig"].(map[string]any)
	if cc["caBundle"] != base64.StdEncoding.EncodeToString(ca) || cc["service"] == nil {
		t.Errorf("webhook client config %v: want the service and the CA of ca.crt", cc)
	}
	c, err := client.New(suite.cluster.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	hook = hook.DeepCopy()
	hook.SetName("dry-run-self-signed") // the suite installed the real one
	key = key.DeepCopy()
	key.SetName("dry-run-status-key") // the suite made the real one
	for _, o := range []*unstructured.Unstructured{secret, hook, key} {
		if err := c.Create(ctxFor(t), o, client.DryRunAll); err != nil {
			t.Errorf("%s %s refused: %v", o.GetKind(), o.GetName(), err)
		}
	}

	objs, err = cluster.Render(filepath.Join(deploy, "overlays", "cert-manager"))
	if err != nil {
		t.Fatal(err)
	}
	if find(objs, "Certificate", "sidecar-injector") == nil || find(objs, "Issuer", "sidecar-injector-selfsigned") == nil {
		t.Error("cert-manager overlay lacks its Certificate or Issuer")
	}
	hook = find(objs, "MutatingWebhookConfiguration", "sidecar-injector")
	if got := hook.GetAnnotations()["cert-manager.io/inject-ca-from"]; got != "sidecar-injector/sidecar-injector" {
		t.Errorf("inject-ca-from annotation %q", got)
	}
}

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

// The policy overlay is the base without the webhook's serving parts, and
// with the controller compiling the catalog to policies under its RBAC.
func TestPolicyOverlayRenders(t *testing.T) {
	objs, err := cluster.Render(filepath.Join(suite.root, "deploy", "overlays", "policy"))
	if err != nil {
		t.Fatal(err)
	}
	for _, gone := range [][2]string{{"MutatingWebhookConfiguration", "sidecar-injector"}, {"Deployment", "sidecar-injector"}, {"Service", "sidecar-injector"}, {"PodDisruptionBudget", "sidecar-injector"}} {
		if find(objs, gone[0], gone[1]) != nil {
			t.Errorf("the policy overlay keeps %s %s", gone[0], gone[1])
		}
	}
	ctrl := find(objs, "Deployment", "sidecar-injector-controller")
	if ctrl == nil {
		t.Fatal("the policy overlay lacks the controller")
	}
	containers, _, _ := unstructured.NestedSlice(ctrl.Object, "spec", "template", "spec", "containers")
	args, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
	if !slices.Contains(args, "--admission-policies") {
		t.Errorf("controller args %v lack --admission-policies", args)
	}
	if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--status-key-dir") }) {
		t.Errorf("controller args %v: the policies' controller takes their unsigned entries at their word, and must run without keys", args)
	}
	if find(objs, "ClusterRole", "sidecar-injector-controller-policies") == nil {
		t.Error("the policy overlay lacks the controller's policy RBAC")
	}
}
