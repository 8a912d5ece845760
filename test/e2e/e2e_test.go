package e2e

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/test/cluster"
)

func TestClassicExampleIsStoredInjected(t *testing.T) {
	ns := namespace(t, "e2e-classic", optIn)
	if _, err := create(t, ns, nginxPod("web", "content-filler")); err != nil {
		t.Fatal(err)
	}
	pod := stored(t, ns, "web")
	if got := containerNames(pod.Spec.Containers); !slices.Equal(got, []string{"nginx", "content-filler"}) {
		t.Fatalf("containers %v, want [nginx content-filler]", got)
	}
	if len(pod.Spec.Volumes) != 1 || pod.Spec.Volumes[0].Name != "shared-content" || pod.Spec.Volumes[0].EmptyDir == nil {
		t.Errorf("volumes %+v, want the shared-content emptyDir", pod.Spec.Volumes)
	}
	app, filler := pod.Spec.Containers[0], pod.Spec.Containers[1]
	if len(app.VolumeMounts) != 1 || app.VolumeMounts[0].MountPath != "/usr/share/nginx/html" || app.VolumeMounts[0].Name != "shared-content" {
		t.Errorf("nginx mounts %+v", app.VolumeMounts)
	}
	if len(filler.VolumeMounts) != 1 || filler.VolumeMounts[0].Name != "shared-content" {
		t.Errorf("content-filler mounts %+v", filler.VolumeMounts)
	}
	if filler.Resources.Limits.Memory().IsZero() || *filler.SecurityContext.AllowPrivilegeEscalation {
		t.Errorf("content-filler lacks limits or a restricted security context: %+v", filler)
	}
	if !strings.Contains(pod.Annotations["sidecars.podpatterns.io/status"], `"name":"content-filler"`) {
		t.Errorf("status annotation %q", pod.Annotations["sidecars.podpatterns.io/status"])
	}
	if got := pod.Annotations["kubectl.kubernetes.io/default-container"]; got != "nginx" {
		t.Errorf("default container %q, want the app, nginx", got)
	}
}

func TestNativeSidecarEnvAndAmbassador(t *testing.T) {
	ns := namespace(t, "e2e-native", optIn)
	pod := nginxPod("api", "log-shipper, ambassador")
	pod.Annotations["ambassador.sidecars.podpatterns.io/upstream"] = "redis.prod.svc:6379"
	if _, err := create(t, ns, pod); err != nil {
		t.Fatal(err)
	}
	got := stored(t, ns, "api")
	if names := containerNames(got.Spec.InitContainers); !slices.Equal(names, []string{"log-shipper", "ambassador"}) {
		t.Fatalf("init containers %v", names)
	}
	for _, c := range got.Spec.InitContainers {
		if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			t.Errorf("%s is not a native sidecar", c.Name)
		}
	}
	env := map[string]string{}
	for _, e := range got.Spec.Containers[0].Env {
		env[e.Name] = e.Value
	}
	if env["LOG_DIR"] != "/var/log/app" || env["AMBASSADOR_ADDR"] != "localhost:9000" {
		t.Errorf("app env %v", env)
	}
	if args := strings.Join(got.Spec.InitContainers[1].Args, " "); !strings.Contains(args, "TCP:redis.prod.svc:6379") {
		t.Errorf("ambassador args %q", args)
	}
}

func TestOutsideOptedInNamespacesNothingChanges(t *testing.T) {
	plain := namespace(t, "e2e-plain", nil)
	if _, err := create(t, plain, nginxPod("web", "content-filler")); err != nil {
		t.Fatal(err)
	}
	if got := stored(t, plain, "web"); len(got.Spec.Containers) != 1 || got.Annotations["sidecars.podpatterns.io/status"] != "" {
		t.Errorf("a pod outside opted-in namespaces was changed: %v", containerNames(got.Spec.Containers))
	}

	// The webhook sees a labelled-out Pod (so that required templates
	// hold) and leaves it as it is.
	ns := namespace(t, "e2e-optout", optIn)
	before := requests(t)
	pod := nginxPod("web", "content-filler")
	pod.Labels = map[string]string{"sidecars.podpatterns.io/injection": "disabled"}
	if _, err := create(t, ns, pod); err != nil {
		t.Fatal(err)
	}
	if got := stored(t, ns, "web"); len(got.Spec.Containers) != 1 {
		t.Errorf("a pod labelled injection=disabled was injected: %v", containerNames(got.Spec.Containers))
	}
	if after := requests(t); after["skipped"] != before["skipped"]+1 {
		t.Errorf("want one skipped request for a pod labelled injection=disabled; counters went from %v to %v", before, after)
	}
}

func TestDeploymentPodsAreInjected(t *testing.T) {
	ns := namespace(t, "e2e-deploy", optIn)
	labels := map[string]string{"app": "web"}
	replicas := int32(2)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{"sidecars.podpatterns.io/inject": "content-filler"}},
				Spec:       nginxPod("", "").Spec,
			},
		},
	}
	if _, err := suite.client.AppsV1().Deployments(ns).Create(ctxFor(t), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pods []corev1.Pod
	eventually(t, "the ReplicaSet controller to create 2 pods", func() bool {
		list, err := suite.client.CoreV1().Pods(ns).List(ctxFor(t), metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return false
		}
		pods = list.Items
		return len(pods) == 2
	})
	for _, p := range pods {
		if len(p.OwnerReferences) == 0 || p.OwnerReferences[0].Kind != "ReplicaSet" {
			t.Errorf("%s was not created by a ReplicaSet: %+v", p.Name, p.OwnerReferences)
		}
		if got := containerNames(p.Spec.Containers); !slices.Equal(got, []string{"nginx", "content-filler"}) {
			t.Errorf("%s: containers %v", p.Name, got)
		}
	}
}

func TestDenialAndWarningsReachTheUser(t *testing.T) {
	ns := namespace(t, "e2e-deny", optIn)
	_, err := create(t, ns, nginxPod("web", "content-filer"))
	if err == nil {
		t.Fatal("a pod asking for an unknown template was created")
	}
	want := `admission webhook "inject.sidecars.podpatterns.io" denied the request: template "content-filer" not found in the catalog; have "ambassador", "content-filler", "log-shipper", "metrics-adapter"`
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q\nwant it to contain %q", err, want)
	}
	if _, err := suite.client.CoreV1().Pods(ns).Get(ctxFor(t), "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a denied pod exists: %v", err)
	}

	suite.warnings.take()
	if _, err := create(t, ns, nginxPod("logs", "log-shipper")); err != nil {
		t.Fatal(err)
	}
	if w := suite.warnings.take(); !contains(w, `template "log-shipper" runs as the app's user, but the Pod sets no runAsUser or fsGroup`) {
		t.Errorf("warnings %q lack the run-as-user remark", w)
	}
}

func TestDryRunStoresNothing(t *testing.T) {
	ns := namespace(t, "e2e-dryrun", optIn)
	got, err := suite.client.CoreV1().Pods(ns).Create(ctxFor(t), nginxPod("web", "content-filler"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatal(err)
	}
	if names := containerNames(got.Spec.Containers); !slices.Equal(names, []string{"nginx", "content-filler"}) {
		t.Errorf("dry-run answer has containers %v", names)
	}
	if _, err := suite.client.CoreV1().Pods(ns).Get(ctxFor(t), "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("dry run stored a pod: %v", err)
	}
}

// A second webhook adds a container after ours; the API server reinvokes
// ours (reinvocationPolicy: IfNeeded from deploy/), which adds nothing.
func TestReinvocationInjectsOnce(t *testing.T) {
	ns := namespace(t, "e2e-reinvoke", map[string]string{"sidecars.podpatterns.io/injection": "enabled", "e2e-late-adder": "on"})
	adder := httptest.NewTLSServer(http.HandlerFunc(lateAdder))
	defer adder.Close()
	url := adder.URL + "/add"
	none, fail, never := admissionregistrationv1.SideEffectClassNone, admissionregistrationv1.Fail, admissionregistrationv1.NeverReinvocationPolicy
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "zz-e2e-late-adder"}, // sorts after ours
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "late-adder.e2e.test",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: adder.Certificate().Raw})},
			Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{"CREATE"}, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"e2e-late-adder": "on"}},
			SideEffects:             &none,
			FailurePolicy:           &fail,
			ReinvocationPolicy:      &never,
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
	if err := suite.cluster.InstallWebhook(ctxFor(t), cfg); err != nil {
		t.Fatal(err)
	}
	defer suite.cluster.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctxFor(t), cfg.Name, metav1.DeleteOptions{})

	i := 0
	var pod *corev1.Pod
	eventually(t, "the second webhook to take effect", func() bool {
		i++
		p, err := create(t, ns, nginxPod(fmt.Sprintf("web-%d", i), "content-filler, log-shipper"))
		if err != nil {
			t.Fatal(err)
		}
		pod = stored(t, ns, p.Name)
		return slices.Contains(containerNames(pod.Spec.Containers), "late-addition")
	})
	before := requests(t)
	pod, err := create(t, ns, nginxPod("final", "content-filler, log-shipper"))
	if err != nil {
		t.Fatal(err)
	}
	after := requests(t)
	pod = stored(t, ns, pod.Name)
	if got := containerNames(pod.Spec.Containers); !slices.Equal(got, []string{"nginx", "content-filler", "late-addition"}) {
		t.Errorf("containers %v, want one copy of each", got)
	}
	if got := containerNames(pod.Spec.InitContainers); !slices.Equal(got, []string{"log-shipper"}) {
		t.Errorf("init containers %v, want one log-shipper", got)
	}
	if len(pod.Spec.Volumes) != 2 {
		t.Errorf("volumes %+v, want shared-content and app-logs once", pod.Spec.Volumes)
	}
	if after["injected"]-before["injected"] != 1 || after["skipped"]-before["skipped"] != 1 {
		t.Errorf("want one injection and one reinvocation that added nothing; counters went from %v to %v", before, after)
	}
}

// lateAdder is the second webhook: it appends a container once.
func lateAdder(w http.ResponseWriter, r *http.Request) {
	review := &admissionv1.AdmissionReview{}
	if err := json.NewDecoder(r.Body).Decode(review); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	pod := &corev1.Pod{}
	_ = json.Unmarshal(review.Request.Object.Raw, pod)
	resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
	if !slices.Contains(containerNames(pod.Spec.Containers), "late-addition") {
		patch, _ := json.Marshal([]map[string]any{{"op": "add", "path": "/spec/containers/-", "value": map[string]string{"name": "late-addition", "image": "busybox:1.37.0"}}})
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = patch, &pt
	}
	review.Response, review.Request = resp, nil
	_ = json.NewEncoder(w).Encode(review)
}

func TestPoliciesFollowNamespaceLabels(t *testing.T) {
	ns := namespace(t, "e2e-policy", map[string]string{"sidecars.podpatterns.io/injection": "enabled", "team": "a"})
	if _, err := create(t, ns, nginxPod("default", "")); err != nil {
		t.Fatal(err)
	}
	if got := containerNames(stored(t, ns, "default").Spec.InitContainers); !slices.Equal(got, []string{"log-shipper"}) {
		t.Errorf("team=a default: init containers %v, want [log-shipper]", got)
	}
	amb := func(name string) *corev1.Pod {
		p := nginxPod(name, "ambassador")
		p.Annotations["ambassador.sidecars.podpatterns.io/upstream"] = "db:5432"
		return p
	}
	_, err := create(t, ns, amb("amb"))
	if err == nil || !strings.Contains(err.Error(), `template "ambassador" is not allowed in this namespace by policy team-a; allowed here: [content-filler log-shipper]`) {
		t.Errorf("ambassador in team=a: %v", err)
	}

	// Relabel while the server runs: no policy matches team=b.
	labelNamespace(t, ns, "team", "b")
	i := 0
	eventually(t, "the relabelled namespace to allow the ambassador", func() bool {
		i++
		_, err := create(t, ns, amb(fmt.Sprintf("amb-%d", i)))
		return err == nil
	})
	if _, err := create(t, ns, nginxPod("no-default", "")); err != nil {
		t.Fatal(err)
	}
	if got := stored(t, ns, "no-default"); len(got.Spec.InitContainers)+len(got.Spec.Containers) != 1 {
		t.Errorf("team=b has no defaults, yet the pod got %v %v", containerNames(got.Spec.InitContainers), containerNames(got.Spec.Containers))
	}
}

func TestCatalogChangeReachesTheNextPod(t *testing.T) {
	ns := namespace(t, "e2e-catalog", optIn)
	extra := append(catalog.DefaultYAML(), []byte(`
- name: e2e-extra
  pattern: adapter
  description: added on disk while the suite runs
  containers: [{name: e2e-extra, image: busybox:1.37.0}]
`)...)
	if err := writeCatalog(extra); err != nil {
		t.Fatal(err)
	}
	i := 0
	eventually(t, "the new template to serve", func() bool {
		i++
		_, err := create(t, ns, nginxPod(fmt.Sprintf("web-%d", i), "e2e-extra"))
		return err == nil
	})
	if got := containerNames(stored(t, ns, fmt.Sprintf("web-%d", i)).Spec.Containers); !slices.Equal(got, []string{"nginx", "e2e-extra"}) {
		t.Errorf("containers %v", got)
	}
}

// With the webhook down, failurePolicy decides: Fail blocks Pods in
// opted-in namespaces only, Ignore lets them through uninjected. It runs
// its own webhook process and configuration, so the shared one serves on.
func TestFailurePolicy(t *testing.T) {
	labels := map[string]string{"e2e-failure-policy": "on"}
	ns := namespace(t, "e2e-down", labels)
	other := namespace(t, "e2e-down-other", nil)
	hook, err := cluster.StartWebhook(ctxFor(t), suite.binary, t.TempDir(), suite.cluster.Kubeconfig, suite.logs)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := cluster.Render(filepath.Join(suite.root, "deploy", "base"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := cluster.CAPEM(hook.CertDir)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := cluster.WebhookConfig(objs, hook.URL(), ca)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Name = "e2e-failure-policy"
	cfg.Webhooks[0].NamespaceSelector = &metav1.LabelSelector{MatchLabels: labels}
	if err := suite.cluster.InstallWebhook(ctxFor(t), cfg); err != nil {
		t.Fatal(err)
	}
	api := suite.cluster.Client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	defer api.Delete(context.Background(), cfg.Name, metav1.DeleteOptions{})
	i := 0
	eventually(t, "the second configuration to take effect", func() bool {
		i++
		p, err := create(t, ns, nginxPod(fmt.Sprintf("up-%d", i), "content-filler"))
		return err == nil && len(stored(t, ns, p.Name).Spec.Containers) == 2
	})

	if err := hook.Stop(); err != nil {
		t.Fatalf("serve did not exit cleanly on SIGTERM: %v", err)
	}
	_, err = create(t, ns, nginxPod("web", "content-filler"))
	if err == nil || !strings.Contains(err.Error(), `failed calling webhook "inject.sidecars.podpatterns.io"`) {
		t.Errorf("with failurePolicy Fail and the server down: %v", err)
	}
	if _, err := create(t, other, nginxPod("web", "content-filler")); err != nil {
		t.Errorf("a namespace that did not opt in is affected: %v", err)
	}

	cfg, err = api.Get(ctxFor(t), cfg.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ignore := admissionregistrationv1.Ignore
	cfg.Webhooks[0].FailurePolicy = &ignore
	if _, err := api.Update(ctxFor(t), cfg, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "failurePolicy Ignore to take effect", func() bool {
		i++
		_, err := create(t, ns, nginxPod(fmt.Sprintf("ignored-%d", i), "content-filler"))
		return err == nil
	})
	if got := stored(t, ns, fmt.Sprintf("ignored-%d", i)); len(got.Spec.Containers) != 1 {
		t.Errorf("with the server down the pod was still injected: %v", containerNames(got.Spec.Containers))
	}
}

// A policy's required template holds against everything a Pod controls:
// "none", the opt-out label, and a forged status with a look-alike
// container. The API server calls the webhook for labelled-out Pods too.
func TestRequiredTemplatesHold(t *testing.T) {
	ns := namespace(t, "e2e-required", map[string]string{"sidecars.podpatterns.io/injection": "enabled", "env": "prod"})
	shipper := func(p *corev1.Pod) []string { return containerNames(stored(t, ns, p.Name).Spec.InitContainers) }

	suite.warnings.take()
	p, err := create(t, ns, nginxPod("none", "none"))
	if err != nil {
		t.Fatal(err)
	}
	if got := shipper(p); !slices.Equal(got, []string{"log-shipper"}) {
		t.Errorf(`inject "none": init containers %v, want the required log-shipper`, got)
	}
	if w := suite.warnings.take(); !contains(w, "does not opt out of required templates; injected anyway: log-shipper (policy prod)") {
		t.Errorf("warnings %q lack the required-template remark", w)
	}

	optedOut := nginxPod("opted-out", "content-filler")
	optedOut.Labels = map[string]string{"sidecars.podpatterns.io/injection": "disabled"}
	if p, err = create(t, ns, optedOut); err != nil {
		t.Fatal(err)
	}
	got := stored(t, ns, p.Name)
	if names := containerNames(got.Spec.InitContainers); !slices.Equal(names, []string{"log-shipper"}) {
		t.Errorf("opt-out label: init containers %v, want the required log-shipper", names)
	}
	if names := containerNames(got.Spec.Containers); !slices.Equal(names, []string{"nginx"}) {
		t.Errorf("opt-out label: containers %v, want the asked-for content-filler left out", names)
	}

	forged := nginxPod("forged", "none")
	forged.Annotations["sidecars.podpatterns.io/status"] = `{"templates":[{"name":"log-shipper","hash":"0000000000000000"}]}`
	forged.Spec.InitContainers = []corev1.Container{{Name: "log-shipper", Image: "busybox", Command: []string{"true"}}}
	_, err = create(t, ns, forged)
	if err == nil || !strings.Contains(err.Error(), `init container "log-shipper" of the pod has the name of the template's container but not its content`) {
		t.Errorf("forged status: %v", err)
	}

	laundered := nginxPod("laundered", "none")
	laundered.Annotations["sidecars.podpatterns.io/status"] = `{"templates":[{"name":"not-in-catalog","hash":"x"}]}`
	if p, err = create(t, ns, laundered); err != nil {
		t.Fatal(err)
	}
	status := stored(t, ns, p.Name).Annotations["sidecars.podpatterns.io/status"]
	if strings.Contains(status, "not-in-catalog") || !strings.Contains(status, `"log-shipper"`) {
		t.Errorf("status %s: want log-shipper only", status)
	}

	// Elsewhere the opt-out label still keeps a Pod as it is.
	plain := namespace(t, "e2e-opt-out", optIn)
	optedOut.Name = "opted-out"
	if _, err = create(t, plain, optedOut); err != nil {
		t.Fatal(err)
	}
	if got := stored(t, plain, "opted-out"); len(got.Spec.Containers)+len(got.Spec.InitContainers) != 1 {
		t.Errorf("opt-out label without a policy: containers %v %v", containerNames(got.Spec.InitContainers), containerNames(got.Spec.Containers))
	}
}

// kube-system is never sent to the webhook, even when labelled in, so its
// Pods start while the webhook is down.
func TestKubeSystemIsNeverSent(t *testing.T) {
	api := suite.cluster.Client.CoreV1().Namespaces()
	ks, err := api.Get(ctxFor(t), "kube-system", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ks.Labels["sidecars.podpatterns.io/injection"] = "enabled"
	ks.Labels["env"] = "prod"
	if _, err := api.Update(ctxFor(t), ks, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ks, _ := api.Get(context.Background(), "kube-system", metav1.GetOptions{})
		delete(ks.Labels, "sidecars.podpatterns.io/injection")
		delete(ks.Labels, "env")
		_, _ = api.Update(context.Background(), ks, metav1.UpdateOptions{})
	}()
	before := total(requests(t))
	p, err := create(t, "kube-system", nginxPod("kube-system-pod", "content-filler"))
	if err != nil {
		t.Fatal(err)
	}
	if got := stored(t, "kube-system", p.Name); len(got.Spec.Containers)+len(got.Spec.InitContainers) != 1 {
		t.Errorf("a kube-system Pod was injected: %v %v", containerNames(got.Spec.InitContainers), containerNames(got.Spec.Containers))
	}
	if after := total(requests(t)); after != before {
		t.Errorf("the webhook was called for kube-system (%d requests, then %d)", before, after)
	}
}

// A LimitRange caps memory per container at 64Mi, below the log shipper's
// 96Mi limit: its Pods are refused, in the webhook's words naming the
// override, until the Deployment sizes the shipper with an override
// inside the template's bounds.
func TestResourceOverrideFitsALimitRange(t *testing.T) {
	ns := namespace(t, "e2e-limitrange", optIn)
	lr := &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "small"}, Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
		Type: corev1.LimitTypeContainer, Max: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
	}}}}
	if _, err := suite.client.CoreV1().LimitRanges(ns).Create(ctxFor(t), lr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	app := func(name string, annotations map[string]string) *corev1.Pod {
		p := nginxPod(name, "log-shipper")
		maps.Copy(p.Annotations, annotations)
		p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}
		return p
	}
	var err error
	eventually(t, "the webhook to see the LimitRange", func() bool {
		_, err = suite.client.CoreV1().Pods(ns).Create(ctxFor(t), app("too-big", nil), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil && strings.Contains(err.Error(), "denied the request")
	})
	if want := `LimitRange "small" of this namespace allows a memory limit of at most 64Mi per container: set the annotation log-shipper.sidecars.podpatterns.io/memory-limit: "64Mi" on the Pod`; !strings.Contains(err.Error(), want) {
		t.Fatalf("without an override: %v, want %q", err, want)
	}
	_, err = create(t, ns, app("out-of-bounds", map[string]string{"log-shipper.sidecars.podpatterns.io/memory-limit": "32Mi"}))
	if err == nil || !strings.Contains(err.Error(), "32Mi is outside [64Mi, 512Mi]") {
		t.Fatalf("an override below the template's bounds: %v", err)
	}

	labels := map[string]string{"app": "sized"}
	template := app("", map[string]string{"log-shipper.sidecars.podpatterns.io/memory-limit": "64Mi"})
	template.Labels = labels
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "sized"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: template.ObjectMeta, Spec: template.Spec},
		},
	}
	if _, err := suite.client.AppsV1().Deployments(ns).Create(ctxFor(t), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pod corev1.Pod
	eventually(t, "the ReplicaSet controller to create the Pod", func() bool {
		list, err := suite.client.CoreV1().Pods(ns).List(ctxFor(t), metav1.ListOptions{LabelSelector: "app=sized"})
		if err != nil || len(list.Items) == 0 {
			return false
		}
		pod = list.Items[0]
		return true
	})
	if len(pod.Spec.InitContainers) != 1 || pod.Spec.InitContainers[0].Name != "log-shipper" {
		t.Fatalf("init containers %v, want the log shipper", containerNames(pod.Spec.InitContainers))
	}
	if got := pod.Spec.InitContainers[0].Resources.Limits.Memory().String(); got != "64Mi" {
		t.Errorf("log shipper memory limit %s, want the override's 64Mi", got)
	}
}
