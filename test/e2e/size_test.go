package e2e

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/podpatterns/sidecar-injector/pkg/inject"
)

// bigPod has containers app containers of env plain env vars each, and
// asks for log-shipper.
func bigPod(containers, env int) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("big-%dx%d", containers, env), Annotations: map[string]string{inject.InjectAnnotation: "log-shipper"}}}
	for i := range containers {
		c := corev1.Container{Name: fmt.Sprintf("c%d", i), Image: "registry.example.com/app:1.0.0"}
		for j := range env {
			c.Env = append(c.Env, corev1.EnvVar{Name: fmt.Sprintf("VAR_%d", j), Value: fmt.Sprintf("value-%d-%d", i, j)})
		}
		p.Spec.Containers = append(p.Spec.Containers, c)
	}
	return p
}

// Through kube-apiserver, which sends the webhook the Pod with its
// managedFields, a Pod of 50 containers of 200 env vars each is injected,
// and one past the webhook's limit is denied with a message that names
// the limit and the Pod's size: never the API server's bare "413 but did
// not return more information".
func TestLargePodsThroughTheAPIServer(t *testing.T) {
	ctx := ctxFor(t)
	cfg := rest.CopyConfig(suite.cluster.Config)
	cfg.QPS, cfg.Burst = -1, 0
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ns := namespace(t, "e2e-large", optIn)
	create := func(containers, env int) error {
		_, err := c.CoreV1().Pods(ns).Create(ctx, bigPod(containers, env), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err
	}
	got, err := c.CoreV1().Pods(ns).Create(ctx, bigPod(50, 200), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatalf("50 containers × 200 env vars: %v", err)
	}
	if len(got.Spec.InitContainers) != 1 || got.Spec.InitContainers[0].Name != "log-shipper" {
		t.Errorf("50 containers × 200 env vars admitted without log-shipper: init containers %v", containerNames(got.Spec.InitContainers))
	}
	err = create(50, 400)
	if err == nil || !strings.Contains(err.Error(), "too large for the sidecar injector") || !strings.Contains(err.Error(), "over the limit of 16384") || strings.Contains(err.Error(), "did not return more information") {
		t.Errorf("50 containers × 400 env vars: %v; want our denial naming the limit", err)
	}

	// The largest that pass, by shape: env vars for so many containers.
	var lines []string
	for _, containers := range []int{1, 10, 20, 50} {
		lo, hi := 0, 20000/containers+1 // lo passes, hi does not
		for hi-lo > max(1, lo/50) {     // to 2%
			mid := (lo + hi) / 2
			if create(containers, mid) == nil {
				lo = mid
			} else {
				hi = mid
			}
		}
		lines = append(lines, fmt.Sprintf("%d × %d", containers, lo))
	}
	t.Logf("the largest Pods the webhook injects through kube-apiserver (containers × env vars, to 2%%): %s", strings.Join(lines, ", "))
}
