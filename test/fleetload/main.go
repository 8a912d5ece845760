// Command fleetload measures the conformance controller at scale: it
// creates N Pods, injected as the webhook would inject them, in an
// opted-in namespace of the envtest control plane (they need not run),
// starts `sidecar-injector controller`, and reports how long a full
// classification takes and the controller's peak RSS, against the
// targets of 5 s and 150 MiB for 10,000 Pods.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/pkg/patch"
	"github.com/podpatterns/sidecar-injector/test/cluster"
)

func main() {
	bin := flag.String("server", "bin/sidecar-injector", "sidecar-injector binary")
	n := flag.Int("pods", 10000, "Pods to create")
	flag.Parse()
	if err := run(*bin, *n); err != nil {
		fmt.Fprintln(os.Stderr, "fleetload:", err)
		os.Exit(1)
	}
}

func run(bin string, n int) error {
	logs, err := os.CreateTemp("", "sidecar-injector-fleetload-*.log")
	if err != nil {
		return err
	}
	defer logs.Close()
	cl, err := cluster.Start(logs)
	if err != nil {
		return err
	}
	defer cl.Stop()
	ctx := context.Background()
	cfg := rest.CopyConfig(cl.Config)
	cfg.QPS, cfg.Burst = -1, 0
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ns := "fleet"
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{inject.InjectionLabel: "enabled"}}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	pod, err := injectedPod()
	if err != nil {
		return err
	}
	start := time.Now()
	var next, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if _, err := client.CoreV1().Pods(ns).Create(ctx, pod.DeepCopy(), metav1.CreateOptions{}); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		})
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return fmt.Errorf("%d creates failed: %w", failed.Load(), err)
	}
	fmt.Printf("created %d injected Pods in %s\n", n, time.Since(start).Round(time.Millisecond))

	ports, err := cluster.FreePorts(2)
	if err != nil {
		return err
	}
	metrics := fmt.Sprintf("127.0.0.1:%d", ports[0])
	cmd := exec.Command(bin, "controller", "--kubeconfig", cl.Kubeconfig, "--leader-elect=false",
		"--metrics-addr", metrics, "--health-addr", fmt.Sprintf("127.0.0.1:%d", ports[1]), "--audit-interval", "2s", "--log-level", "error")
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.Env = append(os.Environ(), strings.Fields(os.Getenv("FLEETLOAD_ENV"))...)
	start = time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	current := fmt.Sprintf(`sidecar_injector_pods{namespace=%q,state="current",template="log-shipper"}`, ns)
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if err := cluster.WaitFor(wctx, "every Pod classified current", func() bool { return cluster.Metric("http://"+metrics+"/metrics", current) == float64(n) }); err != nil {
		return err
	}
	fmt.Printf("controller: every Pod classified current %s after start (cache sync included)\n", time.Since(start).Round(time.Millisecond))
	var took []string
	for range 3 { // later passes, on a warm cache
		time.Sleep(2500 * time.Millisecond)
		took = append(took, fmt.Sprintf("%.2fs", cluster.Metric("http://"+metrics+"/metrics", "sidecar_injector_controller_classification_seconds")))
	}
	rss := cluster.ProcStatus(cmd.Process.Pid, "VmHWM:")
	fmt.Printf("full classification of %d Pods: %s (target < 5s); controller peak RSS %.1f MiB (target < 150 MiB)\n", n, strings.Join(took, ", "), float64(rss)/(1<<20))
	return nil
}

// injectedPod is a typical Pod as the webhook admits it.
func injectedPod() (*corev1.Pod, error) {
	cat, err := catalog.Default()
	if err != nil {
		return nil, err
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "web-", Annotations: map[string]string{inject.InjectAnnotation: "log-shipper"}},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsUser: new(int64(1000)), FSGroup: new(int64(1000))},
			Containers:      []corev1.Container{{Name: "web", Image: "registry.example.com/web:1.0.0"}},
		},
	}
	res, err := inject.Pod(pod, nil, cat)
	if err != nil {
		return nil, err
	}
	raw, _ := json.Marshal(pod)
	out, err := patch.Apply(raw, patch.ForPod(pod, res.Plan))
	if err != nil {
		return nil, err
	}
	injected := &corev1.Pod{}
	return injected, json.Unmarshal(out, injected)
}
