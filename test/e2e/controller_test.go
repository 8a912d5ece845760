package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podpatterns/sidecar-injector/test/cluster"
)

// startController runs `sidecar-injector controller` with args and returns
// its metrics address; it is stopped when the test ends or by the stop
// function returned.
func startController(t *testing.T, args ...string) (metrics string, stop func()) {
	t.Helper()
	ports, err := cluster.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	metrics = fmt.Sprintf("127.0.0.1:%d", ports[0])
	cmd := exec.Command(suite.binary, append([]string{"controller",
		"--kubeconfig", suite.cluster.Kubeconfig, "--catalog", suite.catalogDir,
		"--metrics-addr", metrics, "--health-addr", fmt.Sprintf("127.0.0.1:%d", ports[1]),
		"--audit-interval", "1s", "--log-level", "debug"}, args...)...)
	cmd.Stdout, cmd.Stderr = suite.logs, suite.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
		}
	}
	t.Cleanup(stop)
	return metrics, stop
}

// metric reads one sample from a Prometheus text endpoint; -1 if absent.
func metric(addr, series string) float64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			v, _ := strconv.ParseFloat(rest, 64)
			return v
		}
	}
	return -1
}

// A Deployment whose Pods predate their namespace's opt-in is found
// missing: the gauge and an Event say so; a dry run changes nothing; then
// the leader of two controllers rolls it out, the webhook injects the new
// Pod, and only the leader restarted anything.
func TestControllerRepairsMissingPods(t *testing.T) {
	ns := namespace(t, "e2e-repair", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go cluster.PlayKubelet(ctx, suite.cluster.Client, ns)

	labels := map[string]string{"app": "shop"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "shop"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{"sidecars.podpatterns.io/inject": "content-filler"}},
				Spec:       nginxPod("", "").Spec,
			},
		},
	}
	deployments := suite.client.AppsV1().Deployments(ns)
	if _, err := deployments.Create(ctxFor(t), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the uninjected Deployment to be available", func() bool {
		got, err := deployments.Get(ctxFor(t), "shop", metav1.GetOptions{})
		return err == nil && got.Status.AvailableReplicas == 1
	})
	nsObj, err := suite.cluster.Client.CoreV1().Namespaces().Get(ctxFor(t), ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nsObj.Labels["sidecars.podpatterns.io/injection"] = "enabled"
	if _, err := suite.cluster.Client.CoreV1().Namespaces().Update(ctxFor(t), nsObj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	missing := fmt.Sprintf(`sidecar_injector_pods{namespace=%q,state="missing",template="content-filler"}`, ns)
	dry, stopDry := startController(t, "--repair=restart", "--dry-run", "--leader-elect=false")
	eventually(t, "the dry run to report the missing Pod and the rollout it would start", func() bool {
		return metric(dry, missing) == 1 && metric(dry, `sidecar_injector_controller_restarts_total{result="dry-run"}`) >= 1
	})
	stopDry()
	got, err := deployments.Get(ctxFor(t), "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, restarted := got.Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"]; restarted || got.Generation != 1 {
		t.Fatalf("the dry run changed the Deployment: generation %d, annotations %v", got.Generation, got.Spec.Template.Annotations)
	}
	eventually(t, "an Event on the Deployment", func() bool {
		events, err := suite.client.CoreV1().Events(ns).List(ctxFor(t), metav1.ListOptions{})
		if err != nil {
			return false
		}
		return slices.ContainsFunc(events.Items, func(e corev1.Event) bool {
			return e.InvolvedObject.Kind == "Deployment" && e.InvolvedObject.Name == "shop" && e.Reason == "SidecarsMissing"
		})
	})

	a, _ := startController(t, "--repair=restart")
	b, _ := startController(t, "--repair=restart")
	eventually(t, "the leader to roll the Deployment out and its new Pod to be injected", func() bool {
		pods, err := suite.client.CoreV1().Pods(ns).List(ctxFor(t), metav1.ListOptions{LabelSelector: "app=shop"})
		if err != nil || len(pods.Items) != 1 {
			return false
		}
		return slices.Contains(containerNames(pods.Items[0].Spec.Containers), "content-filler")
	})
	current := fmt.Sprintf(`sidecar_injector_pods{namespace=%q,state="current",template="content-filler"}`, ns)
	eventually(t, "the leader's gauge to show the Pod current", func() bool {
		return max(metric(a, current), metric(b, current)) == 1
	})
	restarts := []float64{metric(a, `sidecar_injector_controller_restarts_total{result="success"}`), metric(b, `sidecar_injector_controller_restarts_total{result="success"}`)}
	slices.Sort(restarts)
	if restarts[1] != 1 || restarts[0] > 0 {
		t.Errorf("restarts by the two controllers %v; want one by the leader and none by the other", restarts)
	}
}
