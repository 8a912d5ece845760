// Package policytest holds what the proofs of the compiled admission
// policies share: the inputs (the engine's golden Pods, the CLI's inject
// goldens, hostile parameter values and the biggest Pods) and how an
// outcome of the webhook is compared with one of the policies. The
// in-process proof (pkg/admissionpolicy/eval) and the one through
// kube-apiserver (test/e2e) use both.
package policytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/pkg/inject/injecttest"
	"github.com/podpatterns/sidecar-injector/pkg/manifest"
	"github.com/podpatterns/sidecar-injector/pkg/workload"
)

// Outcome compares what the webhook and the policies made of one input,
// named name, with raw its JSON: the stored Pods (nil when denied) and
// the errors ("" when stored). It reports a difference with t.Errorf and
// returns the outcome's name, "mismatch" for a difference.
func Outcome(t testing.TB, name string, raw []byte, wpod *corev1.Pod, werr string, ppod *corev1.Pod, perr string, cat *catalog.Catalog) string {
	t.Helper()
	switch {
	case strings.Contains(perr, "resulted in error") || strings.Contains(perr, "failed to evaluate"):
		t.Errorf("%s: a policy failed to evaluate: %s", name, perr)
		return "mismatch"
	case perr != "" && (strings.Contains(Denial(perr), "cannot be injected by the compiled admission policies") || strings.HasPrefix(Denial(perr), "the compiled admission policies cannot verify") || strings.HasPrefix(Denial(perr), "the compiled admission policies decline")):
		t.Logf("%s: declined by the policies: %s (webhook: %s)", name, Denial(perr), OrStored(werr))
		if strings.Contains(perr, "the compiler refused it") {
			return "declined: template refused by the compiler"
		}
		return "declined: the Pod needs what only the webhook computes"
	case ArrivesInjected(raw) && strings.Contains(werr, "has the name of the template's container but not its content (") && strings.Contains(werr, "imagePullPolicy"):
		// The webhook takes a Pod that arrives injected only as today's
		// exact rendering; AlwaysPullImages changed it before any webhook.
		t.Logf("%s: arrives injected, refused by the webhook after AlwaysPullImages (policies: %s)", name, OrStored(perr))
		return "arrives injected: refused by the webhook after AlwaysPullImages"
	case werr != "" && perr != "":
		if Cause(Denial(werr)) != Cause(Denial(perr)) {
			t.Errorf("%s: denied for different causes:\n webhook: %s\n policy:  %s", name, Denial(werr), Denial(perr))
			return "mismatch"
		}
		if Denial(werr) == Denial(perr) {
			if testing.Verbose() {
				t.Logf("%s: both denied: %s", name, Denial(werr))
			}
			return "both denied, same cause (same message)"
		}
		return "both denied, same cause"
	case werr != "" || perr != "":
		t.Errorf("%s: webhook: %s\n policy: %s", name, OrStored(werr), OrStored(perr))
		return "mismatch"
	}
	if diff := SamePod(t, wpod, ppod, cat); diff != "" {
		t.Errorf("%s: the stored Pods differ: %s", name, diff)
		return "mismatch"
	}
	return "same Pod stored"
}

// CatalogFor is the catalog of a group of inputs and the directory a
// webhook serves it from: the engine's golden catalog for "", else the
// CLI golden's catalog directory.
func CatalogFor(t testing.TB, root, dir string) (*catalog.Catalog, string) {
	if dir == "" {
		return GoldenCatalog(t, root)
	}
	path := filepath.Join(root, "pkg", "cmd", dir)
	cat, err := catalog.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cat, path
}

// ArrivesInjected reports whether a Pod's JSON holds a status annotation.
func ArrivesInjected(raw []byte) bool {
	pod := &corev1.Pod{}
	_ = json.Unmarshal(raw, pod)
	_, ok := pod.Annotations[inject.StatusAnnotation]
	return ok
}

func OrStored(err string) string {
	if err == "" {
		return "stored"
	}
	return Denial(err)
}

// Denial is the message of a refused create, after the API server's
// preamble.
func Denial(err string) string {
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
	{"mount", "already mounts volume"}, {"the API server's validation", " is invalid: "}, {"too large", "is too large for the sidecar injector"},
}

func Cause(msg string) string {
	for _, c := range causes {
		if strings.Contains(msg, c.words) {
			return c.cause
		}
	}
	return "other: " + msg
}

// SamePod compares the two stored Pods: equal but for the status
// annotation's form, which must hold, entry by entry, the held JSON the
// webhook signed, and verify as current.
func SamePod(t testing.TB, w, p *corev1.Pod, cat *catalog.Catalog) string {
	claims, err := inject.VerifyStatus(p, cat, nil)
	if err != nil {
		return "the policy's status does not verify: " + err.Error()
	}
	for _, c := range claims {
		if c.Reason != "" {
			return fmt.Sprintf("the policy's status entry %q does not verify: %s", c.Name, c.Reason)
		}
	}
	wantStatus, gotStatus := ReadStatus(w), ReadStatus(p)
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
		pod.TypeMeta, pod.Namespace, pod.UID, pod.CreationTimestamp, pod.ManagedFields = metav1.TypeMeta{}, "", "", metav1.Time{}, nil
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

// ReadStatus is the status annotation of pod, zero when it has none.
func ReadStatus(pod *corev1.Pod) inject.Status {
	var s inject.Status
	_ = json.Unmarshal([]byte(pod.Annotations[inject.StatusAnnotation]), &s)
	return s
}

// GoldenCatalog is the catalog of the engine's golden tests, and a
// directory holding it for a webhook to serve.
func GoldenCatalog(t testing.TB, root string) (*catalog.Catalog, string) {
	dir := t.TempDir()
	extra, err := os.ReadFile(filepath.Join(root, "pkg", "inject", "testdata", "catalog.yaml"))
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

// Input is one Pod, as JSON, and the labels of its namespace.
type Input struct {
	Name   string
	Raw    []byte
	Labels map[string]string
}

// Inputs are the engine's golden inputs, hostile values and the
// Pods and pod templates of the CLI's inject goldens (their workloads'
// templates created as Pods), each with its namespace labels, by the
// catalog directory they are read with ("": the engine's golden catalog,
// which is the default one and templates no CLI golden asks for).
func Inputs(t testing.TB, root string) map[string][]Input {
	var out []Input
	engine, err := filepath.Glob(filepath.Join(root, "pkg", "inject", "testdata", "golden", "*.yaml"))
	if err != nil || len(engine) < 25 {
		t.Fatalf("golden inputs: %d, %v", len(engine), err)
	}
	for _, path := range engine {
		raw, labels := injecttest.ReadCase(t, path)
		out = append(out, Input{strings.TrimSuffix(filepath.Base(path), ".yaml"), raw, labels})
	}
	out = append(out, HostileValues(t)...)
	cmds, err := filepath.Glob(filepath.Join(root, "pkg", "cmd", "testdata", "cli", "inject-*.cmd"))
	if err != nil || len(cmds) < 10 {
		t.Fatalf("CLI goldens: %d, %v", len(cmds), err)
	}
	groups := map[string][]Input{}
	seen := map[string]bool{}
	for _, cmd := range cmds {
		dir, pods := cliPods(t, root, cmd)
		for _, in := range pods {
			if key := dir + string(in.Raw) + fmt.Sprint(in.Labels); !seen[key] {
				seen[key] = true
				groups[dir] = append(groups[dir], in)
			}
		}
	}
	groups[""] = append(out, groups[""]...)
	return groups
}

// HostileValues are Pods whose parameter and override annotations hold
// values an attacker or a careless author would write, at the edges of
// each type's check and normal form: both sides must agree on each.
func HostileValues(t testing.TB) []Input {
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
	out := BigPods(t)
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
			out = append(out, Input{fmt.Sprintf("%s=%.40q", key, value), raw, nil})
		}
	}
	return out
}

// BigPods cost the most to evaluate: 20 containers of 100 env vars each
// (50 of 200 exceed the webhook's budget of JSON values, which counts the
// managedFields the API server sends too), 150 app containers that each
// get the template's mount and env, an inject list of 128 long unknown
// names, the Pods over the policies' size guards, and the Pods that hold
// what a template adds themselves.
func BigPods(t testing.TB) []Input {
	var out []Input
	for _, p := range slices.Concat(largePods(), ownEnvPods(), ownVolumePods()) {
		raw, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, Input{p.Name, raw, nil})
	}
	return out
}

func largePods() []*corev1.Pod {
	heavy := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "heavy", Annotations: map[string]string{inject.InjectAnnotation: "log-shipper, content-filler"}},
		Spec: corev1.PodSpec{Containers: appContainers(20, 100)}}
	var names []string
	for i := range 128 {
		names = append(names, fmt.Sprintf("t%d-%s", i, strings.Repeat("x", 1000)))
	}
	long := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "long", Annotations: map[string]string{inject.InjectAnnotation: strings.Join(names, ",")}},
		Spec: corev1.PodSpec{Containers: appContainers(1, 0)}}
	return []*corev1.Pod{
		heavy,
		{ObjectMeta: metav1.ObjectMeta{Name: "wide", Annotations: map[string]string{inject.InjectAnnotation: "log-shipper"}},
			Spec: corev1.PodSpec{Containers: appContainers(150, 0)}},
		long,
		// Over the webhook's budget of JSON values: both deny it. Over
		// what the policies evaluate in bounded time: they decline it.
		{ObjectMeta: metav1.ObjectMeta{Name: "env-20000", Annotations: map[string]string{inject.InjectAnnotation: "log-shipper"}},
			Spec: corev1.PodSpec{Containers: appContainers(1, 20000)}},
		{ObjectMeta: metav1.ObjectMeta{Name: "widest", Annotations: map[string]string{inject.InjectAnnotation: "log-shipper, ambassador, metrics-adapter, content-filler", "ambassador.sidecars.podpatterns.io/upstream": "redis:6379"}},
			Spec: corev1.PodSpec{Containers: appContainers(706, 0)}},
	}
}

// appContainers are n app containers of env env vars each.
func appContainers(n, env int) []corev1.Container {
	out := make([]corev1.Container, n)
	for i := range out {
		out[i] = corev1.Container{Name: fmt.Sprintf("app-%d", i), Image: "registry.example.com/app:1.0.0"}
		for j := range env {
			out[i].Env = append(out[i].Env, corev1.EnvVar{Name: fmt.Sprintf("VAR_%d", j), Value: fmt.Sprintf("value-%d-%d", i, j)})
		}
	}
	return out
}

// ownEnvPods set a template's env name in an app container themselves:
// the app keeps its value, which the status then holds a copy of.
func ownEnvPods() []*corev1.Pod {
	var out []*corev1.Pod
	for i, env := range [][]corev1.EnvVar{
		{{Name: "LOG_DIR", Value: "/srv/logs"}},
		{{Name: "LOG_DIR", Value: `quote " back \ <tag> & amp`}},
		{{Name: "LOG_DIR"}},
		{{Name: "LOG_DIR", Value: "a"}, {Name: "OTHER", Value: "b"}, {Name: "LOG_DIR", Value: "twice"}},
		{{Name: "LOG_DIR", Value: "line\nbreak"}},
		{{Name: "LOG_DIR", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
	} {
		out = append(out, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("own-env-%d", i), Annotations: map[string]string{inject.InjectAnnotation: "log-shipper, content-filler"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{
				{Name: "app", Image: "registry.example.com/app:1.0.0", Env: env},
				{Name: "other", Image: "registry.example.com/other:1.0.0"},
			}}})
	}
	return out
}

// ownVolumePods have a volume under the template's volume's name: reused
// only when it is the very same.
func ownVolumePods() []*corev1.Pod {
	var out []*corev1.Pod
	for i, source := range []corev1.VolumeSource{
		{EmptyDir: &corev1.EmptyDirVolumeSource{}},
		{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}},
		{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: new(resource.MustParse("1Gi"))}},
		{HostPath: &corev1.HostPathVolumeSource{Path: "/etc"}},
	} {
		out = append(out, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("own-volume-%d", i), Annotations: map[string]string{inject.InjectAnnotation: "content-filler"}},
			Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "app", Image: "registry.example.com/app:1.0.0"}},
				Volumes:    []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}, {Name: "shared-content", VolumeSource: source}},
			}})
	}
	return out
}

// cliPods reads the Pods an inject golden's -f file holds, and the
// catalog directory it reads them with ("" for the default).
func cliPods(t testing.TB, root, cmd string) (string, []Input) {
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
	data, err := os.ReadFile(filepath.Join(root, "pkg", "cmd", file))
	if file == "" || file == "-" || err != nil {
		return dir, nil
	}
	docs, err := manifest.Split(bytes.NewReader(data))
	if err != nil {
		return dir, nil // the broken-input goldens
	}
	var out []Input
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
			out = append(out, Input{fmt.Sprintf("%s: %s", strings.TrimSuffix(filepath.Base(cmd), ".cmd"), p.Name), raw, labels})
		}
	}
	return dir, out
}
