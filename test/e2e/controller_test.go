package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
		"--audit-interval", "1s", "--log-level", "debug", "--status-key-dir", suite.keyDir}, args...)...)
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

// metric reads one series of a controller's /metrics; -1 if absent.
func metric(addr, series string) float64 { return cluster.Metric("http://"+addr+"/metrics", series) }

// repairHelper is a template only this test's workloads use, so changing
// its image makes nobody else's Pods stale.
func repairHelper(image string) []byte {
	return []byte(`apiVersion: sidecars.podpatterns.io/v1alpha1
kind: Catalog
templates:
- name: repair-helper
  pattern: sidecar
  description: the conformance controller's test template
  containers: [{name: repair-helper, image: "` + image + `"}]
`)
}

// Deployments whose Pods predate their namespace's opt-in are found
// missing: the gauge and an Event say so; a dry run changes nothing; then
// the leader of two controllers rolls them out one at a time and the
// webhook injects the new Pods. A new image in the catalog makes them
// stale, and they are rolled out again. Only the leader restarts anything.
func TestControllerRepairsMissingAndStalePods(t *testing.T) {
	helper := filepath.Join(suite.catalogDir, "repair.yaml")
	if err := os.WriteFile(helper, repairHelper("busybox:1.36.0"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(helper) })
	ns := namespace(t, "e2e-repair", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go cluster.PlayKubelet(ctx, suite.cluster.Client, ns)

	deployments := suite.client.AppsV1().Deployments(ns)
	names := []string{"shop-a", "shop-b"}
	for _, name := range names {
		labels := map[string]string{"app": name}
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{"sidecars.podpatterns.io/inject": "repair-helper"}},
					Spec:       nginxPod("", "").Spec,
				},
			},
		}
		if _, err := deployments.Create(ctxFor(t), d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// midRollout counts the Deployments mid-rollout in one consistent
	// read of both; -1 when the read fails.
	midRollout := func() int {
		list, err := deployments.List(ctxFor(t), metav1.ListOptions{})
		if err != nil {
			return -1
		}
		n := 0
		for _, d := range list.Items {
			if d.Generation > d.Status.ObservedGeneration || d.Status.UpdatedReplicas != 1 || d.Status.Replicas != 1 || d.Status.AvailableReplicas != 1 {
				n++
			}
		}
		return n
	}
	eventually(t, "the uninjected Deployments to be available", func() bool { return midRollout() == 0 })
	labelNamespace(t, ns, "sidecars.podpatterns.io/injection", "enabled")

	series := func(state string) string {
		return fmt.Sprintf(`sidecar_injector_pods{namespace=%q,state=%q,template="repair-helper"}`, ns, state)
	}
	dry, stopDry := startController(t, "--repair=restart", "--dry-run", "--leader-elect=false")
	eventually(t, "the dry run to report the missing Pods and the rollouts it would start", func() bool {
		return metric(dry, series("missing")) == 2 && metric(dry, `sidecar_injector_controller_restarts_total{result="dry-run"}`) >= 1
	})
	stopDry()
	for _, name := range names {
		got, err := deployments.Get(ctxFor(t), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, restarted := got.Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"]; restarted || got.Generation != 1 {
			t.Fatalf("the dry run changed %s: generation %d, annotations %v", name, got.Generation, got.Spec.Template.Annotations)
		}
	}
	eventually(t, "an Event on each Deployment", func() bool {
		events, err := suite.client.CoreV1().Events(ns).List(ctxFor(t), metav1.ListOptions{})
		if err != nil {
			return false
		}
		for _, name := range names {
			if !slices.ContainsFunc(events.Items, func(e corev1.Event) bool {
				return e.InvolvedObject.Kind == "Deployment" && e.InvolvedObject.Name == name && e.Reason == "SidecarsMissing"
			}) {
				return false
			}
		}
		return true
	})

	a, _ := startController(t, "--repair=restart")
	b, _ := startController(t, "--repair=restart")
	// One rollout at a time: never both mid-rollout at once.
	inject := func(image string) {
		t.Helper()
		eventually(t, "every Pod to carry repair-helper "+image+", one rollout at a time", func() bool {
			if midRollout() == 2 {
				t.Fatal("both Deployments are mid-rollout at once; --max-concurrent-restarts is 1")
			}
			pods, err := suite.client.CoreV1().Pods(ns).List(ctxFor(t), metav1.ListOptions{})
			if err != nil || len(pods.Items) != 2 {
				return false
			}
			for _, p := range pods.Items {
				c := slices.IndexFunc(p.Spec.Containers, func(c corev1.Container) bool { return c.Name == "repair-helper" })
				if c < 0 || p.Spec.Containers[c].Image != image {
					return false
				}
			}
			return true
		})
	}
	inject("busybox:1.36.0")
	eventually(t, "the leader's gauge to show both Pods current", func() bool {
		return max(metric(a, series("current")), metric(b, series("current"))) == 2
	})

	if err := os.WriteFile(helper, repairHelper("busybox:1.37.0"), 0o644); err != nil {
		t.Fatal(err)
	}
	inject("busybox:1.37.0")

	restarts := []float64{metric(a, `sidecar_injector_controller_restarts_total{result="success"}`), metric(b, `sidecar_injector_controller_restarts_total{result="success"}`)}
	slices.Sort(restarts)
	if restarts[1] != 4 || restarts[0] != 0 {
		t.Errorf("restarts by the two controllers %v; want 4 (two workloads, missing then stale) by the leader, none by the other", restarts)
	}
}

// Against a cluster without the namespace of its Lease, the controller
// says so once and exits, rather than logging a stack trace every few
// seconds.
func TestControllerWithoutItsLeaseNamespaceSaysSo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, suite.binary, "controller", "--kubeconfig", suite.cluster.Kubeconfig, "--catalog", suite.catalogDir,
		"--metrics-addr", "0", "--health-addr", "0", "--leader-election-namespace", "no-such-namespace").CombinedOutput()
	if ctx.Err() != nil || err == nil {
		t.Fatalf("the controller kept running or succeeded: %v\n%s", err, out)
	}
	if want := `namespace "no-such-namespace", where replicas take turns through a Lease, does not exist`; !strings.Contains(string(out), want) || strings.Count(string(out), "goroutine") > 0 {
		t.Errorf("output %s; want one line holding %q", out, want)
	}
}
