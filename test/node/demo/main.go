// Command demo is the node part of `make demo`: on a real node it runs
// each pattern with an app that shows it working, and prints what each
// one does: the log shipper's output of the app's lines, the upstream's
// answer through the ambassador, the adapter's metrics, the page the
// content-filler wrote, the content-filler upgraded in place while
// the app runs on, and the same web Pod injected with no webhook at all,
// by the catalog compiled to admission policies. Where the machine cannot
// run a node it says why and exits 0.
package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podpatterns/sidecar-injector/pkg/admissionpolicy"
	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/controller"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/test/cluster"
	"github.com/podpatterns/sidecar-injector/test/node"
)

const ns = "demo-node"

func main() {
	if !node.InNamespace() {
		if os.Geteuid() == 0 {
			_ = node.Install()
		}
		if missing := node.Missing(); missing != "" {
			fmt.Printf("==> on a real node: skipped, this machine lacks %s (make test says the same)\n", missing)
			return
		}
		node.Cleanup("")
		code := node.RunInNamespace()
		node.Cleanup("")
		os.Exit(code)
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo on the node:", err)
		os.Exit(1)
	}
}

func run() error {
	logs, err := os.Create(filepath.Join(os.TempDir(), "sidecar-injector-demo-node.log"))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	fmt.Println("==> on a real node: kubelet, containerd and the webhook, in a network namespace of their own")
	env, err := node.Up(ctx, logs, map[string][]byte{"default.yaml": catalog.DefaultYAML(), "test.yaml": []byte(node.TestCatalog)})
	if err != nil {
		return fmt.Errorf("%w (logs: %s)", err, logs.Name())
	}
	defer env.Down()
	c := env.Cluster.Client
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{inject.InjectionLabel: "enabled"}}}, metav1.CreateOptions{}); err != nil {
		return err
	}

	web, err := create(ctx, c, node.WebPod(false), ready)
	if err != nil {
		return err
	}
	page, err := c.CoreV1().Pods(ns).ProxyGet("http", web.Name, "8080", "/index.html", nil).DoRaw(ctx)
	show("content-filler: the page the sidecar wrote, as the app serves it", string(page), err)

	if _, err := create(ctx, c, node.ShipperApp(), running); err != nil {
		return err
	}
	_ = cluster.WaitFor(ctx, "lines", func() bool { return strings.Count(tail(ctx, c, "app", "tail-shipper"), "\n") >= 3 })
	show("log shipper: the app's lines, shipped by the sidecar (its stdout)", lastLines(tail(ctx, c, "app", "tail-shipper"), 3), nil)
	if err := c.CoreV1().Pods(ns).Delete(ctx, "app", metav1.DeleteOptions{}); err != nil {
		return err
	}
	_ = cluster.WaitFor(ctx, "app gone", func() bool { _, err := c.CoreV1().Pods(ns).Get(ctx, "app", metav1.GetOptions{}); return err != nil })

	up, err := create(ctx, c, node.Upstream(), ready)
	if err != nil {
		return err
	}
	if _, err := create(ctx, c, node.AmbassadorApp(up.Status.PodIP), finished); err != nil {
		return err
	}
	show("ambassador: the upstream Pod's answer to the app's first request to $AMBASSADOR_ADDR", tail(ctx, c, "app", "app"), nil)

	if err := c.CoreV1().Pods(ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		return err
	}
	_ = cluster.WaitFor(ctx, "web gone", func() bool { _, err := c.CoreV1().Pods(ns).Get(ctx, "web", metav1.GetOptions{}); return err != nil })
	status, err := create(ctx, c, node.StatusPage(), ready)
	if err != nil {
		return err
	}
	metrics, err := c.CoreV1().Pods(ns).ProxyGet("http", status.Name, "9113", "/metrics", nil).DoRaw(ctx)
	var nginx []string
	for line := range strings.SplitSeq(string(metrics), "\n") {
		if strings.HasPrefix(line, "nginx_") {
			nginx = append(nginx, line)
		}
	}
	show("metrics adapter: the app's status page as Prometheus metrics, on the adapter's port 9113", strings.Join(nginx, "\n"), err)
	if err := upgrade(ctx, env); err != nil {
		return err
	}
	if err := withoutWebhook(ctx, c); err != nil {
		return err
	}
	fmt.Println("==> stopping the node")
	return nil
}

// upgrade moves the catalog's busybox to the next tag and lets
// `controller --repair=in-place` upgrade a running content-filler Pod:
// the sidecar runs again on the new image, the app's container is the
// same one.
func upgrade(ctx context.Context, env *node.Env) error {
	c := env.Cluster.Client
	site := node.WebPod(false)
	site.Name = "site"
	web, err := create(ctx, c, site, ready)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "sidecar-injector-demo-catalog-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for name, text := range map[string][]byte{"default.yaml": catalog.DefaultYAML(), "test.yaml": []byte(node.TestCatalog)} {
		if err := os.WriteFile(filepath.Join(dir, name), bytes.ReplaceAll(text, []byte(node.Busybox), []byte(node.BusyboxNext)), 0o644); err != nil {
			return err
		}
	}
	o := controller.NewManagerOptions()
	o.RestConfig, o.CatalogPath, o.Repair, o.UpgradeBarePods = env.Cluster.Config, dir, controller.RepairInPlace, true
	o.MetricsAddr, o.HealthAddr, o.LeaderElection, o.StatusKeyDir = "0", "0", false, env.KeyDir
	ctrllog.SetLogger(logr.Discard())
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- controller.Run(cctx, o) }()
	defer func() { stop(); <-done }()
	var after *corev1.Pod
	err = cluster.WaitFor(ctx, "the in-place upgrade", func() bool {
		after, err = c.CoreV1().Pods(ns).Get(ctx, web.Name, metav1.GetOptions{})
		filler := node.ContainerStatus(after, "content-filler")
		return err == nil && filler.Image == node.BusyboxNext && filler.Ready
	})
	if err != nil {
		return err
	}
	app, before := node.ContainerStatus(after, "web"), node.ContainerStatus(web, "web")
	show("in-place upgrade: the catalog moves busybox to the next tag; `controller --repair=in-place` patches the running Pod",
		fmt.Sprintf("content-filler: %s -> %s, restarted %d time\napp container: %s, the same one (restarts %d)",
			node.ContainerStatus(web, "content-filler").Image, node.ContainerStatus(after, "content-filler").Image, node.ContainerStatus(after, "content-filler").RestartCount,
			strings.TrimPrefix(app.ContainerID, "containerd://")[:12], app.RestartCount), nil)
	if app.ContainerID != before.ContainerID || app.RestartCount != 0 {
		return fmt.Errorf("the app container was restarted")
	}
	return nil
}

// create makes the Pod on the node through the webhook and waits for ok.
// withoutWebhook binds the catalog compiled to admission policies to a
// namespace the webhook does not serve, and runs the web Pod there:
// kube-apiserver injects the content-filler itself.
func withoutWebhook(ctx context.Context, c kubernetes.Interface) error {
	cat, err := catalog.Parse(catalog.Source{Name: "default.yaml", Data: catalog.DefaultYAML()}, catalog.Source{Name: "test.yaml", Data: []byte(node.TestCatalog)})
	if err != nil {
		return err
	}
	label := map[string]string{"demo.podpatterns.io/injection": "policy"}
	compiled := admissionpolicy.Compile(cat, admissionpolicy.Options{NamespaceSelector: &metav1.LabelSelector{MatchLabels: label}})
	if _, err := cluster.InstallPolicies(ctx, c, compiled); err != nil {
		return err
	}
	const policyNS = "demo-policies"
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: policyNS, Labels: label}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	pod := node.WebPod(false)
	pod.Spec.NodeName = node.Name
	// The API server loads new policies asynchronously: a dry run first.
	_ = cluster.WaitFor(ctx, "the policies", func() bool {
		p, err := c.CoreV1().Pods(policyNS).Create(ctx, pod.DeepCopy(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil && p.Annotations[inject.StatusAnnotation] != ""
	})
	if _, err := c.CoreV1().Pods(policyNS).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return err
	}
	var web *corev1.Pod
	err = cluster.WaitFor(ctx, "the policies' web Pod", func() bool {
		web, err = c.CoreV1().Pods(policyNS).Get(ctx, pod.Name, metav1.GetOptions{})
		return err == nil && ready(web)
	})
	if err != nil {
		return err
	}
	page, err := c.CoreV1().Pods(policyNS).ProxyGet("http", web.Name, "8080", "/index.html", nil).DoRaw(ctx)
	var names []string
	for _, ctr := range web.Spec.Containers {
		names = append(names, ctr.Name)
	}
	status := web.Annotations[inject.StatusAnnotation]
	show("no webhook: the catalog compiled to admission policies (catalog compile); kube-apiserver injected the content-filler itself",
		fmt.Sprintf("containers: %s\nstatus: %.90s...\n%s", strings.Join(names, ", "), status, strings.TrimSpace(string(page))), err)
	return nil
}

func create(ctx context.Context, c kubernetes.Interface, pod *corev1.Pod, ok func(*corev1.Pod) bool) (*corev1.Pod, error) {
	pod.Spec.NodeName = node.Name
	if _, err := c.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	var got *corev1.Pod
	err := cluster.WaitFor(ctx, "Pod "+pod.Name, func() bool {
		var err error
		got, err = c.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		return err == nil && ok(got)
	})
	return got, err
}

func ready(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func running(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning }
func finished(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

func tail(ctx context.Context, c kubernetes.Interface, pod, container string) string {
	data, err := c.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container}).DoRaw(ctx)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return string(data)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func show(what, text string, err error) {
	fmt.Printf("\n%s\n", what)
	if err != nil {
		text = "(" + err.Error() + ")"
	}
	for line := range strings.SplitSeq(strings.TrimSpace(text), "\n") {
		fmt.Println("    " + line)
	}
}
