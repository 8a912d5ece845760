// Command fleetload measures the conformance controller at the
// Kubernetes scalability limit: it creates N injected Pods (150,000 by
// default; they need not run) across namespaces and ReplicaSets of a
// real kube-apiserver, each with a service account token volume of its
// own name as the API server gives one, starts `sidecar-injector
// controller`, and reports against the targets:
//
//   - every Pod classified after start (cache sync included), and the
//     controller's peak RSS: under 512 MiB;
//   - a catalog change (the file rewritten) until the gauges show every
//     Pod stale, and back current: under 10 s, the median of -changes;
//   - a churn of -churn Pod creations and as many deletions a second
//     for -churn-duration, -rounds times: how far the gauges lag behind
//     what the API server acknowledged (under 2 s) and the controller's
//     CPU (under half a core).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
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
	"github.com/podpatterns/sidecar-injector/pkg/statuskey"
	"github.com/podpatterns/sidecar-injector/test/cluster"
)

type config struct {
	bin              string
	pods, namespaces int
	changes, rounds  int
	churn            int
	churnDuration    time.Duration
}

func main() {
	var c config
	flag.StringVar(&c.bin, "server", "bin/sidecar-injector", "sidecar-injector binary")
	flag.IntVar(&c.pods, "pods", 150000, "Pods to create")
	flag.IntVar(&c.namespaces, "namespaces", 50, "namespaces they spread over (20 ReplicaSets each)")
	flag.IntVar(&c.changes, "changes", 4, "catalog changes to time")
	flag.IntVar(&c.churn, "churn", 100, "Pod creations, and as many deletions, a second")
	flag.DurationVar(&c.churnDuration, "churn-duration", 15*time.Second, "length of a churn round")
	flag.IntVar(&c.rounds, "rounds", 3, "churn rounds")
	flag.Parse()
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "fleetload:", err)
		os.Exit(1)
	}
}

// fleet is the control plane, the Pods and the controller under test.
type fleet struct {
	config
	client  kubernetes.Interface
	logs    *os.File
	catalog string // the catalog file the controller watches
	keyDir  string // the status key the Pods are signed with
	// statuses are the template's status annotation signed at as many
	// seconds as the webhook would over the fleet's creation: Pod i has
	// statuses[i%len].
	statuses []string
	metrics  string
	pid      int
	// live are the Pods created and not yet deleted, by namespace/name.
	mu   sync.Mutex
	live []string
}

func run(c config) error {
	logs, err := os.CreateTemp("", "sidecar-injector-fleetload-*.log")
	if err != nil {
		return err
	}
	defer logs.Close()
	cl, err := cluster.Start(logs, "max-requests-inflight=1000", "max-mutating-requests-inflight=500")
	if err != nil {
		return err
	}
	defer cl.Stop()
	cfg := rest.CopyConfig(cl.Config)
	cfg.QPS, cfg.Burst = -1, 0
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	f := &fleet{config: c, logs: logs}
	if f.client, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	ctx := context.Background()
	if err := f.populate(ctx); err != nil {
		return err
	}
	stop, err := f.startController(cl.Kubeconfig)
	if err != nil {
		return err
	}
	defer stop()
	if err := f.changeCatalog(ctx); err != nil {
		return err
	}
	if err := f.churnRounds(ctx); err != nil {
		return err
	}
	fmt.Printf("controller peak RSS %.0f MiB (target < 512 MiB), RSS now %.0f MiB; logs: %s\n",
		float64(cluster.ProcStatus(f.pid, "VmHWM:"))/(1<<20), float64(cluster.ProcStatus(f.pid, "VmRSS:"))/(1<<20), logs.Name())
	return nil
}

// populate creates the namespaces and the Pods, injected with log-shipper
// as the webhook injects it.
func (f *fleet) populate(ctx context.Context) error {
	for i := range f.namespaces {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("fleet-%02d", i), Labels: map[string]string{inject.InjectionLabel: "enabled"}}}
		if _, err := f.client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	pod, err := f.injectedPod()
	if err != nil {
		return err
	}
	start := time.Now()
	var next atomic.Int64
	errs := make(chan error, 32)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < f.pods; i = int(next.Add(1)) - 1 {
				if err := f.create(ctx, pod, i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	fmt.Printf("created %d injected Pods in %d namespaces in %s\n", f.pods, f.namespaces, time.Since(start).Round(time.Second))
	return nil
}

// create makes Pod i of the fleet from the template: its namespace and
// ReplicaSet follow from i, its token volume has a name of its own.
func (f *fleet) create(ctx context.Context, template *corev1.Pod, i int) error {
	p := template.DeepCopy()
	p.Annotations[inject.StatusAnnotation] = f.statuses[i%len(f.statuses)]
	ns := fmt.Sprintf("fleet-%02d", i%f.namespaces)
	rs := (i / f.namespaces) % 20
	p.Name = fmt.Sprintf("web-%d-5d8f7c9b4-%d", rs, i)
	p.Labels = map[string]string{"app": fmt.Sprintf("web-%d", rs), "pod-template-hash": "5d8f7c9b4"}
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: fmt.Sprintf("web-%d-5d8f7c9b4", rs), UID: "00000000-0000-0000-0000-000000000001", Controller: new(true)}}
	token := fmt.Sprintf("kube-api-access-%05x", rand.IntN(1<<20))
	p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: token, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
		// The token itself needs a service account this control plane
		// has no controller to create; the rest is as the API server has it.
		{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}, Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
		{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}}}},
	}}}})
	for _, list := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for j := range list {
			list[j].VolumeMounts = append(list[j].VolumeMounts, corev1.VolumeMount{Name: token, MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true})
		}
	}
	if _, err := f.client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating %s/%s: %w", ns, p.Name, err)
	}
	f.mu.Lock()
	f.live = append(f.live, ns+"/"+p.Name)
	f.mu.Unlock()
	return nil
}

// startController starts `sidecar-injector controller` on a catalog
// file of its own and waits until it has classified every Pod.
func (f *fleet) startController(kubeconfig string) (stop func(), err error) {
	dir, err := os.MkdirTemp("", "sidecar-injector-fleetload-catalog-")
	if err != nil {
		return nil, err
	}
	f.catalog = filepath.Join(dir, "catalog.yaml")
	if err := os.WriteFile(f.catalog, catalog.DefaultYAML(), 0o644); err != nil {
		return nil, err
	}
	ports, err := cluster.FreePorts(2)
	if err != nil {
		return nil, err
	}
	f.metrics = fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[0])
	cmd := exec.Command(f.bin, "controller", "--kubeconfig", kubeconfig, "--leader-elect=false", "--catalog", f.catalog, "--status-key-dir", f.keyDir,
		"--metrics-addr", fmt.Sprintf("127.0.0.1:%d", ports[0]), "--health-addr", fmt.Sprintf("127.0.0.1:%d", ports[1]), "--log-level", "error")
	cmd.Stdout, cmd.Stderr = f.logs, f.logs
	cmd.Env = append(os.Environ(), strings.Fields(os.Getenv("FLEETLOAD_ENV"))...)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	f.pid = cmd.Process.Pid
	stop = func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait(); os.RemoveAll(dir) }
	if err := f.await(5*time.Minute, "every Pod classified current", "current", f.pods); err != nil {
		stop()
		return nil, err
	}
	fmt.Printf("controller: every Pod classified current %s after start (cache sync included); shapes %.0f for %.0f Pods\n",
		time.Since(start).Round(100*time.Millisecond), f.gauge(`sidecar_injector_controller_cache_objects{kind="shapes"}`), f.gauge(`sidecar_injector_controller_cache_objects{kind="pods"}`))
	return stop, nil
}

// changeCatalog moves the log shipper's image and back, timing each
// change from the file's rewrite until the gauges show it for every Pod.
func (f *fleet) changeCatalog(context.Context) error {
	var took []time.Duration
	for i := range f.changes {
		data, state := catalog.DefaultYAML(), "current"
		if i%2 == 0 {
			data, state = bytes.Replace(data, []byte("fluent-bit:3.2.10"), []byte("fluent-bit:3.2.11"), 1), "stale"
		}
		start := time.Now()
		if err := os.WriteFile(f.catalog, data, 0o644); err != nil {
			return err
		}
		if err := f.await(time.Minute, "every Pod "+state, state, f.pods); err != nil {
			return err
		}
		took = append(took, time.Since(start))
	}
	if len(took) > 0 {
		fmt.Printf("catalog change until every Pod's gauge moved: median %s (target < 10s); each %s; last full classification %.2fs\n",
			median(took).Round(10*time.Millisecond), rounded(took), f.gauge("sidecar_injector_controller_classification_seconds"))
	}
	return nil
}

// churnRounds creates Pods that ask for log-shipper without it (missing:
// no webhook runs here) and deletes fleet Pods, each at f.churn a
// second, and samples the missing gauge every 100 ms: a sample lags by
// the age of the oldest acknowledged creation it does not count yet.
func (f *fleet) churnRounds(ctx context.Context) error {
	plain := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{inject.InjectAnnotation: "log-shipper"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.example.com/web:1.0.0"}}},
	}
	var lags, maxLags []time.Duration
	var cores []float64
	created := 0
	for round := range f.rounds {
		base := int(f.missing())
		acks := make(chan time.Time, f.churn*int(f.churnDuration.Seconds()+1))
		cpu0, wall0 := cpuSeconds(f.pid), time.Now()
		done := make(chan error, 1)
		go func() { done <- f.churnFor(ctx, plain, &created, acks) }()
		var acked []time.Time
		var samples [][2]time.Time // sample time, time of the oldest creation not yet counted (zero: none)
		for running := true; running; {
			select {
			case err := <-done:
				if err != nil {
					return err
				}
				running = false
			case <-time.After(100 * time.Millisecond):
			}
			for len(acks) > 0 {
				acked = append(acked, <-acks)
			}
			now, m := time.Now(), int(f.missing())-base
			if m >= 0 && m < len(acked) {
				samples = append(samples, [2]time.Time{now, acked[m]})
			} else {
				samples = append(samples, [2]time.Time{now, {}})
			}
		}
		cores = append(cores, (cpuSeconds(f.pid)-cpu0)/time.Since(wall0).Seconds())
		if err := f.await(time.Minute, "the churn counted", "missing", base+len(acked)); err != nil {
			return err
		}
		var l []time.Duration
		for _, s := range samples {
			if s[1].IsZero() {
				l = append(l, 0)
			} else {
				l = append(l, s[0].Sub(s[1]))
			}
		}
		lags, maxLags = append(lags, median(l)), append(maxLags, slices.Max(l))
		fmt.Printf("churn round %d: %d/s created and deleted for %s: gauge lag median %s, max %s; controller CPU %.2f cores\n",
			round+1, f.churn, f.churnDuration, median(l).Round(time.Millisecond), slices.Max(l).Round(time.Millisecond), cores[len(cores)-1])
	}
	if len(lags) > 0 {
		slices.Sort(cores)
		fmt.Printf("churn: gauge lag median of rounds %s, max of rounds %s (target < 2s); controller CPU median %.2f cores (target < 0.5)\n",
			median(lags).Round(time.Millisecond), slices.Max(maxLags).Round(time.Millisecond), cores[len(cores)/2])
	}
	return nil
}

// churnFor creates and deletes f.churn Pods a second each for
// f.churnDuration, and sends the time each creation was acknowledged.
func (f *fleet) churnFor(ctx context.Context, plain *corev1.Pod, created *int, acks chan<- time.Time) error {
	tick := time.NewTicker(time.Second / time.Duration(f.churn))
	defer tick.Stop()
	end := time.Now().Add(f.churnDuration)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	var ackMu sync.Mutex
	for time.Now().Before(end) {
		<-tick.C
		n := *created
		*created++
		f.mu.Lock()
		victim := f.live[0]
		f.live = f.live[1:]
		f.mu.Unlock()
		wg.Go(func() {
			p := plain.DeepCopy()
			p.Name = fmt.Sprintf("churn-%d", n)
			ns := fmt.Sprintf("fleet-%02d", n%f.namespaces)
			if _, err := f.client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
				select {
				case errs <- err:
				default:
				}
				return
			}
			ackMu.Lock() // acknowledgements in order of arrival
			acks <- time.Now()
			ackMu.Unlock()
		})
		wg.Go(func() {
			vns, vname, _ := strings.Cut(victim, "/")
			if err := f.client.CoreV1().Pods(vns).Delete(ctx, vname, metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))}); err != nil {
				select {
				case errs <- err:
				default:
				}
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// missing is the sum of the missing gauges.
func (f *fleet) missing() float64 { return f.sum("missing") }

// await waits until the log-shipper gauges of state sum to n.
func (f *fleet) await(limit time.Duration, what, state string, n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var last float64
	err := cluster.WaitFor(ctx, what, func() bool { last = f.sum(state); return last == float64(n) })
	if err != nil {
		return fmt.Errorf("%w (the gauges count %.0f of %d)", err, last, n)
	}
	return nil
}

// sum adds the controller's log-shipper gauges of a state over the
// namespaces.
func (f *fleet) sum(state string) float64 {
	resp, err := http.Get(f.metrics)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	total := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "sidecar_injector_pods{") && strings.Contains(line, `state="`+state+`"`) && strings.Contains(line, `template="log-shipper"`) {
			v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			total += v
		}
	}
	return total
}

func (f *fleet) gauge(series string) float64 { return cluster.Metric(f.metrics, series) }

// cpuSeconds is the CPU time the process has used.
func cpuSeconds(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	return (utime + stime) / 100 // USER_HZ
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func rounded(ds []time.Duration) string {
	var parts []string
	for _, d := range ds {
		parts = append(parts, d.Round(10*time.Millisecond).String())
	}
	return strings.Join(parts, ", ")
}

// signedApart is how many seconds apart the fleet's Pods are signed.
const signedApart = 100

// injectedPod is a typical Pod as the webhook admits it, with a status key
// of its own; f.statuses are its status as signed at signedApart seconds.
func (f *fleet) injectedPod() (*corev1.Pod, error) {
	cat, err := catalog.Default()
	if err != nil {
		return nil, err
	}
	f.keyDir, err = os.MkdirTemp("", "sidecar-injector-fleetload-key-")
	if err != nil {
		return nil, err
	}
	if _, err := statuskey.Write(f.keyDir); err != nil {
		return nil, err
	}
	keys, err := statuskey.Read(f.keyDir)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	for i := range signedApart {
		keys.Now = func() time.Time { return start.Add(time.Duration(i) * time.Second) }
		pod := typicalPod()
		res, err := inject.Pod(pod, nil, cat, keys)
		if err != nil {
			return nil, err
		}
		f.statuses = append(f.statuses, res.Plan.Status.String())
	}
	pod := typicalPod()
	res, err := inject.Pod(pod, nil, cat, keys)
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

// typicalPod is a Pod of a ReplicaSet asking for log-shipper.
func typicalPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{inject.InjectAnnotation: "log-shipper"}},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsUser: new(int64(1000)), FSGroup: new(int64(1000))},
			Containers:      []corev1.Container{{Name: "web", Image: "registry.example.com/web:1.0.0"}},
		},
	}
}
