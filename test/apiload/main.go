// Command apiload measures what a webhook costs where users feel it: Pods
// created through a real kube-apiserver (the envtest control plane that
// `make test` builds, which calls webhooks over HTTP/2). Five namespaces
// side by side, each behind a different webhook, measured in alternating
// rounds: flat out one namespace after another, then paced with the
// namespaces' Pods in turn, so that all meet the same machine:
//
//   - none: no webhook;
//   - noop: a webhook that allows every Pod with no patch;
//   - static: a webhook that answers every review with the patch ours gave
//     the first one (the limit for this mutation: the API server's own
//     cost of calling a webhook, applying the patch and storing the
//     bigger Pod);
//   - ours: `sidecar-injector serve`;
//   - policy: no webhook; the default catalog compiled to admission
//     policies (`catalog compile`), which kube-apiserver runs in process;
//   - baseline, with -baseline BIN: another binary of ours, to measure a
//     change old against new in the same rounds.
//
// It reports Pods/s and create latency p50/p99 for each, and the ratios
// of ours to static (and to the baseline), each the median of the rounds'
// ratios.
package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/podpatterns/sidecar-injector/pkg/admissionpolicy"
	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/certs"
	"github.com/podpatterns/sidecar-injector/test/cluster"
)

type config struct {
	server   string
	baseline string
	duration time.Duration
	rounds   int
	conns    int
	rate     int
}

func main() {
	if len(os.Args) == 6 && os.Args[1] == "serve" {
		if err := serve(os.Args[2], os.Args[3], os.Args[4], os.Args[5]); err != nil {
			fmt.Fprintln(os.Stderr, "apiload serve:", err)
			os.Exit(1)
		}
		return
	}
	c := config{}
	flag.StringVar(&c.server, "server", "bin/sidecar-injector", "sidecar-injector binary to measure")
	flag.StringVar(&c.baseline, "baseline", "", "another sidecar-injector binary to measure in the same rounds, in a fifth namespace")
	flag.DurationVar(&c.duration, "duration", 3*time.Second, "length of each run")
	flag.IntVar(&c.rounds, "rounds", 3, "how many times each namespace is measured, alternating")
	flag.IntVar(&c.conns, "conns", 16, "concurrent creates in the flat-out runs")
	flag.IntVar(&c.rate, "rate", 100, "Pods per second in the paced runs; 0 skips them")
	flag.Parse()
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "apiload:", err)
		os.Exit(1)
	}
}

// modes are the namespaces, in the order each round measures them;
// "baseline" follows when there is one.
var modes = []string{"none", "noop", "static", "ours", "policy"}

// injects reports whether mode injects.
func injects(mode string) bool {
	return mode == "static" || mode == "ours" || mode == "baseline" || mode == "policy"
}

// installPolicies binds the default catalog's compiled policies to the
// policy namespace.
func installPolicies(ctx context.Context, c kubernetes.Interface) error {
	cat, err := catalog.LoadOrDefault("")
	if err != nil {
		return err
	}
	p := admissionpolicy.Compile(cat, admissionpolicy.Options{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"bench": "policy"}}})
	_, err = cluster.InstallPolicies(ctx, c, p)
	return err
}

func run(c config) error {
	logs, err := os.CreateTemp("", "sidecar-injector-apiload-*.log")
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
	root, err := cluster.RepoRoot()
	if err != nil {
		return err
	}
	hook, err := cluster.StartWebhook(ctx, c.server, filepath.Join(cl.Dir, "tls"), cl.Kubeconfig, logs, "--log-level", "error")
	if err != nil {
		return err
	}
	defer func() { _ = hook.Stop() }()
	ca, err := cluster.CAPEM(hook.CertDir)
	if err != nil {
		return err
	}
	// The no-op and static webhooks run in processes of their own, as
	// ours does, so that none shares the load generator's CPU time.
	certDir := filepath.Join(cl.Dir, "bench-tls")
	if _, err := certs.Write(certDir, certs.Options{Hosts: []string{"127.0.0.1"}, Validity: 24 * time.Hour}); err != nil {
		return err
	}
	benchCA, err := cluster.CAPEM(certDir)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	ports, err := cluster.FreePorts(2)
	if err != nil {
		return err
	}
	urls := map[string]string{"ours": hook.URL()}
	cas := map[string][]byte{"ours": ca, "noop": benchCA, "static": benchCA}
	hooks := map[string]*cluster.Webhook{"ours": hook}
	if c.baseline != "" {
		modes = append(modes, "baseline")
		base, err := cluster.StartWebhook(ctx, c.baseline, filepath.Join(cl.Dir, "tls-baseline"), cl.Kubeconfig, logs, "--log-level", "error")
		if err != nil {
			return fmt.Errorf("starting the baseline: %w", err)
		}
		defer func() { _ = base.Stop() }()
		if cas["baseline"], err = cluster.CAPEM(base.CertDir); err != nil {
			return err
		}
		urls["baseline"], hooks["baseline"] = base.URL(), base
	}
	caFile := filepath.Join(hook.CertDir, certs.CACert)
	for i, mode := range []string{"noop", "static"} {
		addr := fmt.Sprintf("127.0.0.1:%d", ports[i])
		cmd := exec.Command(self, "serve", addr, mode, certDir, hook.URL()+" "+caFile)
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			return err
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		urls[mode] = "https://" + addr + "/mutate-pods"
	}

	objs, err := cluster.Render(filepath.Join(root, "deploy", "base"))
	if err != nil {
		return err
	}
	for _, mode := range modes {
		if err := createNamespace(ctx, cl.Client, "bench-"+mode, mode); err != nil {
			return err
		}
		if mode == "none" {
			continue
		}
		if mode == "policy" {
			if err := installPolicies(ctx, cl.Client); err != nil {
				return fmt.Errorf("installing the compiled policies: %w", err)
			}
			continue
		}
		cfg, err := cluster.WebhookConfig(objs, urls[mode], cas[mode])
		if err != nil {
			return err
		}
		cfg.Name = "bench-" + mode
		cfg.Webhooks[0].Name = mode + ".bench.podpatterns.io" // the API server's metrics tell webhooks apart by it
		cfg.Webhooks[0].NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"bench": mode}}
		if err := cl.InstallWebhook(ctx, cfg); err != nil {
			return err
		}
	}
	cfg := rest.CopyConfig(cl.Config)
	cfg.QPS, cfg.Burst = -1, 0 // no client-side rate limit
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	for _, mode := range modes {
		if err := warmUp(ctx, client, mode); err != nil {
			return err
		}
	}

	fmt.Printf("Pods created through kube-apiserver: %d concurrent creates flat out, %s per namespace; then paced at %d/s, the namespaces' Pods in turn, %s; %d rounds\n\n",
		c.conns, c.duration, c.rate, c.duration*time.Duration(len(modes)), c.rounds)
	results := map[string][]result{}
	for round := range c.rounds {
		// Odd rounds run the namespaces in reverse, so that no mode
		// always follows another: a drift in the machine's speed over a
		// round then favours none of them.
		order := slices.Clone(modes)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, mode := range order {
			r, err := flatOut(ctx, client, mode, c.conns, c.duration)
			if err == nil {
				err = clearPods(ctx, client, mode)
			}
			if err != nil {
				return err
			}
			results[mode+" max"] = append(results[mode+" max"], r)
		}
		if c.rate > 0 {
			// The paced run lasts as long as the flat-out runs
			// together: each namespace gets as many Pods as a run of
			// its own at the full rate would give it.
			rs, err := pacedTogether(ctx, client, order, hooks, c.rate, c.duration*time.Duration(len(order)))
			if err != nil {
				return err
			}
			for mode, r := range rs {
				name := fmt.Sprintf("%s @%d/s", mode, c.rate)
				results[name] = append(results[name], r)
			}
		}
	}
	report(results, c)
	return nil
}

// serve is a no-op or static webhook on addr, HTTP/2 and HTTP/1.1 over
// TLS with the certificate in certDir. The static one asks ours (its URL
// and CA file, space-separated in ours) for the patch of the first review.
func serve(addr, mode, certDir, ours string) error {
	pair, err := tls.LoadX509KeyPair(filepath.Join(certDir, certs.ServerCert), filepath.Join(certDir, certs.ServerKey))
	if err != nil {
		return err
	}
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { answer(w, r, nil) })
	if mode == "static" {
		url, caFile, _ := strings.Cut(ours, " ")
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		h = &static{ours: url, client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}
	}
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}}
	return srv.ListenAndServeTLS("", "")
}

// answer allows the review, with patch when it is not nil. It reads only
// the request's UID, as little as any webhook can.
func answer(w http.ResponseWriter, r *http.Request, patch []byte) {
	var review struct {
		Request *struct {
			UID types.UID `json:"uid"`
		} `json:"request"`
	}
	body, _ := io.ReadAll(r.Body)
	if err := jsonv2.Unmarshal(body, &review); err != nil || review.Request == nil {
		http.Error(w, "bad review", http.StatusBadRequest)
		return
	}
	resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
	if patch != nil {
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = patch, &pt
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(&admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Response: resp})
}

// static answers every review with the patch ours gave the first one:
// every Pod of the run is built alike, so the patch fits each.
type static struct {
	ours   string
	client *http.Client
	once   sync.Once
	patch  []byte
	err    error
}

func (s *static) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.once.Do(func() { s.patch, s.err = s.fetch(body) })
	if s.err != nil {
		http.Error(w, s.err.Error(), http.StatusInternalServerError)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	answer(w, r, s.patch)
}

func (s *static) fetch(body []byte) ([]byte, error) {
	resp, err := s.client.Post(s.ours, "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	review := &admissionv1.AdmissionReview{}
	if err := json.NewDecoder(resp.Body).Decode(review); err != nil {
		return nil, err
	}
	if review.Response == nil || review.Response.Patch == nil {
		return nil, errors.New("our webhook gave no patch to precompute")
	}
	return review.Response.Patch, nil
}

func createNamespace(ctx context.Context, c kubernetes.Interface, name, mode string) error {
	_, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"bench": mode}}}, metav1.CreateOptions{})
	return err
}

// pod is what every run creates: the typical Pod asking for log-shipper.
func pod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "web-", Annotations: map[string]string{"sidecars.podpatterns.io/inject": "log-shipper"}},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsUser: new(int64(1000)), FSGroup: new(int64(1000))},
			Containers: []corev1.Container{{Name: "web", Image: "registry.example.com/web:1.0.0",
				Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}},
		},
	}
}

// warmUp waits until the namespace's webhook answers as it should: the
// API server picks up configurations asynchronously.
func warmUp(ctx context.Context, c kubernetes.Interface, mode string) error {
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return cluster.WaitFor(wctx, mode+" webhook to take effect", func() bool {
		p, err := c.CoreV1().Pods("bench-"+mode).Create(ctx, pod(), metav1.CreateOptions{})
		return err == nil && check(mode, p) == nil
	})
}

// check holds each stored Pod to its mode: injected or not.
func check(mode string, p *corev1.Pod) error {
	injected := len(p.Spec.InitContainers) == 1 && p.Spec.InitContainers[0].Name == "log-shipper"
	if want := injects(mode); injected != want {
		return fmt.Errorf("%s: pod %s injected %v, want %v", mode, p.Name, injected, want)
	}
	return nil
}

type result struct {
	pods     int64
	elapsed  time.Duration
	p50, p99 time.Duration
	// call is the mean time of a call to the namespace's webhook as the
	// API server measures it (sending the review, the webhook's answer,
	// applying its patch); 0 without a webhook or in the flat-out runs.
	call time.Duration
	// handler is ours' (or the baseline's) mean request duration by its
	// own histogram, in the paced runs.
	handler time.Duration
}

// handlerTotals reads the sum and count of ours' request duration
// histogram.
func handlerTotals(hook *cluster.Webhook) [2]float64 {
	url := hook.MetricsURL()
	return [2]float64{cluster.Metric(url, "sidecar_injector_request_duration_seconds_sum"), cluster.Metric(url, "sidecar_injector_request_duration_seconds_count")}
}

// handlerTime is ours' mean request duration since before.
func handlerTime(hook *cluster.Webhook, before [2]float64) time.Duration {
	after := handlerTotals(hook)
	if after[1] <= before[1] {
		return 0
	}
	return time.Duration((after[0] - before[0]) / (after[1] - before[1]) * float64(time.Second))
}

func (r result) rate() float64 { return float64(r.pods) / r.elapsed.Seconds() }

func create(ctx context.Context, c kubernetes.Interface, mode string) (time.Duration, error) {
	start := time.Now()
	p, err := c.CoreV1().Pods("bench-"+mode).Create(ctx, pod(), metav1.CreateOptions{})
	if err != nil {
		return 0, err
	}
	return time.Since(start), check(mode, p)
}

// recorder collects the latencies of creates made from many goroutines
// and keeps the first error.
type recorder struct {
	mu  sync.Mutex
	lat []time.Duration
	err error
}

// create creates one Pod and records it; false once a create failed.
func (r *recorder) create(ctx context.Context, c kubernetes.Interface, mode string) bool {
	l, err := create(ctx, c, mode)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.err = cmp.Or(r.err, err)
		return false
	}
	r.lat = append(r.lat, l)
	return true
}

func (r *recorder) result(elapsed time.Duration) (result, error) {
	if r.err != nil {
		return result{}, r.err
	}
	return summarize(r.lat, elapsed), nil
}

// clearPods deletes the namespace's Pods, so that every run starts from
// the same store whichever mode ran before it.
func clearPods(ctx context.Context, c kubernetes.Interface, mode string) error {
	zero := int64(0)
	return c.CoreV1().Pods("bench-"+mode).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
}

func flatOut(ctx context.Context, c kubernetes.Interface, mode string, conns int, d time.Duration) (result, error) {
	rec := &recorder{}
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			for time.Now().Before(deadline) && rec.create(ctx, c, mode) {
			}
		})
	}
	wg.Wait()
	return rec.result(time.Since(start))
}

// pacedTogether creates Pods open loop at rate Pods/s for d, the i-th in
// namespace modes[i % len(modes)]: every namespace's Pods meet the same
// machine at the same moments, so a drift in its speed (the host is
// shared) moves all of them alike, and the API server takes rate Pods/s
// in all. It returns each mode's latencies with the mean webhook call as
// the API server times it and, for a webhook of ours (in hooks), its
// handler's mean time; the namespaces are emptied afterwards.
func pacedTogether(ctx context.Context, c kubernetes.Interface, modes []string, hooks map[string]*cluster.Webhook, rate int, d time.Duration) (map[string]result, error) {
	before, err := webhookCalls(ctx, c)
	if err != nil {
		return nil, err
	}
	handled := map[string][2]float64{}
	for mode, hook := range hooks {
		handled[mode] = handlerTotals(hook)
	}
	recs := map[string]*recorder{}
	for _, mode := range modes {
		recs[mode] = &recorder{}
	}
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; time.Since(start) < d; i++ {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		mode := modes[i%len(modes)]
		wg.Go(func() { recs[mode].create(ctx, c, mode) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	out := map[string]result{}
	for _, mode := range modes {
		r, err := recs[mode].result(elapsed)
		if err != nil {
			return nil, err
		}
		if r.call, err = callTime(ctx, c, mode, before); err != nil {
			return nil, err
		}
		if hook := hooks[mode]; hook != nil {
			r.handler = handlerTime(hook, handled[mode])
		}
		if err := clearPods(ctx, c, mode); err != nil {
			return nil, err
		}
		out[mode] = r
	}
	return out, nil
}

// calls is the API server's count and total time of calls to a webhook.
type calls struct {
	n   uint64
	sum float64
}

// webhookCalls reads the API server's calls to each webhook so far from
// its apiserver_admission_webhook_admission_duration_seconds, by webhook
// name.
func webhookCalls(ctx context.Context, c kubernetes.Interface) (map[string]calls, error) {
	data, err := c.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the API server's metrics: %w", err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("parsing the API server's metrics: %w", err)
	}
	out := map[string]calls{}
	// The compiled policies' CEL, as the API server times it per policy.
	for _, kind := range []string{"mutating", "validating"} {
		for _, m := range families["apiserver_"+kind+"_admission_policy_check_duration_seconds"].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "policy" && l.GetValue() == admissionpolicy.Name {
					c := out["policy:"+kind]
					c.n += m.GetHistogram().GetSampleCount()
					c.sum += m.GetHistogram().GetSampleSum()
					out["policy:"+kind] = c
				}
			}
		}
	}
	for _, m := range families["apiserver_admission_webhook_admission_duration_seconds"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "name" {
				c := out[l.GetValue()]
				c.n += m.GetHistogram().GetSampleCount()
				c.sum += m.GetHistogram().GetSampleSum()
				out[l.GetValue()] = c
			}
		}
	}
	return out, nil
}

// callTime is the mean time of the calls to mode's webhook since before.
func callTime(ctx context.Context, c kubernetes.Interface, mode string, before map[string]calls) (time.Duration, error) {
	if mode == "none" {
		return 0, nil
	}
	after, err := webhookCalls(ctx, c)
	if err != nil {
		return 0, err
	}
	if mode == "policy" {
		m, v := "policy:mutating", "policy:validating"
		n := after[m].n - before[m].n
		if n == 0 {
			return 0, errors.New("the API server counted no evaluation of the compiled policies")
		}
		return time.Duration((after[m].sum - before[m].sum + after[v].sum - before[v].sum) / float64(n) * float64(time.Second)), nil
	}
	name := mode + ".bench.podpatterns.io"
	n, sum := after[name].n-before[name].n, after[name].sum-before[name].sum
	if n == 0 {
		return 0, fmt.Errorf("the API server counted no calls to %s", name)
	}
	return time.Duration(sum / float64(n) * float64(time.Second)), nil
}

func summarize(lat []time.Duration, elapsed time.Duration) result {
	slices.Sort(lat)
	r := result{pods: int64(len(lat)), elapsed: elapsed}
	if len(lat) > 0 {
		r.p50, r.p99 = lat[len(lat)/2], lat[len(lat)*99/100]
	}
	return r
}

func report(results map[string][]result, c config) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "run\tPods/s\tp50\tp99\twebhook call (policy: CEL)\t")
	var names []string
	for name := range results {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool { return order(names[i]) < order(names[j]) })
	for _, name := range names {
		rs := results[name]
		call := "-"
		if d := medianDur(rs, func(r result) time.Duration { return r.call }); d > 0 {
			call = ms(d)
		}
		fmt.Fprintf(w, "%s\t%.0f\t%s\t%s\t%s\t\n", name, median(rs, result.rate), ms(medianDur(rs, func(r result) time.Duration { return r.p50 })), ms(medianDur(rs, func(r result) time.Duration { return r.p99 })), call)
	}
	w.Flush()
	fmt.Println()
	ratio := func(a, b string) string {
		var v []float64
		var each []string
		for i := range results[a] {
			v = append(v, results[a][i].rate()/results[b][i].rate())
			each = append(each, fmt.Sprintf("%.2f", v[len(v)-1]))
		}
		return fmt.Sprintf("%.2f (rounds %s)", medianOf(v), strings.Join(each, " "))
	}
	fmt.Printf("flat out, Pods/s: ours/static %s (target >= 0.95)\n", ratio("ours max", "static max"))
	fmt.Printf("                  ours/noop %s, static/none %s\n", ratio("ours max", "noop max"), ratio("static max", "none max"))
	fmt.Printf("                  policy/ours %s, policy/static %s\n", ratio("policy max", "ours max"), ratio("policy max", "static max"))
	if c.baseline != "" {
		fmt.Printf("                  ours/baseline %s\n", ratio("ours max", "baseline max"))
	}
	if c.rate > 0 {
		paced := func(m string) string { return fmt.Sprintf("%s @%d/s", m, c.rate) }
		// minus is ours minus other of f, the median over rounds and
		// each round's.
		minus := func(other string, f func(result) time.Duration) string {
			var diff []float64
			var each []string
			for i := range results[paced("ours")] {
				diff = append(diff, float64(f(results[paced("ours")][i])-f(results[paced(other)][i]))/float64(time.Millisecond))
				each = append(each, fmt.Sprintf("%+.2f", diff[i]))
			}
			return fmt.Sprintf("%+.2fms (rounds %s)", medianOf(diff), strings.Join(each, " "))
		}
		p50 := func(r result) time.Duration { return r.p50 }
		call := func(r result) time.Duration { return r.call }
		handler := func(r result) time.Duration { return r.handler }
		fmt.Printf("at %d Pods/s, p50: ours - static %s (target: within 0.3ms); none %s, static %s, ours %s\n", c.rate, minus("static", p50),
			ms(medianDur(results[paced("none")], p50)), ms(medianDur(results[paced("static")], p50)), ms(medianDur(results[paced("ours")], p50)))
		fmt.Printf("at %d Pods/s, p50: ours - policy %s; policy %s; the policies' CEL as the API server times it (mutating + validating, per Pod) %s\n", c.rate, minus("policy", p50),
			ms(medianDur(results[paced("policy")], p50)), ms(medianDur(results[paced("policy")], call)))
		fmt.Printf("at %d Pods/s, mean webhook call as the API server times it: ours - static %s; ours' handler by its own histogram %s\n", c.rate, minus("static", call),
			ms(medianDur(results[paced("ours")], handler)))
		if c.baseline != "" {
			fmt.Printf("at %d Pods/s, ours - baseline: p50 %s, webhook call %s; the baseline's handler %s\n", c.rate, minus("baseline", p50), minus("baseline", call),
				ms(medianDur(results[paced("baseline")], handler)))
		}
	}
}

func order(name string) int {
	for i, m := range modes {
		if len(name) > len(m) && name[:len(m)+1] == m+" " {
			if name[len(m)+1:] == "max" {
				return i
			}
			return len(modes) + i
		}
	}
	return 99
}

func median(rs []result, f func(result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	return medianOf(v)
}

func medianDur(rs []result, f func(result) time.Duration) time.Duration {
	return time.Duration(median(rs, func(r result) float64 { return float64(f(r)) }))
}

func medianOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }
