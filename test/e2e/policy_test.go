package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/podpatterns/sidecar-injector/pkg/admissionpolicy"
	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/pkg/inject/injecttest"
	"github.com/podpatterns/sidecar-injector/pkg/manifest"
	"github.com/podpatterns/sidecar-injector/pkg/workload"
	"github.com/podpatterns/sidecar-injector/test/cluster"
)

// modeLabel sends a namespace to the webhook or to the compiled policies
// in the differential test.
const modeLabel = "e2e.podpatterns.io/mode"

// TestCompiledPoliciesStoreWhatTheWebhookStores is the differential proof:
// every golden input of the engine, every Pod of the CLI's inject goldens
// and hostile parameter values are created (dry run) in a namespace served
// by a webhook and in one served by the policies compiled from the same
// catalog; the Pods stored must be equal, or both denied for the same
// cause, or the policies decline a template the compiler refused or a Pod
// they cannot write the status of, with the reason.
func TestCompiledPoliciesStoreWhatTheWebhookStores(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cfg := rest.CopyConfig(suite.cluster.Config)
	cfg.QPS, cfg.Burst = -1, 0 // hundreds of creates: no client-side rate limit
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	groups := goldenInputs(t)
	counts := map[string]int{}
	total := 0
	var refused []admissionpolicy.Refusal
	for g, dir := range slices.Sorted(maps.Keys(groups)) {
		cat, served := catalogFor(t, dir)
		webhook, policies := fmt.Sprintf("webhook-%d", g), fmt.Sprintf("policy-%d", g)
		startDiffWebhook(t, ctx, served, webhook)
		compiled := admissionpolicy.Compile(cat, admissionpolicy.Options{Name: "sidecar-injector-" + policies, NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{modeLabel: policies}}})
		installPolicies(t, ctx, c, compiled, policies)
		refused = append(refused, compiled.Refused...)
		namespaces := map[string]string{}
		for _, in := range groups[dir] {
			key := fmt.Sprint(in.labels)
			if namespaces[key] == "" {
				namespaces[key] = fmt.Sprintf("diff-%d-%d", g, len(namespaces))
				for _, mode := range []string{webhook, policies} {
					l := map[string]string{modeLabel: mode}
					for k, v := range in.labels {
						l[k] = v
					}
					namespace(t, namespaces[key]+"-"+mode, l)
				}
			}
			outcome := compare(t, ctx, c, in, namespaces[key]+"-"+webhook, namespaces[key]+"-"+policies, cat)
			if testing.Verbose() {
				t.Logf("%s: %s", in.name, outcome)
			}
			counts[outcome]++
			total++
		}
	}
	var lines []string
	for k, n := range counts {
		lines = append(lines, fmt.Sprintf("%s: %d", k, n))
	}
	sort.Strings(lines)
	t.Logf("%d Pods from the engine's and the CLI's golden inputs and hostile values, %d catalogs, templates refused by the compiler %v; outcomes:\n  %s", total, len(groups), refused, strings.Join(lines, "\n  "))
	if counts["same Pod stored"] < 10 || counts["both denied, same cause"]+counts["both denied, same cause (same message)"] < 10 || counts["mismatch"] > 0 {
		t.Errorf("the proof covers too little: %v", counts)
	}
}

// catalogFor is the catalog of a group of inputs and the directory a
// webhook serves it from: the engine's golden catalog for "", else the
// CLI golden's catalog directory.
func catalogFor(t *testing.T, dir string) (*catalog.Catalog, string) {
	if dir == "" {
		return goldenCatalog(t)
	}
	path := filepath.Join(suite.root, "pkg", "cmd", dir)
	cat, err := catalog.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cat, path
}

// compare creates one input in both namespaces and returns its outcome.
func compare(t *testing.T, ctx context.Context, c kubernetes.Interface, in input, webhookNS, policyNS string, cat *catalog.Catalog) string {
	t.Helper()
	name := in.name
	create := func(ns string) (*corev1.Pod, string) {
		pod := &corev1.Pod{}
		if err := json.Unmarshal(in.raw, pod); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		pod.Namespace = ns
		got, err := c.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return nil, err.Error()
		}
		return got, ""
	}
	wpod, werr := create(webhookNS)
	ppod, perr := create(policyNS)
	switch {
	case strings.Contains(perr, "resulted in error") || strings.Contains(perr, "failed to evaluate"):
		t.Errorf("%s: a policy failed to evaluate: %s", name, perr)
		return "mismatch"
	case perr != "" && (strings.Contains(denial(perr), "cannot be injected by the compiled admission policies") || strings.HasPrefix(denial(perr), "the compiled admission policies cannot verify")):
		t.Logf("%s: declined by the policies: %s (webhook: %s)", name, denial(perr), orStored(werr))
		if strings.Contains(perr, "the compiler refused it") {
			return "declined: template refused by the compiler"
		}
		return "declined: the Pod needs what only the webhook computes"
	case arrivesInjected(in.raw) && strings.Contains(werr, "has the name of the template's container but not its content (") && strings.Contains(werr, "imagePullPolicy"):
		// The webhook takes a Pod that arrives injected only as today's
		// exact rendering; AlwaysPullImages changed it before any webhook.
		t.Logf("%s: arrives injected, refused by the webhook after AlwaysPullImages (policies: %s)", name, orStored(perr))
		return "arrives injected: refused by the webhook after AlwaysPullImages"
	case werr != "" && perr != "":
		if cause(denial(werr)) != cause(denial(perr)) {
			t.Errorf("%s: denied for different causes:\n webhook: %s\n policy:  %s", name, denial(werr), denial(perr))
			return "mismatch"
		}
		if denial(werr) == denial(perr) {
			if testing.Verbose() {
				t.Logf("%s: both denied: %s", name, denial(werr))
			}
			return "both denied, same cause (same message)"
		}
		return "both denied, same cause"
	case werr != "" || perr != "":
		t.Errorf("%s: webhook: %s\n policy: %s", name, orStored(werr), orStored(perr))
		return "mismatch"
	}
	if diff := samePod(t, wpod, ppod, cat); diff != "" {
		t.Errorf("%s: the stored Pods differ: %s", name, diff)
		return "mismatch"
	}
	return "same Pod stored"
}

// arrivesInjected reports whether a Pod's JSON holds a status annotation.
func arrivesInjected(raw []byte) bool {
	pod := &corev1.Pod{}
	_ = json.Unmarshal(raw, pod)
	_, ok := pod.Annotations[inject.StatusAnnotation]
	return ok
}

func orStored(err string) string {
	if err == "" {
		return "stored"
	}
	return denial(err)
}

// denial is the message of a refused create, after the API server's
// preamble.
func denial(err string) string {
	for _, sep := range []string{"denied the request: ", "denied request: "} {
		if _, msg, ok := strings.Cut(err, sep); ok {
			return msg
		}
	}
	return err
}

// causes name a denial by the words the engine and the policies share.
var causes = []struct{ cause, words string }{
	{"list", "is empty; list names"}, {"list", "is listed twice"}, {"list", "entries; at most"}, {"none", "cannot be combined with template names"},
	{"unknown template", "not found in the catalog"}, {"not allowed", "is not allowed in this namespace"}, {"required not allowed", "is required by policy"},
	{"target", "no app container"}, {"unknown parameter", "has no parameter"}, {"bad parameter", "is not valid for parameter"},
	{"missing parameter", "needs parameter"}, {"override", "does not let Pods set"}, {"override", "is not a quantity"}, {"override", "is outside"}, {"override", "request of"},
	{"host network", "on the host's network"}, {"container name", "has the name of the template's container"},
	{"container name", "is already used by container"}, {"port", "share one network namespace"}, {"volume", "with a different definition"},
	{"mount", "already mounts volume"}, {"the API server's validation", " is invalid: "},
}

func cause(msg string) string {
	for _, c := range causes {
		if strings.Contains(msg, c.words) {
			return c.cause
		}
	}
	return "other: " + msg
}

// samePod compares the two stored Pods: equal but for the status
// annotation's form, which must hold, entry by entry, the held JSON the
// webhook signed, and verify as current.
func samePod(t *testing.T, w, p *corev1.Pod, cat *catalog.Catalog) string {
	claims, err := inject.VerifyStatus(p, cat, nil)
	if err != nil {
		return "the policy's status does not verify: " + err.Error()
	}
	for _, c := range claims {
		if c.Reason != "" {
			return fmt.Sprintf("the policy's status entry %q does not verify: %s", c.Name, c.Reason)
		}
	}
	wantStatus, gotStatus := readStatus(w), readStatus(p)
	if len(wantStatus.Templates) != len(gotStatus.Templates) {
		return fmt.Sprintf("status: webhook %v, policy %v", w.Annotations[inject.StatusAnnotation], p.Annotations[inject.StatusAnnotation])
	}
	for i, in := range gotStatus.Templates {
		want := wantStatus.Templates[i]
		if in.Name != want.Name || in.Held != want.Held {
			return fmt.Sprintf("status entry %d: webhook %+v, policy %q with held %s", i, want, in.Name, in.Held)
		}
	}
	w, p = w.DeepCopy(), p.DeepCopy()
	for _, pod := range []*corev1.Pod{w, p} {
		pod.Namespace, pod.UID, pod.CreationTimestamp, pod.ManagedFields = "", "", metav1.Time{}, nil
		delete(pod.Annotations, inject.StatusAnnotation)
		if pod.GenerateName != "" {
			pod.Name = "" // generated apart
		}
	}
	if !reflect.DeepEqual(w, p) {
		wj, _ := yaml.Marshal(w)
		pj, _ := yaml.Marshal(p)
		return fmt.Sprintf("\nwebhook:\n%s\npolicy:\n%s", wj, pj)
	}
	return ""
}

func readStatus(pod *corev1.Pod) inject.Status {
	var s inject.Status
	_ = json.Unmarshal([]byte(pod.Annotations[inject.StatusAnnotation]), &s)
	return s
}

// goldenCatalog is the catalog of the engine's golden tests, and a
// directory holding it for a webhook to serve.
func goldenCatalog(t *testing.T) (*catalog.Catalog, string) {
	dir := t.TempDir()
	extra, err := os.ReadFile(filepath.Join(suite.root, "pkg", "inject", "testdata", "catalog.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"default.yaml": catalog.DefaultYAML(), "extra.yaml": extra} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cat, err := catalog.Parse(catalog.Source{Name: "default.yaml", Data: catalog.DefaultYAML()}, catalog.Source{Name: "extra.yaml", Data: extra})
	if err != nil {
		t.Fatal(err)
	}
	return cat, dir
}

type input struct {
	name   string
	raw    []byte
	labels map[string]string
}

// goldenInputs are the engine's golden inputs, hostile values and the
// Pods and pod templates of the CLI's inject goldens (their workloads'
// templates created as Pods), each with its namespace labels, by the
// catalog directory they are read with ("": the engine's golden catalog,
// which is the default one and templates no CLI golden asks for).
func goldenInputs(t *testing.T) map[string][]input {
	var out []input
	engine, err := filepath.Glob(filepath.Join(suite.root, "pkg", "inject", "testdata", "golden", "*.yaml"))
	if err != nil || len(engine) < 25 {
		t.Fatalf("golden inputs: %d, %v", len(engine), err)
	}
	for _, path := range engine {
		raw, labels := injecttest.ReadCase(t, path)
		out = append(out, input{strings.TrimSuffix(filepath.Base(path), ".yaml"), raw, labels})
	}
	out = append(out, hostileValues(t)...)
	cmds, err := filepath.Glob(filepath.Join(suite.root, "pkg", "cmd", "testdata", "cli", "inject-*.cmd"))
	if err != nil || len(cmds) < 10 {
		t.Fatalf("CLI goldens: %d, %v", len(cmds), err)
	}
	groups := map[string][]input{}
	seen := map[string]bool{}
	for _, cmd := range cmds {
		dir, pods := cliPods(t, cmd)
		for _, in := range pods {
			if key := dir + string(in.raw) + fmt.Sprint(in.labels); !seen[key] {
				seen[key] = true
				groups[dir] = append(groups[dir], in)
			}
		}
	}
	groups[""] = append(out, groups[""]...)
	return groups
}

// hostileValues are Pods whose parameter and override annotations hold
// values an attacker or a careless author would write, at the edges of
// each type's check and normal form: both sides must agree on each.
func hostileValues(t *testing.T) []input {
	values := map[string][]string{
		"ambassador.sidecars.podpatterns.io/upstream": {"redis:6379", "redis.prod.svc:+6379", "redis:06379", "redis:0", "redis:65536", "REDIS:6379",
			"[::1]:6379", "[::ffff:1.2.3.4]:6379", "[::FFFF:102:304]:6379", "[0:0:0:0:0:ffff:1.2.3.4]:6379", "[::ffff:1.2.3]:6379", "[ffff::1]:6379", "[::1.2.3.4]:6379", "[fe80::1%eth0]:6379", "[redis]:6379", "1.2.3.4:80", "01.2.3.4:80", "a:b:c", ":6379", "redis:",
			"redis:6379,fork EXEC:/bin/sh", "r\u00e9dis:6379", strings.Repeat("a", 250) + ".b:1"},
		"ambassador.sidecars.podpatterns.io/port": {"9001", "+9001", "009001", "0", "65535", "65536", "-1", "9 001", "0x2329", "99999999999999999999"},
		"log-shipper.sidecars.podpatterns.io/log-dir": {"/var/log/app/", "/var//log/./app", "/var/log/../etc", "/", "//", "relative/dir", "/with space",
			"/tmp/a;b", "/tmp/$(id)", "/tmp/\u00e9", "/" + strings.Repeat("d", 1030)},
		"greeter.sidecars.podpatterns.io/message": {"hello world", "hi; rm -rf /", "a|b", "{{message}}", "caf\u00e9", "tab\there", "\u202eevil",
			"quote\"d", "back\\slash", strings.Repeat("x", 1025)},
		"log-shipper.sidecars.podpatterns.io/cpu-limit":       {"500m", "1", "1.5", "0.5", "1500m", "2", "-1", "49m", "+100m", "1e3", "100M", "abc"},
		"log-shipper.sidecars.podpatterns.io/memory-request":  {"64Mi", "1Gi", "1024Mi", "0.5Gi", "0", "256Mi", "257Mi", "67108864"},
		"metrics-adapter.sidecars.podpatterns.io/status-path": {"/metrics", "/a b", "/$x", "nope"},
		"content-filler.sidecars.podpatterns.io/cpu-request":  {"10m"},
	}
	template := func(key string) string { return strings.Split(key, ".")[0] }
	out := bigPods(t)
	n := 0
	for _, key := range slices.Sorted(maps.Keys(values)) {
		for _, value := range values[key] {
			ann := map[string]string{inject.InjectAnnotation: template(key), key: value}
			if template(key) == "ambassador" && !strings.HasSuffix(key, "upstream") {
				ann["ambassador.sidecars.podpatterns.io/upstream"] = "redis:6379"
			}
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("hostile-%d", n), Annotations: ann},
				Spec: corev1.PodSpec{
					SecurityContext: &corev1.PodSecurityContext{RunAsUser: new(int64(1000)), FSGroup: new(int64(1000))},
					Containers:      []corev1.Container{{Name: "app", Image: "registry.example.com/app:1.0.0"}},
				},
			}
			n++
			raw, err := json.Marshal(pod)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, input{fmt.Sprintf("%s=%.40q", key, value), raw, nil})
		}
	}
	return out
}

// bigPods cost the most to evaluate: 20 containers of 100 env vars each
// (50 of 200 exceed the webhook's budget of JSON values, which counts the
// managedFields the API server sends too), 150 app containers that each
// get the template's mount and env, an inject list of 128 long unknown
// names.
func bigPods(t *testing.T) []input {
	wide := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "wide", Annotations: map[string]string{inject.InjectAnnotation: "log-shipper"}}}
	for i := range 150 {
		wide.Spec.Containers = append(wide.Spec.Containers, corev1.Container{Name: fmt.Sprintf("app-%d", i), Image: "registry.example.com/app:1.0.0"})
	}
	heavy := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "heavy", Annotations: map[string]string{inject.InjectAnnotation: "log-shipper, content-filler"}}}
	for i := range 20 {
		c := corev1.Container{Name: fmt.Sprintf("c%d", i), Image: "registry.example.com/app:1.0.0"}
		for j := range 100 {
			c.Env = append(c.Env, corev1.EnvVar{Name: fmt.Sprintf("VAR_%d", j), Value: fmt.Sprintf("value-%d-%d", i, j)})
		}
		heavy.Spec.Containers = append(heavy.Spec.Containers, c)
	}
	var names []string
	for i := range 128 {
		names = append(names, fmt.Sprintf("t%d-%s", i, strings.Repeat("x", 1000)))
	}
	long := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "long", Annotations: map[string]string{inject.InjectAnnotation: strings.Join(names, ",")}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example.com/app:1.0.0"}}}}
	pods := []*corev1.Pod{heavy, wide, long}
	// An app that sets a template's env name itself keeps its value, which
	// the status then holds a copy of.
	for i, env := range [][]corev1.EnvVar{
		{{Name: "LOG_DIR", Value: "/srv/logs"}},
		{{Name: "LOG_DIR", Value: `quote " back \ <tag> & amp`}},
		{{Name: "LOG_DIR"}},
		{{Name: "LOG_DIR", Value: "a"}, {Name: "OTHER", Value: "b"}, {Name: "LOG_DIR", Value: "twice"}},
		{{Name: "LOG_DIR", Value: "line\nbreak"}},
		{{Name: "LOG_DIR", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
	} {
		pods = append(pods, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("own-env-%d", i), Annotations: map[string]string{inject.InjectAnnotation: "log-shipper, content-filler"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{
				{Name: "app", Image: "registry.example.com/app:1.0.0", Env: env},
				{Name: "other", Image: "registry.example.com/other:1.0.0"},
			}}})
	}
	// A volume the Pod has under the template's volume's name: reused only
	// when it is the very same.
	for i, source := range []corev1.VolumeSource{
		{EmptyDir: &corev1.EmptyDirVolumeSource{}},
		{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}},
		{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: new(resource.MustParse("1Gi"))}},
		{HostPath: &corev1.HostPathVolumeSource{Path: "/etc"}},
	} {
		pods = append(pods, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("own-volume-%d", i), Annotations: map[string]string{inject.InjectAnnotation: "content-filler"}},
			Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "app", Image: "registry.example.com/app:1.0.0"}},
				Volumes:    []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}, {Name: "shared-content", VolumeSource: source}},
			}})
	}
	var out []input
	for _, p := range pods {
		raw, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, input{p.Name, raw, nil})
	}
	return out
}

// cliPods reads the Pods an inject golden's -f file holds, and the
// catalog directory it reads them with ("" for the default).
func cliPods(t *testing.T, cmd string) (string, []input) {
	text, err := os.ReadFile(cmd)
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Fields(string(text))
	var file, dir string
	labels := map[string]string{}
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "-f":
			file = args[i+1]
		case "--catalog":
			dir = args[i+1]
		case "--namespace-labels":
			for _, kv := range strings.Split(args[i+1], ",") {
				k, v, _ := strings.Cut(kv, "=")
				labels[k] = v
			}
		}
	}
	data, err := os.ReadFile(filepath.Join(suite.root, "pkg", "cmd", file))
	if file == "" || file == "-" || err != nil {
		return dir, nil
	}
	docs, err := manifest.Split(bytes.NewReader(data))
	if err != nil {
		return dir, nil // the broken-input goldens
	}
	var out []input
	for _, d := range docs {
		pods, err := workload.PodsOf(d.JSON)
		if err != nil {
			continue
		}
		for i, p := range pods {
			pod := p.Pod.DeepCopy()
			if pod.Name == "" && pod.GenerateName == "" {
				pod.Name = fmt.Sprintf("template-%d", i)
			}
			raw, err := json.Marshal(pod)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, input{fmt.Sprintf("%s: %s", strings.TrimSuffix(filepath.Base(cmd), ".cmd"), p.Name), raw, labels})
		}
	}
	return dir, out
}

// startDiffWebhook serves the catalog in dir from a webhook of its own,
// for the namespaces labelled with mode.
func startDiffWebhook(t *testing.T, ctx context.Context, dir, mode string) {
	w, err := cluster.StartWebhook(ctx, suite.binary, filepath.Join(t.TempDir(), "tls"), suite.cluster.Kubeconfig, suite.logs, "--catalog", dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Stop() })
	objs, err := cluster.Render(filepath.Join(suite.root, "deploy", "base"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := cluster.CAPEM(w.CertDir)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := cluster.WebhookConfig(objs, w.URL(), ca)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Name += "-" + mode
	for i := range cfg.Webhooks {
		cfg.Webhooks[i].NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{modeLabel: mode}}
	}
	if err := suite.cluster.InstallWebhook(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = suite.cluster.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), cfg.Name, metav1.DeleteOptions{})
	})
}

// installPolicies creates the compiled objects and waits until a Pod in
// a namespace labelled with mode is injected through them: the API server
// loads policies asynchronously.
func installPolicies(t *testing.T, ctx context.Context, cs kubernetes.Interface, compiled *admissionpolicy.Compiled, mode string) {
	remove, err := cluster.InstallPolicies(ctx, cs, compiled)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(remove)
	ns := namespace(t, "diff-warmup-"+mode, map[string]string{modeLabel: mode})
	i := 0
	var last error
	err = cluster.WaitFor(ctx, "the compiled policies to take effect", func() bool {
		i++
		got, err := cs.CoreV1().Pods(ns).Create(ctx, nginxPod(fmt.Sprintf("warmup-%d", i), "content-filler"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		last = err
		if err != nil {
			time.Sleep(200 * time.Millisecond)
		}
		return err == nil && len(got.Spec.Containers) == 2
	})
	if err != nil {
		t.Fatalf("%v (last: %v)", err, last)
	}
	// The validating policy is loaded apart from the mutating one: it is
	// in force once it denies an unknown template.
	err = cluster.WaitFor(ctx, "the compiled validating policy to take effect", func() bool {
		i++
		_, err := cs.CoreV1().Pods(ns).Create(ctx, nginxPod(fmt.Sprintf("warmup-%d", i), "no-such-template"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil {
			time.Sleep(200 * time.Millisecond)
		}
		return err != nil && strings.Contains(err.Error(), "not found in the catalog")
	})
	if err != nil {
		t.Fatal(err)
	}
}
