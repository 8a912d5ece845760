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
// moves a Deployment's stale sidecars in place when the catalog moves
// their image (the container runs anew on it) or their cpu and memory
// (resized through pods/resize, the container kept): the same Pods carry
// what the catalog renders and classify current, the Deployment is never
// rolled out.
func TestInPlaceUpgradeUnderTheShippedRBAC(t *testing.T) {
	withResources := func(cpuRequest, cpuLimit string) string {
		return `apiVersion: sidecars.podpatterns.io/v1alpha1
kind: Catalog
templates:
- name: repair-helper
  pattern: sidecar
  description: the conformance controller's test template
  containers:
  - name: repair-helper
    image: busybox:1.36.0
    resources: {requests: {cpu: ` + cpuRequest + `, memory: 32Mi}, limits: {cpu: ` + cpuLimit + `, memory: 128Mi}}
`
	}
	for _, c := range []struct {
		name, before, after string
		moved               func(corev1.Container) bool
	}{
		{"image", string(repairHelper("busybox:1.36.0")), string(repairHelper("busybox:1.37.0")), func(c corev1.Container) bool { return c.Image == "busybox:1.37.0" }},
		{"resources", withResources("10m", "200m"), withResources("20m", "300m"),
			func(c corev1.Container) bool {
				return c.Resources.Requests.Cpu().String() == "20m" && c.Resources.Limits.Cpu().String() == "300m"
			}},
	} {
		t.Run(c.name, func(t *testing.T) { inPlace(t, c.name, c.before, c.after, c.moved) })
	}
}

// inPlace runs a Deployment of two Pods with the template of the catalog
// before (its template named repair-helper, renamed for the test), moves
// the catalog to after and waits until the controller has moved both
// Pods in place, holding each sidecar to moved.
func inPlace(t *testing.T, name, before, after string, moved func(corev1.Container) bool) {
	helper := filepath.Join(suite.catalogDir, "inplace-"+name+".yaml")
	template := "inplace-" + name
	write := func(catalog string) {
		t.Helper()
		text := strings.ReplaceAll(catalog, "repair-helper", template)
		if err := os.WriteFile(helper, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(before)
	t.Cleanup(func() { _ = os.Remove(helper) })
	ns := namespace(t, "e2e-inplace-"+name, map[string]string{"sidecars.podpatterns.io/injection": "enabled"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go cluster.PlayKubelet(ctx, suite.cluster.Client, ns)
	labels := map[string]string{"app": "shop"}
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "shop"}, Spec: appsv1.DeploymentSpec{
		Replicas: new(int32(2)),
		Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{"sidecars.podpatterns.io/inject": template}},
			Spec:       nginxPod("", "").Spec,
		},
	}}
	if _, err := suite.client.AppsV1().Deployments(ns).Create(ctxFor(t), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sidecars := func() (map[types.UID]corev1.Container, bool) {
		pods, err := suite.client.CoreV1().Pods(ns).List(ctxFor(t), metav1.ListOptions{})
		if err != nil || len(pods.Items) != 2 {
			return nil, false
		}
		out := map[types.UID]corev1.Container{}
		for _, p := range pods.Items {
			i := slices.IndexFunc(p.Spec.Containers, func(c corev1.Container) bool { return c.Name == template })
			if i < 0 || p.Status.Phase != corev1.PodRunning {
				return nil, false
			}
			out[p.UID] = p.Spec.Containers[i]
		}
		return out, true
	}
	var first map[types.UID]corev1.Container
	eventually(t, "two injected, running Pods", func() bool { var ok bool; first, ok = sidecars(); return ok })

	metrics, _ := startController(t, "--kubeconfig", asController(t), "--repair=in-place")
	write(after)
	eventually(t, "both Pods moved in place", func() bool {
		return metric(metrics, `sidecar_injector_controller_upgrades_total{result="success"}`) == 2 &&
			metric(metrics, `sidecar_injector_pods{namespace="`+ns+`",state="current",template="`+template+`"}`) == 2
	})
	now, _ := sidecars()
	for uid := range first {
		if c, ok := now[uid]; !ok || !moved(c) {
			t.Errorf("Pod %s: sidecar %+v after the upgrade, want the same Pod with what the catalog moved", uid, c)
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
