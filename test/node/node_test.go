package node

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/cmd"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/pkg/statuskey"
	"github.com/podpatterns/sidecar-injector/test/cluster"
)

// requireEnv turns "this machine cannot run a node" from a skip into a
// failure; CI sets it.
const requireEnv = "SIDECAR_INJECTOR_REQUIRE_NODE"

// busybox is the image the tests' apps run.
const busybox = Busybox

var suite struct {
	cluster *cluster.Cluster
	node    *Node
	logs    *os.File
	keyDir  string       // the webhook's status key
	keys    *inject.Keys // read from keyDir
}

func TestMain(m *testing.M) {
	if !InNamespace() {
		os.Exit(outside(m))
	}
	code, err := inside(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "node:", err)
		if suite.logs != nil {
			fmt.Fprintln(os.Stderr, "control plane, node and webhook logs:", suite.logs.Name())
		}
		code = 1
	}
	os.Exit(code)
}

// outside runs on the host: it installs what the node needs, or says in
// one line what the machine lacks, then runs the tests again inside a
// network namespace of their own.
func outside(m *testing.M) int {
	if os.Geteuid() == 0 {
		if err := Install(); err != nil {
			fmt.Fprintln(os.Stderr, "node: installing the runtime:", err)
		}
	}
	if missing := Missing(); missing != "" {
		fmt.Printf("node tests: not run: this machine lacks %s\n", missing)
		if os.Getenv(requireEnv) != "" {
			fmt.Fprintf(os.Stderr, "node tests: %s is set: a machine that cannot run them fails\n", requireEnv)
			return 1
		}
		return m.Run() // every test skips
	}
	Cleanup("") // what an interrupted run left
	code := RunInNamespace()
	Cleanup("")
	return code
}

func inside(m *testing.M) (int, error) {
	var err error
	if suite.logs, err = os.Create(filepath.Join(os.TempDir(), "sidecar-injector-node.log")); err != nil {
		return 1, err
	}
	env, err := Up(context.Background(), suite.logs, map[string][]byte{"default.yaml": catalog.DefaultYAML(), "shipper.yaml": []byte(TestCatalog)})
	if err != nil {
		return 1, err
	}
	defer env.Down()
	defer func() { _ = os.RemoveAll(upgrades.dir) }() // "" when no test made it
	suite.cluster, suite.node, suite.keyDir = env.Cluster, env.Node, env.KeyDir
	if suite.keys, err = statuskey.Read(env.KeyDir); err != nil {
		return 1, err
	}
	return m.Run(), nil
}

// namespace makes an opted-in namespace for one test; the webhook takes
// a moment to see a new configuration, so the first Pod is retried.
func namespace(t *testing.T, labels ...string) string {
	t.Helper()
	if suite.cluster == nil {
		t.Skip("no node on this machine (see the line above)")
	}
	ns := strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	if len(ns) > 63 {
		ns = ns[:63]
	}
	ns = strings.Trim(ns, "-")
	l := map[string]string{inject.InjectionLabel: "enabled"}
	for i := 0; i+1 < len(labels); i += 2 {
		l[labels[i]] = labels[i+1]
	}
	_, err := suite.cluster.Client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: l}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// run creates pod in ns through the webhook (retried until the webhook
// configuration is in force) and returns it as stored.
func run(t *testing.T, ns string, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	pod.Spec.NodeName = Name // no scheduler runs: a bare Pod names its node
	var created *corev1.Pod
	err := wait(context.Background(), "the webhook to inject "+pod.Name, func() bool {
		var err error
		created, err = suite.cluster.Client.CoreV1().Pods(ns).Create(context.Background(), pod.DeepCopy(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil && created.Annotations[inject.StatusAnnotation] != ""
	})
	if err != nil {
		t.Fatal(err)
	}
	if created, err = suite.cluster.Client.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return created
}

// until waits for the Pod to satisfy ok, and fails with its status.
func until(t *testing.T, ns, name, what string, ok func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var p *corev1.Pod
	err := wait(context.Background(), what, func() bool {
		var err error
		p, err = suite.cluster.Client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		return err == nil && ok(p)
	})
	if err != nil {
		t.Fatalf("%v; the Pod's status: %+v (logs: %s)", err, p.Status, suite.logs.Name())
	}
	return p
}

func ready(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func logs(t *testing.T, ns, pod, container string) string {
	t.Helper()
	data, err := suite.cluster.Client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container}).DoRaw(context.Background())
	if err != nil {
		t.Fatalf("logs of %s/%s: %v", pod, container, err)
	}
	return string(data)
}

// The default content-filler writes the page the app then serves: the
// app's readiness probe asks for it over the Pod's network.
func TestTheContentFillerWritesThePageTheAppServes(t *testing.T) {
	ns := namespace(t)
	created := run(t, ns, WebPod(false))
	if len(created.Spec.Containers) != 2 {
		t.Fatalf("containers %d, want the app and the content-filler", len(created.Spec.Containers))
	}
	until(t, ns, "web", "the app to serve the page the content-filler wrote", ready)
}

// In a namespace that enforces Pod Security restricted, an injected Pod
// is admitted and runs: the sidecar's read-only root, non-root user and
// dropped capabilities hold on a real runtime.
func TestInjectedPodsRunRestricted(t *testing.T) {
	ns := namespace(t, "pod-security.kubernetes.io/enforce", "restricted")
	run(t, ns, WebPod(true))
	until(t, ns, "web", "the restricted Pod to serve the filler's page", ready)
}

// The default ambassador starts before the app, so the app's first
// connection to $AMBASSADOR_ADDR reaches the upstream in another Pod.
func TestTheAmbassadorForwardsTheAppsFirstConnection(t *testing.T) {
	ns := namespace(t)
	upstream := Upstream()
	upstream.Spec.NodeName = Name
	if _, err := suite.cluster.Client.CoreV1().Pods(ns).Create(context.Background(), upstream, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	up := until(t, ns, "upstream", "the upstream to serve", ready)
	app := AmbassadorApp(up.Status.PodIP)
	run(t, ns, app)
	done := until(t, ns, "app", "the app's one request to end", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	})
	if out := logs(t, ns, "app", "app"); done.Status.Phase != corev1.PodSucceeded || !strings.Contains(out, "hello from upstream") {
		t.Errorf("the app's first request through the ambassador: phase %s, output %q", done.Status.Phase, out)
	}
}

// An injected container that exceeds its memory limit is OOMKilled on
// its own; the app keeps running, never restarted.
func TestASidecarOverItsMemoryIsKilledAloneAndTheAppRuns(t *testing.T) {
	ns := namespace(t)
	pod := WebPod(false)
	pod.Annotations[inject.InjectAnnotation] = "content-filler,hog"
	run(t, ns, pod)
	p := until(t, ns, "web", "the hog to be OOMKilled", func(p *corev1.Pod) bool {
		for _, s := range p.Status.ContainerStatuses {
			if s.Name == "hog" && s.LastTerminationState.Terminated != nil && s.LastTerminationState.Terminated.Reason == "OOMKilled" {
				return true
			}
		}
		return false
	})
	for _, s := range p.Status.ContainerStatuses {
		if s.Name == "web" && (s.RestartCount != 0 || s.State.Running == nil) {
			t.Errorf("the app: %+v; want it running, never restarted", s)
		}
	}
}

// A log shipper of the default's shape reads the app's log lines from the
// shared volume, as the app's user, and ships them (to its stdout here).
func TestTheLogShipperShipsTheAppsLines(t *testing.T) {
	ns := namespace(t)
	pod := ShipperApp()
	uid := *pod.Spec.SecurityContext.RunAsUser
	run(t, ns, pod)
	until(t, ns, "app", "the app and the shipper to run", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	err := wait(context.Background(), "the shipper's logs to hold the app's lines", func() bool {
		return strings.Contains(logs(t, ns, "app", "tail-shipper"), "order 3 shipped")
	})
	if err != nil {
		t.Fatalf("%v: %q", err, logs(t, ns, "app", "tail-shipper"))
	}
	p, _ := suite.cluster.Client.CoreV1().Pods(ns).Get(context.Background(), "app", metav1.GetOptions{})
	for _, c := range p.Spec.InitContainers {
		if c.Name == "tail-shipper" && (c.SecurityContext == nil || c.SecurityContext.RunAsUser == nil || *c.SecurityContext.RunAsUser != uid) {
			t.Errorf("the shipper runs as %+v, want the app's user %d", c.SecurityContext, uid)
		}
	}
}

// A Pod that runs to completion gets its sidecars as native sidecars,
// and completes.
func TestAPodThatRunsToCompletionCompletes(t *testing.T) {
	ns := namespace(t)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "job", Annotations: map[string]string{inject.InjectAnnotation: "tail-shipper"}}}
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	pod.Spec.Containers = []corev1.Container{{
		Name: "work", Image: busybox, ImagePullPolicy: corev1.PullNever,
		Command: []string{"sh", "-c", `echo "done" >> /var/log/app/app.log; sleep 1`},
	}}
	run(t, ns, pod)
	until(t, ns, "job", "the Pod to complete", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
}

// The default catalog's sidecars end on SIGTERM: when a run-to-completion
// Pod's work is done, the content-filler exits 0 at once rather than
// being killed when the grace period ends (exit 137).
func TestTheDefaultSidecarsEndOnSIGTERM(t *testing.T) {
	ns := namespace(t)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "job", Annotations: map[string]string{inject.InjectAnnotation: "content-filler"}}}
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	pod.Spec.Containers = []corev1.Container{{Name: "work", Image: busybox, ImagePullPolicy: corev1.PullNever, Command: []string{"sleep", "1"}}}
	run(t, ns, pod)
	p := until(t, ns, "job", "the Pod to complete", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
	for _, s := range p.Status.InitContainerStatuses {
		if s.Name == "content-filler" && (s.State.Terminated == nil || s.State.Terminated.ExitCode != 0) {
			t.Errorf("the content-filler ended %+v; want exit 0 on SIGTERM", s.State)
		}
	}
}

// Deleting an injected Pod takes about as long as deleting the same Pod
// uninjected: no sidecar holds it for the grace period (30 s).
func TestDeletingAnInjectedPodIsAsQuickAsAPlainOne(t *testing.T) {
	ns := namespace(t)
	took := map[string]time.Duration{}
	for _, inj := range []string{"none", "content-filler"} {
		pod := WebPod(false)
		pod.Name = "web-" + inj
		pod.Annotations[inject.InjectAnnotation] = inj
		pod.Spec.NodeName = Name
		if _, err := suite.cluster.Client.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		until(t, ns, pod.Name, pod.Name+" to run", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
		start := time.Now()
		if err := suite.cluster.Client.CoreV1().Pods(ns).Delete(context.Background(), pod.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		err := wait(context.Background(), pod.Name+" to be gone", func() bool {
			_, err := suite.cluster.Client.CoreV1().Pods(ns).Get(context.Background(), pod.Name, metav1.GetOptions{})
			return err != nil
		})
		if err != nil {
			t.Fatal(err)
		}
		took[inj] = time.Since(start)
	}
	t.Logf("delete to gone: plain %s, with content-filler %s", took["none"].Round(time.Millisecond), took["content-filler"].Round(time.Millisecond))
	if took["content-filler"] > 15*time.Second {
		t.Errorf("deleting the injected Pod took %s (the plain one %s): a sidecar waits out the grace period", took["content-filler"], took["none"])
	}
}

// A Job whose Pods get a log shipper completes: the Job controller makes
// the Pod, the webhook injects the shipper as a native sidecar, and the
// Job is Complete once its work is done.
func TestAJobWithASidecarCompletes(t *testing.T) {
	ns := namespace(t)
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "nightly"}}
	job.Spec.BackoffLimit = new(int32(0))
	tmpl := &job.Spec.Template
	tmpl.Annotations = map[string]string{inject.InjectAnnotation: "tail-shipper"}
	tmpl.Spec.NodeName = Name // no scheduler runs
	tmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
	tmpl.Spec.Containers = []corev1.Container{{
		Name: "work", Image: busybox, ImagePullPolicy: corev1.PullNever,
		Command: []string{"sh", "-c", `echo "report written" >> /var/log/app/app.log; sleep 1`},
	}}
	err := wait(context.Background(), "the webhook configuration to be in force", func() bool {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "probe", Annotations: tmpl.Annotations}, Spec: *tmpl.Spec.DeepCopy()}
		got, err := suite.cluster.Client.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil && got.Annotations[inject.StatusAnnotation] != ""
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := suite.cluster.Client.BatchV1().Jobs(ns).Create(context.Background(), job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait(context.Background(), "the Job to complete", func() bool {
		j, err := suite.cluster.Client.BatchV1().Jobs(ns).Get(context.Background(), "nightly", metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, c := range j.Status.Conditions {
			if c.Type == batchv1.JobComplete && c.Status == corev1.ConditionTrue {
				return true
			}
		}
		return false
	})
	if err != nil {
		j, _ := suite.cluster.Client.BatchV1().Jobs(ns).Get(context.Background(), "nightly", metav1.GetOptions{})
		t.Fatalf("%v: %+v", err, j.Status)
	}
	pods, err := suite.cluster.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil || len(pods.Items) != 1 || len(pods.Items[0].Spec.InitContainers) != 1 {
		t.Fatalf("the Job's Pods %v, %v; want one, with the shipper injected", pods, err)
	}
}

// The default metrics adapter scrapes the app's status page on localhost
// and serves it as Prometheus metrics on its own port, which its
// readiness probe reads: the Pod is Ready only once the metrics are
// there. The app serves a status page in nginx's stub_status format.
func TestTheMetricsAdapterServesTheAppsStatusAsMetrics(t *testing.T) {
	ns := namespace(t)
	pod := StatusPage()
	run(t, ns, pod)
	p := until(t, ns, "web", "the adapter to serve the app's metrics", ready)
	out, err := suite.cluster.Client.CoreV1().Pods(ns).ProxyGet("http", p.Name, "9113", "/metrics", nil).DoRaw(context.Background())
	if err != nil || !strings.Contains(string(out), "nginx_connections_active 7") || !strings.Contains(string(out), "nginx_http_requests_total 42") {
		t.Errorf("metrics through the adapter: %v\n%.2000s", err, out)
	}
}

// The troubleshooting exercise on live Pods: a writer and a reader that
// share a volume, each broken one way. `diagnose --logs` names what
// actually happened, from the container's own log line, with the fix.
func TestDiagnoseNamesWhatHappenedOnALivePod(t *testing.T) {
	ns := namespace(t)
	loop := func(body string) []string {
		return []string{"sh", "-c", `trap "exit 0" TERM; while true; do ` + body + `; sleep 1 & wait; done`}
	}
	user := func(uid int64) *corev1.SecurityContext { return &corev1.SecurityContext{RunAsUser: &uid} }
	for name, c := range map[string]struct {
		writer, reader corev1.Container
		want           string // "" for the fixed Pod: no shared-volume finding
	}{
		"the reader mounts the volume at another path": {
			corev1.Container{Command: loop("date >> /data/app.log")},
			corev1.Container{Command: loop("cat /data/app.log > /dev/null"), VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/logs"}}},
			`uses /data/app.log, where container "writer" mounts volume "data", but this container mounts it at /logs`},
		"fixed: both sides run as one user": {
			corev1.Container{Command: loop("umask 077; date >> /data/app.log"), SecurityContext: user(1000)},
			corev1.Container{Command: loop("cat /data/app.log > /dev/null"), SecurityContext: user(1000)},
			""},
		"the reader runs as another user, without fsGroup": {
			corev1.Container{Command: loop("umask 077; date >> /data/app.log"), SecurityContext: user(1000)},
			corev1.Container{Command: loop("cat /data/app.log > /dev/null"), SecurityContext: user(2000)},
			`may not read or write /data/app.log on volume "data"`},
		"the writer's mount is read-only": {
			corev1.Container{Command: loop("date >> /data/app.log"), VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data", ReadOnly: true}}},
			corev1.Container{Command: loop("cat /data/app.log > /dev/null")},
			`cannot write /data/app.log on volume "data"`},
		"the writer writes into a directory that is not there": {
			corev1.Container{Command: loop("date >> /data/out/app.log")},
			corev1.Container{Command: loop("cat /data/out/app.log > /dev/null")},
			`cannot find /data/out/app.log on volume "data"`},
	} {
		t.Run(name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pair-%d", len(name)), Annotations: map[string]string{inject.InjectAnnotation: "none"}}}
			pod.Spec.NodeName = Name
			pod.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
			for i, ctr := range []*corev1.Container{&c.writer, &c.reader} {
				ctr.Name, ctr.Image, ctr.ImagePullPolicy = []string{"writer", "reader"}[i], busybox, corev1.PullNever
				if ctr.VolumeMounts == nil {
					ctr.VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
				}
				pod.Spec.Containers = append(pod.Spec.Containers, *ctr)
			}
			if _, err := suite.cluster.Client.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			if c.want == "" {
				until(t, ns, pod.Name, "the fixed Pod to run", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
				time.Sleep(3 * time.Second) // a few rounds of writing and reading
				cmd.Execute(context.Background(), []string{"diagnose", "-n", ns, pod.Name, "--logs", "--kubeconfig", suite.cluster.Kubeconfig}, nil, &stdout, &stderr)
				if strings.Contains(stdout.String(), "shared-volume") || !strings.Contains(stdout.String(), "logs of reader") {
					t.Errorf("the fixed Pod:\n%s%s", stdout.String(), stderr.String())
				}
				return
			}
			err := wait(context.Background(), "diagnose to name the cause", func() bool {
				stdout.Reset()
				stderr.Reset()
				cmd.Execute(context.Background(), []string{"diagnose", "-n", ns, pod.Name, "--logs", "--kubeconfig", suite.cluster.Kubeconfig}, nil, &stdout, &stderr)
				return strings.Contains(stdout.String(), c.want)
			})
			if err != nil {
				t.Fatalf("%v:\n%s%s", err, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), "fix: ") {
				t.Errorf("no fix given:\n%s", stdout.String())
			}
		})
	}
}
