package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/podpatterns/sidecar-injector/test/cluster"
)

// kube-state-metrics series the alerts use; everything else must be one
// the webhook or the controller exports.
var external = map[string]bool{
	"kube_poddisruptionbudget_status_current_healthy": true,
	"kube_poddisruptionbudget_status_desired_healthy": true,
}

// The monitoring component decodes strictly into the Prometheus
// Operator's types, its rules parse with Prometheus' own parser, every
// metric its rules and dashboard use is one the real webhook and
// controller export, and every alert has its runbook section.
func TestMonitoringMatchesWhatIsExported(t *testing.T) {
	dir := t.TempDir()
	rel := func(to ...string) string { // kustomize takes no absolute paths
		r, err := filepath.Rel(dir, filepath.Join(append([]string{suite.root}, to...)...))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	kustomization := fmt.Sprintf("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [%s]\ncomponents: [%s]\n",
		rel("deploy", "base"), rel("deploy", "monitoring"))
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kustomization), 0o644); err != nil {
		t.Fatal(err)
	}
	objs, err := cluster.Render(dir)
	if err != nil {
		t.Fatal(err)
	}
	var exprs []string
	var alerts []monitoringv1.Rule
	podMonitors, dashboards := 0, 0
	for _, o := range objs {
		switch o.GetKind() {
		case "PodMonitor":
			strict(t, o, &monitoringv1.PodMonitor{})
			podMonitors++
		case "PrometheusRule":
			rule := &monitoringv1.PrometheusRule{}
			strict(t, o, rule)
			groups, _ := yaml.Marshal(map[string]any{"groups": rule.Spec.Groups})
			if _, errs := rulefmt.Parse(groups, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.Default()); len(errs) > 0 {
				t.Errorf("PrometheusRule %s: %v", o.GetName(), errs)
			}
			for _, g := range rule.Spec.Groups {
				for _, r := range g.Rules {
					exprs = append(exprs, r.Expr.String())
					if r.Alert != "" {
						alerts = append(alerts, r)
					}
				}
			}
		case "ConfigMap":
			data, _, _ := unstructured.NestedStringMap(o.Object, "data")
			if o.GetLabels()["grafana_dashboard"] != "1" {
				continue
			}
			dashboards++
			var dash struct {
				Panels []struct {
					Title   string
					Targets []struct{ Expr string }
				}
			}
			if err := json.Unmarshal([]byte(data["sidecar-injector.json"]), &dash); err != nil || len(dash.Panels) == 0 {
				t.Fatalf("dashboard: %v", err)
			}
			for _, p := range dash.Panels {
				for _, target := range p.Targets {
					exprs = append(exprs, target.Expr)
				}
			}
		}
	}
	if podMonitors != 2 || dashboards != 1 || len(alerts) < 7 {
		t.Fatalf("rendered %d PodMonitors, %d dashboards, %d alerts; want 2, 1 and at least 7", podMonitors, dashboards, len(alerts))
	}

	exported, err := scrapeNames(suite.webhook.MetricsURL())
	if err != nil {
		t.Fatal(err)
	}
	// A Pod in scope, so the controller's per-Pod gauge has a series.
	ns := namespace(t, "e2e-monitoring", optIn)
	if _, err := create(t, ns, nginxPod("web", "content-filler")); err != nil {
		t.Fatal(err)
	}
	controller, _ := startController(t, "--leader-elect=false")
	var fromController map[string]bool
	eventually(t, "the controller's first pass", func() bool {
		fromController, err = scrapeNames("http://" + controller + "/metrics")
		return err == nil && fromController["sidecar_injector_pods"]
	})
	for name := range fromController {
		exported[name] = true
	}
	for _, e := range exprs {
		expr, err := parser.NewParser(parser.Options{}).ParseExpr(e)
		if err != nil {
			t.Errorf("%q does not parse: %v", e, err)
			continue
		}
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok && !exported[vs.Name] && !external[vs.Name] {
				t.Errorf("%q uses %s, which neither the webhook nor the controller exports", e, vs.Name)
			}
			return nil
		})
	}

	runbook, err := os.ReadFile(filepath.Join(suite.root, "docs", "runbook.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range alerts {
		if !bytes.Contains(runbook, []byte("\n## "+a.Alert+"\n")) {
			t.Errorf("docs/runbook.md has no section %q", a.Alert)
		}
		want := "docs/runbook.md#" + strings.ToLower(a.Alert)
		if !strings.HasSuffix(a.Annotations["runbook_url"], want) || a.Annotations["summary"] == "" || a.Annotations["description"] == "" {
			t.Errorf("alert %s: runbook_url %q (want it to end in %s), summary and description must be set", a.Alert, a.Annotations["runbook_url"], want)
		}
	}
}

// strict decodes a rendered object into its Go type, refusing unknown
// fields.
func strict(t *testing.T, o *unstructured.Unstructured, into any) {
	t.Helper()
	data, err := o.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		t.Errorf("%s %s does not fit the Prometheus Operator's type: %v", o.GetKind(), o.GetName(), err)
	}
}

var sampleName = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)`)

// scrapeNames lists the metric names an endpoint exports, with the
// _bucket, _sum and _count series of histograms.
func scrapeNames(url string) (map[string]bool, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if line := sc.Text(); !strings.HasPrefix(line, "#") {
			if m := sampleName.FindString(line); m != "" {
				names[m] = true
			}
		}
	}
	return names, sc.Err()
}
