package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/cmd"
	"github.com/podpatterns/sidecar-injector/pkg/conformance"
	"github.com/podpatterns/sidecar-injector/pkg/controller"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
)

// shop is a Deployment of web servers that log each order: each Pod
// carries the content-filler (a classic sidecar) and the tail-shipper (a
// native one).
func shop(replicas int32) *appsv1.Deployment {
	uid := int64(1000)
	labels := map[string]string{"app": "shop"}
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}
	d.Spec.Replicas = &replicas
	d.Spec.Selector = &metav1.LabelSelector{MatchLabels: labels}
	d.Spec.Template.Labels = labels
	d.Spec.Template.Annotations = map[string]string{inject.InjectAnnotation: "content-filler,tail-shipper"}
	d.Spec.Template.Spec = corev1.PodSpec{
		NodeName:        Name, // no scheduler runs
		SecurityContext: &corev1.PodSecurityContext{RunAsUser: &uid, RunAsGroup: &uid},
		Containers: []corev1.Container{{
			Name: "web", Image: Busybox, ImagePullPolicy: corev1.PullNever,
			Command: []string{"sh", "-c", `trap "exit 0" TERM; httpd -f -p 8080 -h /usr/share/nginx/html &
i=0; while true; do echo "order $i" >> /var/log/app/app.log; i=$((i+1)); sleep 0.2; done & wait`},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/index.html", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1},
		}},
	}
	return d
}

// upgrades is the controller the in-place tests share: one per process,
// as its metrics are registered once.
var upgrades struct {
	once sync.Once
	dir  string // its catalog
	cat  *catalog.Catalog
	err  error
}

// missingImage is a tag the node does not hold.
const missingImage = "docker.io/library/busybox:1.37.9"

// upgradeController runs `controller --repair=in-place` with a catalog
// that moves the pinger to an image the node lacks, every other busybox
// sidecar to BusyboxNext and the sizers' cpu and memory up, and returns
// that catalog.
func upgradeController(t testing.TB) *catalog.Catalog {
	upgrades.once.Do(func() {
		upgrades.dir, upgrades.err = os.MkdirTemp("", "sidecar-injector-upgrades-")
		if upgrades.err != nil {
			return
		}
		for name, text := range map[string][]byte{"default.yaml": catalog.DefaultYAML(), "shipper.yaml": []byte(TestCatalog)} {
			text = bytes.ReplaceAll(text, []byte(BusyboxNext), []byte(missingImage))
			text = bytes.ReplaceAll(text, []byte(Busybox), []byte(BusyboxNext))
			text = bytes.ReplaceAll(text, []byte(SizedBefore), []byte(SizedAfter))
			if upgrades.err = os.WriteFile(filepath.Join(upgrades.dir, name), text, 0o644); upgrades.err != nil {
				return
			}
		}
		if upgrades.cat, upgrades.err = catalog.Load(upgrades.dir); upgrades.err != nil {
			return
		}
		o := controller.NewManagerOptions()
		o.RestConfig, o.CatalogPath, o.Repair, o.UpgradeTimeout = suite.cluster.Config, upgrades.dir, controller.RepairInPlace, 10*time.Second
		o.MetricsAddr, o.HealthAddr, o.LeaderElection, o.StatusKeyDir = "0", "0", false, suite.keyDir
		o.Log = funcr.New(func(prefix, args string) { fmt.Fprintln(suite.logs, "controller:", prefix, args) }, funcr.Options{})
		ctrllog.SetLogger(o.Log)
		go func() { // until the tests end
			if err := controller.Run(context.Background(), o); err != nil {
				fmt.Fprintln(suite.logs, "controller:", err)
			}
		}()
	})
	if upgrades.err != nil {
		t.Fatal(upgrades.err)
	}
	return upgrades.cat
}

// A catalog that moves only its sidecars' images: `controller
// --repair=in-place` upgrades a Deployment's Pods one at a time without
// restarting them. The app container keeps its container and serves
// every request meanwhile; the classic and the native sidecar each run
// again on the new image; the Pods classify current, audit agrees, and
// the shipper ships on.
func TestSidecarsUpgradeInPlaceWithoutRestartingTheApp(t *testing.T) {
	ns := namespace(t)
	ctx := context.Background()
	client := suite.cluster.Client
	if _, err := client.AppsV1().Deployments(ns).Create(ctx, shop(2), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pods []corev1.Pod
	err := wait(ctx, "two shop Pods, injected and ready", func() bool {
		list, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=shop"})
		if err != nil || len(list.Items) != 2 {
			return false
		}
		pods = list.Items
		return ready(&pods[0]) && ready(&pods[1]) && pods[0].Annotations[inject.StatusAnnotation] != ""
	})
	if err != nil {
		t.Fatalf("%v (logs: %s)", err, suite.logs.Name())
	}
	app := map[string]string{} // Pod -> the web container's ID
	for _, p := range pods {
		app[p.Name] = ContainerStatus(&p, "web").ContainerID
	}
	stopServing := serveThroughout(pods)

	cat := upgradeController(t)
	upgraded := func(p *corev1.Pod) bool {
		for _, name := range []string{"content-filler", "tail-shipper"} {
			if cs := ContainerStatus(p, name); cs.Image != BusyboxNext || !cs.Ready || cs.RestartCount != 1 {
				return false
			}
		}
		return ready(p)
	}
	for _, p := range pods {
		until(t, ns, p.Name, p.Name+"'s sidecars running again on "+BusyboxNext, upgraded)
	}
	if served, failed := stopServing(); served == 0 || failed > 0 {
		t.Errorf("during the upgrade the app served %d requests and failed %d; want every one served", served, failed)
	}
	for _, before := range pods {
		p, err := client.CoreV1().Pods(ns).Get(ctx, before.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		web := ContainerStatus(p, "web")
		if web.ContainerID != app[p.Name] || web.RestartCount != 0 {
			t.Errorf("%s: the app container was restarted: %s (restarts %d), was %s", p.Name, web.ContainerID, web.RestartCount, app[p.Name])
		}
		if p.UID != before.UID {
			t.Errorf("%s was re-created", p.Name)
		}
		if got := conformance.Classify(p, map[string]string{inject.InjectionLabel: "enabled"}, cat, suite.keys); got.State != conformance.Current {
			t.Errorf("%s is %s after the upgrade: %+v", p.Name, got.State, got.Templates)
		}
		if lines := logs(t, ns, p.Name, "tail-shipper"); !strings.Contains(lines, "order ") {
			t.Errorf("%s: the upgraded shipper ships nothing: %q", p.Name, lines)
		}
	}
	var stdout, stderr bytes.Buffer
	cmd.Execute(ctx, []string{"audit", "-n", ns, "--catalog", upgrades.dir, "-o", "json", "--kubeconfig", suite.cluster.Kubeconfig}, nil, &stdout, &stderr)
	var report conformance.Report
	if err := json.Unmarshal(stdout.Bytes(), &report); err != nil || report.Summary[conformance.Current] != 2 || len(report.Pods) != 2 {
		t.Errorf("audit: %v\n%s%s", err, stdout.String(), stderr.String())
	}
}

// serveThroughout asks each Pod's app for its page every 50 ms until
// the function it returns is called, which says how many requests were
// served and how many failed.
func serveThroughout(pods []corev1.Pod) func() (served, failed int64) {
	var ok, bad atomic.Int64
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		c := &http.Client{Timeout: time.Second}
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			for _, p := range pods {
				resp, err := c.Get("http://" + p.Status.PodIP + ":8080/index.html")
				if err == nil && resp.StatusCode == http.StatusOK {
					ok.Add(1)
				} else {
					bad.Add(1)
				}
				if err == nil {
					resp.Body.Close()
				}
			}
		}
	}()
	return func() (int64, int64) {
		close(stop)
		<-done
		return ok.Load(), bad.Load()
	}
}

// An upgraded sidecar whose image the node lacks stops its workload's
// upgrade: an Event names the Pod and why, the halted gauge says so, the
// other Pod keeps its sidecar, and the app of the upgraded Pod runs on.
func TestAnUpgradeThatDoesNotBecomeReadyStops(t *testing.T) {
	ns := namespace(t)
	ctx := context.Background()
	client := suite.cluster.Client
	d := shop(2)
	d.Name = "pings"
	d.Spec.Template.Annotations[inject.InjectAnnotation] = "pinger"
	d.Spec.Template.Spec.Containers[0].Command = []string{"sh", "-c", `trap "exit 0" TERM; sleep 3600 & wait`}
	d.Spec.Template.Spec.Containers[0].ReadinessProbe = nil
	if _, err := client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := wait(ctx, "two ready Pods", func() bool {
		list, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		return err == nil && len(list.Items) == 2 && ready(&list.Items[0]) && ready(&list.Items[1])
	})
	if err != nil {
		t.Fatal(err)
	}
	upgradeController(t)
	var halted string
	err = wait(ctx, "the upgrade to stop", func() bool {
		events, err := client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "reason=SidecarUpgradeHalted"})
		if err != nil || len(events.Items) == 0 {
			return false
		}
		halted = events.Items[0].Message
		return events.Items[0].InvolvedObject.Kind == "Deployment" && events.Items[0].InvolvedObject.Name == "pings"
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(halted, "container pinger has not run on "+missingImage) {
		t.Errorf("the Event says %q; want it to name the container and its image", halted)
	}
	time.Sleep(3 * time.Second) // a repair pass or more after the halt
	list, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	moved := 0
	for _, p := range list.Items {
		if p.Spec.Containers[1].Image == missingImage {
			moved++
			if !strings.Contains(halted, p.Name) {
				t.Errorf("the Event %q does not name the upgraded Pod %s", halted, p.Name)
			}
		}
		if web := ContainerStatus(&p, "web"); web.State.Running == nil || web.RestartCount != 0 {
			t.Errorf("%s: the app container is not running as before: %+v", p.Name, web)
		}
	}
	if moved != 1 {
		t.Errorf("%d Pods moved to the missing image; want the first alone", moved)
	}
	if got := gathered(t, "sidecar_injector_controller_upgrades_halted"); got != 1 {
		t.Errorf("upgrades halted gauge %v, want 1", got)
	}
}

// gathered is the value of an unlabelled metric of this process'
// controller.
func gathered(t *testing.T, name string) float64 {
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}
