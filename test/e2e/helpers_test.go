package e2e

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podpatterns/sidecar-injector/test/cluster"
)

// warningRecorder keeps the admission warnings the API server returns.
type warningRecorder struct {
	mu   sync.Mutex
	seen []string
}

func (w *warningRecorder) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen = append(w.seen, text)
}

func (w *warningRecorder) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.seen
	w.seen = nil
	return out
}

func nginxPod(name, inject string) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "nginx", Image: "nginx:1.27", Ports: []corev1.ContainerPort{{ContainerPort: 80}},
		}}},
	}
	if inject != "" {
		pod.Annotations = map[string]string{"sidecars.podpatterns.io/inject": inject}
	}
	return pod
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func namespace(t *testing.T, name string, labels map[string]string) string {
	t.Helper()
	if err := createNamespace(ctxFor(t), name, labels); err != nil {
		t.Fatal(err)
	}
	return name
}

// labelNamespace sets one label on a namespace that exists.
func labelNamespace(t *testing.T, name, key, value string) {
	t.Helper()
	api := suite.cluster.Client.CoreV1().Namespaces()
	ns, err := api.Get(ctxFor(t), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ns.Labels == nil {
		ns.Labels = map[string]string{}
	}
	ns.Labels[key] = value
	if _, err := api.Update(ctxFor(t), ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

var optIn = map[string]string{"sidecars.podpatterns.io/injection": "enabled"}

func create(t *testing.T, ns string, pod *corev1.Pod) (*corev1.Pod, error) {
	t.Helper()
	return suite.client.CoreV1().Pods(ns).Create(ctxFor(t), pod, metav1.CreateOptions{})
}

// stored reads the Pod back, as etcd holds it.
func stored(t *testing.T, ns, name string) *corev1.Pod {
	t.Helper()
	pod, err := suite.cluster.Client.CoreV1().Pods(ns).Get(ctxFor(t), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pod
}

func containerNames(cs []corev1.Container) []string {
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	return names
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	if err := cluster.WaitFor(ctxFor(t), what, ok); err != nil {
		t.Fatal(err)
	}
}

var requestsLine = regexp.MustCompile(`(?m)^sidecar_injector_requests_total\{outcome="(\w+)"\} (\d+)$`)

// requests scrapes the webhook's request counters by outcome.
func requests(t *testing.T) map[string]int {
	t.Helper()
	resp, err := http.Get(suite.webhook.MetricsURL())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := map[string]int{}
	for _, m := range requestsLine.FindAllStringSubmatch(string(body), -1) {
		n, _ := strconv.Atoi(m[2])
		out[m[1]] = n
	}
	if len(out) != 5 { // injected, skipped, denied, invalid, error
		t.Fatalf("metrics lack the request counters:\n%s", body)
	}
	return out
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func contains(list []string, want string) bool {
	for _, s := range list {
		if strings.Contains(s, want) {
			return true
		}
	}
	return false
}
