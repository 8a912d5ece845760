package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podpatterns/sidecar-injector/test/cluster"
)

// controllerAccount is the service account deploy/base runs the
// controller as.
const controllerAccount = "system:serviceaccount:sidecar-injector:sidecar-injector-controller"

// install creates the objects dir renders that pick picks, unless they
// exist, and says how many it picked.
func install(t *testing.T, dir string, pick func(*unstructured.Unstructured) bool) int {
	t.Helper()
	objs, err := cluster.Render(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(suite.cluster.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	installed := 0
	for _, o := range objs {
		if !pick(o) {
			continue
		}
		if err := c.Create(ctxFor(t), o); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
		}
		installed++
	}
	return installed
}

// asController installs deploy/base's RBAC for the controller and returns
// a kubeconfig that acts as its service account.
func asController(t *testing.T) string {
	t.Helper()
	installed := install(t, filepath.Join(suite.root, "deploy", "base"), func(o *unstructured.Unstructured) bool {
		rbac := slices.Contains([]string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}, o.GetKind()) && o.GetName() == "sidecar-injector-controller"
		return rbac || (o.GetKind() == "Namespace" && o.GetName() == "sidecar-injector")
	})
	if installed != 6 {
		t.Fatalf("installed %d objects of deploy/base, want the namespace and the controller's account, roles and bindings", installed)
	}
	cfg, err := clientcmd.LoadFromFile(suite.cluster.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, user := range cfg.AuthInfos {
		user.Impersonate = controllerAccount
	}
	file := filepath.Join(t.TempDir(), "controller.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, file); err != nil {
		t.Fatal(err)
	}
	return file
}

// Under the RBAC deploy/base gives it, `controller --repair=in-place`
// upgrades a Deployment's stale sidecars in place when the catalog moves
// their image: the same Pods carry the new image and classify current,
// the Deployment is never rolled out.
func TestInPlaceUpgradeUnderTheShippedRBAC(t *testing.T) {
	helper := filepath.Join(suite.catalogDir, "inplace.yaml")
	write := func(image string) {
		t.Helper()
		text := strings.ReplaceAll(string(repairHelper(image)), "repair-helper", "inplace-helper")
		if err := os.WriteFile(helper, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("busybox:1.36.0")
	t.Cleanup(func() { _ = os.Remove(helper) })
	ns := namespace(t, "e2e-inplace", map[string]string{"sidecars.podpatterns.io/injection": "enabled"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go cluster.PlayKubelet(ctx, suite.cluster.Client, ns)
	labels := map[string]string{"app": "shop"}
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "shop"}, Spec: appsv1.DeploymentSpec{
		Replicas: new(int32(2)),
		Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{"sidecars.podpatterns.io/inject": "inplace-helper"}},
			Spec:       nginxPod("", "").Spec,
		},
	}}
	if _, err := suite.client.AppsV1().Deployments(ns).Create(ctxFor(t), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	images := func() (map[types.UID]string, bool) {
		pods, err := suite.client.CoreV1().Pods(ns).List(ctxFor(t), metav1.ListOptions{})
		if err != nil || len(pods.Items) != 2 {
			return nil, false
		}
		out := map[types.UID]string{}
		for _, p := range pods.Items {
			i := slices.IndexFunc(p.Spec.Containers, func(c corev1.Container) bool { return c.Name == "inplace-helper" })
			if i < 0 || p.Status.Phase != corev1.PodRunning {
				return nil, false
			}
			out[p.UID] = p.Spec.Containers[i].Image
		}
		return out, true
	}
	var before map[types.UID]string
	eventually(t, "two injected, running Pods", func() bool { var ok bool; before, ok = images(); return ok })

	metrics, _ := startController(t, "--kubeconfig", asController(t), "--repair=in-place")
	write("busybox:1.37.0")
	eventually(t, "both Pods upgraded in place", func() bool {
		return metric(metrics, `sidecar_injector_controller_upgrades_total{result="success"}`) == 2 &&
			metric(metrics, `sidecar_injector_pods{namespace="`+ns+`",state="current",template="inplace-helper"}`) == 2
	})
	after, _ := images()
	for uid := range before {
		if after[uid] != "busybox:1.37.0" {
			t.Errorf("Pod %s: image %q after the upgrade, want the same Pod on busybox:1.37.0 (after: %v)", uid, after[uid], after)
		}
	}
	got, err := suite.client.AppsV1().Deployments(ns).Get(ctxFor(t), "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Generation != 1 {
		t.Errorf("the Deployment was rolled out (generation %d)", got.Generation)
	}
	if n := metric(metrics, `sidecar_injector_controller_upgrades_total{result="failure"}`); n != 0 {
		t.Errorf("%v upgrades failed (forbidden?); see %s", n, suite.logs.Name())
	}
}
