package node

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
)

// BenchmarkPodLifecycle creates and deletes the same Pod uninjected and
// with each template the node runs, one at a time, and reports the
// medians of create to Ready and of delete to gone: what users feel of
// the sidecars' startup probes and shutdown. Run it with a fixed count:
//
//	go test ./test/node -run XXX -bench PodLifecycle -benchtime 5x
func BenchmarkPodLifecycle(b *testing.B) {
	if suite.cluster == nil {
		b.Skip("no node on this machine")
	}
	ns := "bench-lifecycle"
	if _, err := suite.cluster.Client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{inject.InjectionLabel: "enabled"}}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	for _, templates := range []string{"none", "content-filler", "tail-shipper", "ambassador", "metrics-adapter", "content-filler,tail-shipper"} {
		b.Run(templates, func(b *testing.B) {
			var toReady, toGone []time.Duration
			for i := range b.N {
				pod := WebPod(false)
				// Ready once the app listens, with or without a page.
				pod.Spec.Containers[0].ReadinessProbe.ProbeHandler = corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}}
				if templates == "metrics-adapter" {
					pod = StatusPage() // the exporter starts only with a page to scrape
				}
				pod.Name = fmt.Sprintf("web-%s-%d", strings.ReplaceAll(templates, ",", "-"), i)
				pod.Annotations[inject.InjectAnnotation] = templates
				// the app's own port: the ambassador listens once started,
				// whether or not anything answers behind it
				pod.Annotations[inject.ParameterAnnotation("ambassador", "upstream")] = "127.0.0.1:8080"
				pod.Spec.NodeName = Name
				start := time.Now()
				if _, err := suite.cluster.Client.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
					b.Fatal(err)
				}
				if err := wait(context.Background(), "Ready", func() bool {
					p, err := suite.cluster.Client.CoreV1().Pods(ns).Get(context.Background(), pod.Name, metav1.GetOptions{})
					return err == nil && ready(p)
				}); err != nil {
					b.Fatal(err)
				}
				toReady = append(toReady, time.Since(start))
				start = time.Now()
				if err := suite.cluster.Client.CoreV1().Pods(ns).Delete(context.Background(), pod.Name, metav1.DeleteOptions{}); err != nil {
					b.Fatal(err)
				}
				if err := wait(context.Background(), "gone", func() bool {
					_, err := suite.cluster.Client.CoreV1().Pods(ns).Get(context.Background(), pod.Name, metav1.GetOptions{})
					return err != nil
				}); err != nil {
					b.Fatal(err)
				}
				toGone = append(toGone, time.Since(start))
			}
			b.ReportMetric(median(toReady).Seconds(), "s-to-ready")
			b.ReportMetric(median(toGone).Seconds(), "s-to-gone")
		})
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkSidecarUpgrade repairs the sidecars of a 2-Pod Deployment
// three ways and reports the median time until every Pod runs them ready
// again, and how many app containers started anew: in place
// (`controller --repair=in-place`, timed from the catalog's move of the
// content-filler and tail-shipper to the next busybox), resized in place
// (the same controller, timed from the catalog's move of the sizers' cpu
// and memory until the kubelet reports them) and by a rollout restart
// (timed from the patch of the pod template, as `kubectl rollout
// restart` does it, until two new Pods are ready):
//
//	go test ./test/node -run XXX -bench SidecarUpgrade -benchtime 5x
func BenchmarkSidecarUpgrade(b *testing.B) {
	if suite.cluster == nil {
		b.Skip("no node on this machine")
	}
	c := suite.cluster.Client
	ctx := context.Background()
	for _, how := range []string{"in-place", "resize", "rollout-restart"} {
		b.Run(how, func(b *testing.B) {
			ns := "bench-upgrade-" + how
			// b.N grows from 1: each round reuses the namespace.
			if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{inject.InjectionLabel: "enabled"}}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				b.Fatal(err)
			}
			var took []time.Duration
			restarted := 0
			for range b.N {
				moveCatalog(b, false)
				d := shop(2)
				old := func(p *corev1.Pod) bool { return ready(p) && ContainerStatus(p, "content-filler").Image == Busybox }
				upgraded := func(p *corev1.Pod) bool { return ready(p) && ContainerStatus(p, "content-filler").Image == BusyboxNext }
				if how == "resize" {
					d = sized(2)
					old = func(p *corev1.Pod) bool { return ready(p) && runsWith(p, "48Mi") }
					upgraded = func(p *corev1.Pod) bool { return ready(p) && runsWith(p, "64Mi") }
				}
				shops++
				d.Name = fmt.Sprintf("shop-%d", shops)
				d.Spec.Selector.MatchLabels["app"], d.Spec.Template.Labels["app"] = d.Name, d.Name
				if _, err := c.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
					b.Fatal(err)
				}
				before := shopPods(b, ns, d.Name, old)
				start := time.Now()
				if how != "rollout-restart" {
					moveCatalog(b, true)
				} else {
					// The same images: what a rollout costs does not depend on
					// them, and the controller, moved, would upgrade the old
					// Pods in place meanwhile.
					patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`, start.Format(time.RFC3339Nano))
					if _, err := c.AppsV1().Deployments(ns).Patch(ctx, d.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
						b.Fatal(err)
					}
					upgraded = func(p *corev1.Pod) bool { _, old := before[p.UID]; return ready(p) && !old }
				}
				after := shopPods(b, ns, d.Name, upgraded)
				took = append(took, time.Since(start))
				for uid, p := range after {
					if old, ok := before[uid]; !ok || ContainerStatus(p, "web").ContainerID != ContainerStatus(old, "web").ContainerID {
						restarted++
					}
				}
				scale := `{"spec":{"replicas":0}}`
				if _, err := c.AppsV1().Deployments(ns).Patch(ctx, d.Name, types.MergePatchType, []byte(scale), metav1.PatchOptions{}); err != nil {
					b.Fatal(err)
				}
				shopPods(b, ns, "", nil) // gone
			}
			b.ReportMetric(median(took).Seconds(), "s-to-upgraded")
			b.ReportMetric(float64(restarted)/float64(b.N), "apps-started-anew")
		})
	}
}

// shops numbers the benchmark's Deployments.
var shops int

// moveCatalog writes the shared upgrade controller's catalog: busybox
// moved to the next tag and the sizers' cpu and memory up, or as the
// webhook has it.
func moveCatalog(b *testing.B, moved bool) {
	b.Helper()
	upgradeController(b)
	for name, text := range map[string][]byte{"default.yaml": catalog.DefaultYAML(), "shipper.yaml": []byte(TestCatalog)} {
		if moved {
			text = bytes.ReplaceAll(text, []byte(Busybox), []byte(BusyboxNext))
			text = bytes.ReplaceAll(text, []byte(SizedBefore), []byte(SizedAfter))
		}
		if err := os.WriteFile(filepath.Join(upgrades.dir, name), text, 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// shopPods waits until the namespace holds exactly the two Pods of app
// that satisfy ok (with app "", until it holds none) and returns them by
// UID.
func shopPods(b *testing.B, ns, app string, ok func(*corev1.Pod) bool) map[types.UID]*corev1.Pod {
	b.Helper()
	var out map[types.UID]*corev1.Pod
	err := wait(context.Background(), "the Deployment's Pods", func() bool {
		list, err := suite.cluster.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return false
		}
		if app == "" {
			return len(list.Items) == 0
		}
		out = map[types.UID]*corev1.Pod{}
		for i := range list.Items {
			p := &list.Items[i]
			if p.Labels["app"] != app || p.DeletionTimestamp != nil || !ok(p) {
				return false
			}
			out[p.UID] = p
		}
		return len(out) == 2
	})
	if err != nil {
		b.Fatal(err)
	}
	return out
}
