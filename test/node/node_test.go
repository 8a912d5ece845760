package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/pkg/patch"
	"github.com/podpatterns/sidecar-injector/test/cluster"
)

// The node tests run only where asked (SIDECAR_INJECTOR_NODE=1) for now:
// the harness is new, and `make test` does not run it yet.
func TestMain(m *testing.M) {
	if os.Getenv("SIDECAR_INJECTOR_NODE") != "1" {
		fmt.Println("node tests: not run; set SIDECAR_INJECTOR_NODE=1 to run them (root, cgroups, network namespaces)")
		os.Exit(m.Run())
	}
	if !InNamespace() {
		if err := Install(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if missing := Missing(); missing != "" {
			fmt.Fprintln(os.Stderr, "node tests: this machine lacks", missing)
			os.Exit(1)
		}
		os.Exit(RunInNamespace())
	}
	os.Exit(m.Run())
}

func TestAnInjectedPodRuns(t *testing.T) {
	if !InNamespace() {
		t.Skip("SIDECAR_INJECTOR_NODE is not set")
	}
	kubelet := os.Getenv("SIDECAR_INJECTOR_KUBELET")
	if kubelet == "" {
		t.Fatal("SIDECAR_INJECTOR_KUBELET names no kubelet binary")
	}
	var logs bytes.Buffer
	c, err := cluster.Start(&logs, "kubelet-preferred-address-types=InternalIP")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	pause, err := PauseImage(SandboxImage, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	busybox, err := BusyboxImage("docker.io/library/busybox:1.37.0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	n, err := Start(ctx, c.Client, Options{Kubelet: kubelet, Kubeconfig: c.Kubeconfig, Images: []Image{pause, busybox}, Logs: &logs})
	if err != nil {
		t.Fatalf("%v\n%s", err, tail(logs.Bytes()))
	}
	defer n.Stop()

	cat, err := catalog.Default()
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default",
		Annotations: map[string]string{inject.InjectAnnotation: "content-filler"}}}
	pod.Spec.NodeName = Name // no scheduler runs; bare Pods name their node
	pod.Spec.Containers = []corev1.Container{{
		Name: "web", Image: "docker.io/library/busybox:1.37.0", ImagePullPolicy: corev1.PullNever,
		Command:        []string{"httpd", "-f", "-p", "8080", "-h", "/usr/share/nginx/html"},
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/index.html", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1},
	}}
	res, err := inject.Pod(pod, nil, cat)
	if err != nil || res.Plan == nil {
		t.Fatalf("not injected: %v", err)
	}
	raw, _ := json.Marshal(pod)
	out, err := patch.Apply(raw, patch.ForPod(pod, res.Plan))
	if err != nil {
		t.Fatal(err)
	}
	injected := &corev1.Pod{}
	if err := json.Unmarshal(out, injected); err != nil {
		t.Fatal(err)
	}
	for i := range injected.Spec.Containers {
		injected.Spec.Containers[i].ImagePullPolicy = corev1.PullNever
	}
	if _, err := c.Client.CoreV1().Pods("default").Create(ctx, injected, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait(ctx, "the Pod to be Ready: the app serving the page the content-filler wrote", func() bool {
		p, err := c.Client.CoreV1().Pods("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				return true
			}
		}
		return false
	})
	if err != nil {
		p, _ := c.Client.CoreV1().Pods("default").Get(ctx, "web", metav1.GetOptions{})
		t.Fatalf("%v: %+v\n%s", err, p.Status, tail(logs.Bytes()))
	}
}

func tail(b []byte) []byte {
	if len(b) > 8000 {
		return b[len(b)-8000:]
	}
	return b
}
