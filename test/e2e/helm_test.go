package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/manifest"
	"github.com/podpatterns/sidecar-injector/pkg/statuskey"
	"github.com/podpatterns/sidecar-injector/test/cluster"
)

func chartDir() string { return filepath.Join(suite.root, "deploy", "helm", "sidecar-injector") }

// renderChart is `helm template` of the chart with values, into the
// sidecar-injector namespace, through Helm's own libraries.
func renderChart(t *testing.T, values map[string]any) []*unstructured.Unstructured {
	t.Helper()
	return renderChartIn(t, values, "sidecar-injector", false)
}

// renderChartIn renders into namespace; live, it reads the cluster as
// `helm upgrade` does (its lookup calls see what is installed).
func renderChartIn(t *testing.T, values map[string]any, namespace string, live bool) []*unstructured.Unstructured {
	t.Helper()
	ch, err := loader.Load(chartDir())
	if err != nil {
		t.Fatal(err)
	}
	vals, err := chartutil.ToRenderValues(ch, values, chartutil.ReleaseOptions{Name: "sidecar-injector", Namespace: namespace, IsInstall: !live, IsUpgrade: live}, chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatalf("values: %v", err)
	}
	render := func() (map[string]string, error) { return engine.Render(ch, vals) }
	if live {
		render = func() (map[string]string, error) { return engine.RenderWithClient(ch, vals, suite.cluster.Config) }
	}
	files, err := render()
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	var names []string
	for name := range files {
		if strings.HasSuffix(name, ".yaml") {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var objs []*unstructured.Unstructured
	for _, name := range names {
		docs, err := manifest.Split(strings.NewReader(files[name]))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, d := range docs {
			u := &unstructured.Unstructured{}
			if err := u.UnmarshalJSON(d.JSON); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			objs = append(objs, u)
		}
	}
	return objs
}

var certModes = map[string]map[string]any{
	"generated at install":    {},
	"from cert-manager":       {"certificates": map[string]any{"mode": "certManager"}},
	"from an existing Secret": {"certificates": map[string]any{"mode": "secret", "secret": map[string]any{"name": "my-tls", "caBundle": "Y2E="}}},
	"with everything on":      {"namespace": map[string]any{"create": true}, "monitoring": map[string]any{"enabled": true}, "metrics": map[string]any{"serviceMonitor": map[string]any{"enabled": true}}},
}

// helm lint and helm template pass with the default values and each
// certificate mode; a typo in values fails with the schema's message.
func TestChartLintsAndRenders(t *testing.T) {
	for name, values := range certModes {
		t.Run(name, func(t *testing.T) {
			l := lint.All(chartDir(), values, "sidecar-injector", false)
			for _, m := range l.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("lint: %s", m)
				}
			}
			if objs := renderChart(t, values); len(objs) < 10 {
				t.Errorf("rendered %d objects", len(objs))
			}
		})
	}
	ch, err := loader.Load(chartDir())
	if err != nil {
		t.Fatal(err)
	}
	_, err = chartutil.ToRenderValues(ch, map[string]any{"webhook": map[string]any{"failurPolicy": "Ignore"}}, chartutil.ReleaseOptions{Name: "x", Namespace: "x"}, chartutil.DefaultCapabilities)
	if err == nil || !strings.Contains(err.Error(), "failurPolicy") {
		t.Errorf("a typo in values: %v, want the schema to name it", err)
	}
	copied, _ := os.ReadFile(filepath.Join(chartDir(), "files", "catalog.yaml"))
	if !bytes.Equal(copied, catalog.DefaultYAML()) {
		t.Error("deploy/helm/sidecar-injector/files/catalog.yaml differs from pkg/catalog/default.yaml: copy it over")
	}
	dashboard, _ := os.ReadFile(filepath.Join(chartDir(), "files", "dashboard.json"))
	if want, _ := os.ReadFile(filepath.Join(suite.root, "deploy", "monitoring", "dashboard.json")); !bytes.Equal(dashboard, want) {
		t.Error("deploy/helm/sidecar-injector/files/dashboard.json differs from deploy/monitoring/dashboard.json: copy it over")
	}
	// cert-manager's objects fit its types (this API server lacks its CRDs).
	kinds := 0
	for _, o := range renderChart(t, certModes["from cert-manager"]) {
		switch o.GetKind() {
		case "Issuer":
			strict(t, o, &cmv1.Issuer{})
			kinds++
		case "Certificate":
			strict(t, o, &cmv1.Certificate{})
			kinds++
		}
	}
	if kinds != 2 {
		t.Errorf("certManager mode rendered %d Issuers and Certificates, want one of each", kinds)
	}
	// The monitoring objects fit the Prometheus Operator's types, and the
	// alerts are deploy/monitoring's.
	monitoring := map[string]any{"monitoring": map[string]any{"enabled": true}, "metrics": map[string]any{"serviceMonitor": map[string]any{"enabled": true}}}
	var rules []any
	for _, o := range renderChart(t, monitoring) {
		switch o.GetKind() {
		case "PodMonitor":
			strict(t, o, &monitoringv1.PodMonitor{})
		case "ServiceMonitor":
			strict(t, o, &monitoringv1.ServiceMonitor{})
		case "PrometheusRule":
			strict(t, o, &monitoringv1.PrometheusRule{})
			rules, _, _ = unstructured.NestedSlice(o.Object, "spec", "groups")
		}
	}
	alerts, err := os.ReadFile(filepath.Join(suite.root, "deploy", "monitoring", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	docs, _ := manifest.Split(bytes.NewReader(alerts))
	want := &unstructured.Unstructured{}
	if err := want.UnmarshalJSON(docs[0].JSON); err != nil {
		t.Fatal(err)
	}
	wantRules, _, _ := unstructured.NestedSlice(want.Object, "spec", "groups")
	if !reflect.DeepEqual(rules, wantRules) {
		t.Error("the chart's alerts differ from deploy/monitoring/alerts.yaml")
	}
}

// The chart and kustomize install the same things: the same kinds and
// names, and field for field the webhook, RBAC, selectors, probes,
// resources and security contexts; in webhook mode as deploy/base, in
// policy mode as deploy/overlays/policy.
func TestChartMatchesKustomize(t *testing.T) {
	for mode, dir := range map[string]string{"webhook": "base", "policy": filepath.Join("overlays", "policy")} {
		t.Run(mode, func(t *testing.T) {
			base, err := cluster.Render(filepath.Join(suite.root, "deploy", dir))
			if err != nil {
				t.Fatal(err)
			}
			chart := renderChart(t, map[string]any{"namespace": map[string]any{"create": true}, "mode": mode})
			sameObjects(t, base, chart)
			ctrl := func(objs []*unstructured.Unstructured) bool {
				for _, o := range objs {
					if o.GetKind() == "Deployment" && o.GetName() == "sidecar-injector-controller" {
						cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
						args, _, _ := unstructured.NestedStringSlice(cs[0].(map[string]any), "args")
						return slices.Contains(args, "--admission-policies")
					}
				}
				return false
			}
			if ctrl(base) != (mode == "policy") || ctrl(chart) != (mode == "policy") {
				t.Errorf("--admission-policies: kustomize %v, chart %v; want it in policy mode only", ctrl(base), ctrl(chart))
			}
		})
	}
}

func sameObjects(t *testing.T, base, chart []*unstructured.Unstructured) {
	key := func(o *unstructured.Unstructured) string {
		return o.GetKind() + "/" + o.GetNamespace() + "/" + o.GetName()
	}
	index := func(objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
		m := map[string]*unstructured.Unstructured{}
		for _, o := range objs {
			m[key(o)] = o
		}
		return m
	}
	fromBase, fromChart := index(base), index(chart)
	for k := range fromBase {
		if fromChart[k] == nil {
			t.Errorf("the chart lacks %s", k)
		}
	}
	for k := range fromChart {
		if fromBase[k] == nil && !strings.HasPrefix(k, "Secret/") { // the generated certificate
			t.Errorf("the chart has %s, which deploy/base lacks", k)
		}
	}
	same := func(k string, path ...string) {
		b, c := fromBase[k], fromChart[k]
		if b == nil || c == nil {
			return
		}
		bv, _, _ := unstructured.NestedFieldNoCopy(b.Object, path...)
		cv, _, _ := unstructured.NestedFieldNoCopy(c.Object, path...)
		if !reflect.DeepEqual(bv, cv) {
			bj, _ := json.Marshal(bv)
			cj, _ := json.Marshal(cv)
			t.Errorf("%s %s differs:\n  deploy/base %s\n  chart       %s", k, strings.Join(path, "."), bj, cj)
		}
	}
	same("Namespace//sidecar-injector", "metadata", "labels", "sidecars.podpatterns.io/injection")
	same("Namespace//sidecar-injector", "metadata", "labels", "pod-security.kubernetes.io/enforce")
	for _, role := range []string{"ClusterRole//sidecar-injector", "ClusterRole//sidecar-injector-controller", "Role/sidecar-injector/sidecar-injector-controller", "ClusterRole//sidecar-injector-controller-policies"} {
		same(role, "rules")
	}
	for _, field := range []string{"rules", "namespaceSelector", "failurePolicy", "sideEffects", "timeoutSeconds", "reinvocationPolicy", "admissionReviewVersions", "matchPolicy", "objectSelector"} {
		webhook := func(o *unstructured.Unstructured) any {
			hooks, _, _ := unstructured.NestedSlice(o.Object, "webhooks")
			return hooks[0].(map[string]any)[field]
		}
		if b, c := fromBase["MutatingWebhookConfiguration//sidecar-injector"], fromChart["MutatingWebhookConfiguration//sidecar-injector"]; b != nil && c != nil && !reflect.DeepEqual(webhook(b), webhook(c)) {
			t.Errorf("webhook %s differs: deploy/base %v, chart %v", field, webhook(b), webhook(c))
		}
	}
	for _, d := range []string{"Deployment/sidecar-injector/sidecar-injector", "Deployment/sidecar-injector/sidecar-injector-controller"} {
		same(d, "spec", "selector")
		same(d, "spec", "template", "metadata", "labels")
		same(d, "spec", "template", "spec", "securityContext")
		same(d, "spec", "template", "spec", "serviceAccountName")
		same(d, "spec", "template", "spec", "volumes")
		for _, f := range []string{"ports", "readinessProbe", "livenessProbe", "resources", "securityContext", "volumeMounts"} {
			containerField := func(o *unstructured.Unstructured) any {
				cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
				return cs[0].(map[string]any)[f]
			}
			if b, c := fromBase[d], fromChart[d]; b != nil && c != nil && !reflect.DeepEqual(containerField(b), containerField(c)) {
				t.Errorf("%s container %s differs: deploy/base %v, chart %v", d, f, containerField(b), containerField(c))
			}
		}
	}
	same("PodDisruptionBudget/sidecar-injector/sidecar-injector", "spec")
	same("Service/sidecar-injector/sidecar-injector", "spec")
	same("ConfigMap/sidecar-injector/sidecar-injector-catalog", "data")
}

// Every object the chart renders is accepted by the API server (a server
// side dry run; the Prometheus Operator's and cert-manager's, whose CRDs
// this API server lacks, are decoded strictly into their projects' Go
// types by TestChartLintsAndRenders instead),
// and the webhook configuration it renders makes the API server inject.
func TestChartInstallsAndInjects(t *testing.T) {
	c, err := client.New(suite.cluster.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	objs := renderChart(t, map[string]any{})
	for _, o := range objs {
		if strings.HasSuffix(o.GetAPIVersion(), "coreos.com/v1") || strings.HasPrefix(o.GetAPIVersion(), "cert-manager.io/") {
			continue
		}
		o = o.DeepCopy()
		if o.GetNamespace() == "" || o.GetName() == statuskey.SecretName { // names the suite holds already
			o.SetName(o.GetName() + "-chart")
		}
		if err := c.Create(ctxFor(t), o, client.DryRunAll); err != nil {
			t.Errorf("%s %s is refused by the API server: %v", o.GetKind(), o.GetName(), err)
		}
	}

	// The chart's webhook configuration, pointed at the running webhook,
	// in place of deploy/base's for the length of the test.
	api := suite.cluster.Client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	saved, err := api.Get(ctxFor(t), "sidecar-injector", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := cluster.CAPEM(suite.webhook.CertDir)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := cluster.WebhookConfig(objs, suite.webhook.URL(), ca)
	if err != nil {
		t.Fatal(err)
	}
	if err := suite.cluster.InstallWebhook(ctxFor(t), cfg); err != nil {
		t.Fatal(err)
	}
	defer func() {
		restored := saved.DeepCopy()
		restored.ResourceVersion = ""
		if err := suite.cluster.InstallWebhook(context.Background(), restored); err != nil {
			t.Errorf("restoring deploy/base's webhook: %v", err)
		}
	}()
	ns := namespace(t, "e2e-chart", optIn)
	i := 0
	eventually(t, "the chart's webhook configuration to inject", func() bool {
		i++
		p, err := create(t, ns, nginxPod(fmt.Sprintf("web-%d", i), "content-filler"))
		if err != nil {
			return false
		}
		got := stored(t, ns, p.Name)
		return slices.Contains(containerNames(got.Spec.Containers), "content-filler")
	})
	got, _ := api.Get(ctxFor(t), "sidecar-injector", metav1.GetOptions{})
	if got.Labels["helm.sh/chart"] == "" {
		t.Errorf("the configuration in force is not the chart's: labels %v", got.Labels)
	}
}

// An upgrade keeps the CA the install generated: the webhook's caBundle
// is the one in the Secret, so running API servers keep trusting it. It
// keeps the status key too, so the Pods signed with it stay verifiable.
func TestChartUpgradeKeepsTheGeneratedCA(t *testing.T) {
	ns := namespace(t, "e2e-chart-upgrade", nil)
	secretOf := func(objs []*unstructured.Unstructured) (*unstructured.Unstructured, string) {
		var secret *unstructured.Unstructured
		var bundle string
		for _, o := range objs {
			switch o.GetKind() {
			case "Secret":
				if o.GetName() == "sidecar-injector-tls" {
					secret = o
				}
			case "MutatingWebhookConfiguration":
				hooks, _, _ := unstructured.NestedSlice(o.Object, "webhooks")
				bundle, _, _ = unstructured.NestedString(hooks[0].(map[string]any), "clientConfig", "caBundle")
			}
		}
		return secret, bundle
	}
	installed, bundle := secretOf(renderChartIn(t, map[string]any{}, ns, false))
	ca, _, _ := unstructured.NestedString(installed.Object, "data", "ca.crt")
	if ca == "" || bundle != ca {
		t.Fatalf("install: caBundle %.20q, Secret ca.crt %.20q; want the same CA", bundle, ca)
	}
	c, err := client.New(suite.cluster.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctxFor(t), installed); err != nil {
		t.Fatal(err)
	}
	keyOf := func(objs []*unstructured.Unstructured) string {
		key, _, _ := unstructured.NestedString(find(objs, "Secret", statuskey.SecretName).Object, "data", statuskey.Current)
		return key
	}
	firstKey := renderChartIn(t, map[string]any{}, ns, false)
	if err := c.Create(ctxFor(t), find(firstKey, "Secret", statuskey.SecretName)); err != nil {
		t.Fatal(err)
	}
	if key, again := keyOf(firstKey), keyOf(renderChartIn(t, map[string]any{}, ns, true)); len(key) < 64 || again != key {
		t.Errorf("upgrade changed the status key: installed %.8q..., upgraded %.8q...", key, again)
	}
	if fresh := keyOf(renderChartIn(t, map[string]any{}, ns, false)); fresh == keyOf(firstKey) {
		t.Error("a render without the cluster reused the status key; the check above proves nothing")
	}
	upgraded, bundle := secretOf(renderChartIn(t, map[string]any{}, ns, true))
	again, _, _ := unstructured.NestedString(upgraded.Object, "data", "ca.crt")
	if again != ca || bundle != ca {
		t.Errorf("upgrade rotated the CA: Secret %.20q, caBundle %.20q, installed %.20q", again, bundle, ca)
	}
	if fresh, _ := secretOf(renderChartIn(t, map[string]any{}, ns, false)); func() string { s, _, _ := unstructured.NestedString(fresh.Object, "data", "ca.crt"); return s }() == ca {
		t.Error("a render without the cluster reused the CA; the check above proves nothing")
	}
}
