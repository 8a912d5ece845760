// Command demo shows sidecar-injector at work on a machine with no
// cluster: it starts a local control plane (the end-to-end suite's
// binaries), runs the webhook with the embedded catalog, opts a namespace
// in and creates the examples of deploy/examples as a user would. For each
// Pod it prints the Pod as the API server stored it, with the injected
// lines marked "+", and a one-line summary. It leaves no process behind.
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/pmezard/go-difflib/difflib"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/podpatterns/sidecar-injector/test/cluster"
)

const (
	optedIn = "demo"
	plain   = "demo-plain" // for the before picture: same defaults, no webhook
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }

func run(ctx context.Context) error {
	root, err := cluster.RepoRoot()
	if err != nil {
		return err
	}
	logs, err := os.CreateTemp("", "sidecar-injector-demo-*.log")
	if err != nil {
		return err
	}
	defer logs.Close()

	step("starting kube-apiserver, etcd and kube-controller-manager (logs: %s)", logs.Name())
	c, err := cluster.Start(logs)
	if err != nil {
		return err
	}
	defer c.Stop()

	step("starting sidecar-injector serve with the embedded catalog")
	keyDir := filepath.Join(c.Dir, "status-key")
	keyFlags, err := cluster.StatusKey(keyDir) // the Secret audit reads, as make deploy and the chart make it
	if err != nil {
		return err
	}
	if err := c.InstallStatusKey(ctx, keyDir); err != nil {
		return err
	}
	hook, err := cluster.StartWebhook(ctx, filepath.Join(root, "bin", "sidecar-injector"), filepath.Join(c.Dir, "tls"), c.Kubeconfig, logs, keyFlags...)
	if err != nil {
		return err
	}
	defer func() { _ = hook.Stop() }()

	step("installing the MutatingWebhookConfiguration from deploy/base")
	objs, err := cluster.Render(filepath.Join(root, "deploy", "base"))
	if err != nil {
		return err
	}
	ca, err := cluster.CAPEM(hook.CertDir)
	if err != nil {
		return err
	}
	cfg, err := cluster.WebhookConfig(objs, hook.URL(), ca)
	if err != nil {
		return err
	}
	if err := c.InstallWebhook(ctx, cfg); err != nil {
		return err
	}

	step("labelling namespace %q with sidecars.podpatterns.io/injection=enabled", optedIn)
	for name, labels := range map[string]map[string]string{optedIn: {"sidecars.podpatterns.io/injection": "enabled"}, plain: nil} {
		if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	if err := waitForWebhook(ctx, c); err != nil {
		return err
	}

	files, err := filepath.Glob(filepath.Join(root, "deploy", "examples", "*.yaml"))
	if err != nil {
		return err
	}
	sort.Strings(files)
	var summary []string
	for _, f := range files {
		lines, err := example(ctx, c, f)
		if err != nil {
			return fmt.Errorf("%s: %w", filepath.Base(f), err)
		}
		summary = append(summary, lines...)
	}
	step("summary")
	for _, s := range summary {
		fmt.Println("   ", s)
	}
	step("sidecar-injector audit -n %s: is every Pod carrying what it should?", optedIn)
	audit := exec.Command(filepath.Join(root, "bin", "sidecar-injector"), "audit", "--kubeconfig", c.Kubeconfig, "-n", optedIn, "--all", "--catalog", filepath.Join(root, "deploy", "base", "catalog.yaml"))
	audit.Stdout, audit.Stderr = os.Stdout, os.Stderr
	if err := audit.Run(); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	step("stopping the webhook and the control plane")
	return nil
}

// waitForWebhook: the API server takes a moment to use a new configuration.
func waitForWebhook(ctx context.Context, c *cluster.Cluster) error {
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "probe", Annotations: map[string]string{"sidecars.podpatterns.io/inject": "content-filler"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}},
	}
	return cluster.WaitFor(wctx, "the webhook to take effect", func() bool {
		got, err := c.Client.CoreV1().Pods(optedIn).Create(wctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil && len(got.Spec.Containers) == 2
	})
}

// example creates one file's object in the opted-in namespace and prints
// each resulting Pod.
func example(ctx context.Context, c *cluster.Cluster, file string) ([]string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var head metav1.TypeMeta
	if err := yaml.Unmarshal(data, &head); err != nil {
		return nil, err
	}
	step("kubectl create -n %s -f deploy/examples/%s", optedIn, filepath.Base(file))
	switch head.Kind {
	case "Pod":
		pod := &corev1.Pod{}
		if err := yaml.UnmarshalStrict(data, pod); err != nil {
			return nil, err
		}
		created, err := c.Client.CoreV1().Pods(optedIn).Create(ctx, pod.DeepCopy(), metav1.CreateOptions{})
		if err != nil {
			return nil, err
		}
		line, err := show(ctx, c, filepath.Base(file), pod, created.Name)
		return []string{line}, err
	case "Deployment":
		d := &appsv1.Deployment{}
		if err := yaml.UnmarshalStrict(data, d); err != nil {
			return nil, err
		}
		if _, err := c.Client.AppsV1().Deployments(optedIn).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
		want := int(*d.Spec.Replicas)
		var pods []corev1.Pod
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		selector := metav1.FormatLabelSelector(d.Spec.Selector)
		if err := cluster.WaitFor(wctx, "the ReplicaSet's pods", func() bool {
			list, err := c.Client.CoreV1().Pods(optedIn).List(wctx, metav1.ListOptions{LabelSelector: selector})
			if err == nil {
				pods = list.Items
			}
			return len(pods) == want
		}); err != nil {
			return nil, err
		}
		sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
		var lines []string
		for _, p := range pods {
			submitted := &corev1.Pod{ObjectMeta: *d.Spec.Template.ObjectMeta.DeepCopy(), Spec: *d.Spec.Template.Spec.DeepCopy()}
			submitted.Name = p.Name
			line, err := show(ctx, c, filepath.Base(file)+" (by ReplicaSet)", submitted, p.Name)
			if err != nil {
				return nil, err
			}
			lines = append(lines, line)
		}
		return lines, nil
	}
	return nil, fmt.Errorf("kind %q: the demo shows Pods and Deployments", head.Kind)
}

// show prints the stored Pod, marking what injection added: the "before"
// is the same Pod created with a dry run in a namespace that did not opt
// in, so both carry the same API server defaults.
func show(ctx context.Context, c *cluster.Cluster, source string, submitted *corev1.Pod, name string) (string, error) {
	stored, err := c.Client.CoreV1().Pods(optedIn).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	before := submitted.DeepCopy()
	before.Name, before.GenerateName = name, ""
	before, err = c.Client.CoreV1().Pods(plain).Create(ctx, before, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		return "", err
	}
	a, b := render(before), render(stored)
	diff, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{A: difflib.SplitLines(a), B: difflib.SplitLines(b), Context: 1 << 20})
	if err != nil {
		return "", err
	}
	fmt.Printf("--- Pod %s/%s as stored (+ marks what the webhook added)\n", optedIn, name)
	for _, line := range strings.SplitAfter(diff, "\n") {
		if strings.HasPrefix(line, "@@") || strings.HasPrefix(line, "---") || strings.HasPrefix(line, "+++") {
			continue
		}
		fmt.Print(line)
	}
	return summarize(source, before, stored), nil
}

// render is the Pod's YAML without the fields that differ between any two
// Pods (identity, timestamps, status).
func render(p *corev1.Pod) string {
	p = p.DeepCopy()
	p.ObjectMeta = metav1.ObjectMeta{Name: p.Name, Labels: p.Labels, Annotations: p.Annotations}
	p.Status = corev1.PodStatus{}
	p.Kind, p.APIVersion = "Pod", "v1"
	out, _ := yaml.Marshal(p)
	lines := strings.Split(string(out), "\n")
	kept := lines[:0]
	for _, l := range lines {
		if strings.TrimSpace(l) != "status: {}" && !strings.Contains(l, "creationTimestamp: null") {
			kept = append(kept, l)
		}
	}
	return strings.Join(kept, "\n")
}

func summarize(source string, before, after *corev1.Pod) string {
	added := func(kind string, b, a []string) string {
		var n []string
		for _, x := range a {
			if !contains(b, x) {
				n = append(n, x)
			}
		}
		if len(n) == 0 {
			return ""
		}
		return fmt.Sprintf("+%s %s", kind, strings.Join(n, ","))
	}
	parts := []string{
		added("containers", names(before.Spec.Containers), names(after.Spec.Containers)),
		added("native sidecars", names(before.Spec.InitContainers), names(after.Spec.InitContainers)),
		added("volumes", volumes(before), volumes(after)),
	}
	var kept []string
	for _, p := range parts {
		if p != "" {
			kept = append(kept, p)
		}
	}
	return fmt.Sprintf("%-34s pod %-30s %s", source, after.Name, strings.Join(kept, "  "))
}

func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func volumes(p *corev1.Pod) []string {
	var out []string
	for _, v := range p.Spec.Volumes {
		out = append(out, v.Name)
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
