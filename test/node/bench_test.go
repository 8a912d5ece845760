package node

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

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
