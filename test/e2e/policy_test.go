package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/podpatterns/sidecar-injector/pkg/admissionpolicy"
	"github.com/podpatterns/sidecar-injector/pkg/admissionpolicy/policytest"
	"github.com/podpatterns/sidecar-injector/pkg/catalog"
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
	groups := policytest.Inputs(t, suite.root)
	counts := map[string]int{}
	total := 0
	var refused []admissionpolicy.Refusal
	for g, dir := range slices.Sorted(maps.Keys(groups)) {
		cat, served := policytest.CatalogFor(t, suite.root, dir)
		webhook, policies := fmt.Sprintf("webhook-%d", g), fmt.Sprintf("policy-%d", g)
		startDiffWebhook(t, ctx, served, webhook)
		compiled := admissionpolicy.Compile(cat, admissionpolicy.Options{Name: "sidecar-injector-" + policies, NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{modeLabel: policies}}})
		installPolicies(t, ctx, c, compiled, policies)
		refused = append(refused, compiled.Refused...)
		namespaces := map[string]string{}
		for _, in := range groups[dir] {
			key := fmt.Sprint(in.Labels)
			if namespaces[key] == "" {
				namespaces[key] = fmt.Sprintf("diff-%d-%d", g, len(namespaces))
				for _, mode := range []string{webhook, policies} {
					l := map[string]string{modeLabel: mode}
					for k, v := range in.Labels {
						l[k] = v
					}
					namespace(t, namespaces[key]+"-"+mode, l)
				}
			}
			outcome := compare(t, ctx, c, in, namespaces[key]+"-"+webhook, namespaces[key]+"-"+policies, cat)
			if testing.Verbose() {
				t.Logf("%s: %s", in.Name, outcome)
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

// compare creates one input in both namespaces and returns its outcome.
func compare(t *testing.T, ctx context.Context, c kubernetes.Interface, in policytest.Input, webhookNS, policyNS string, cat *catalog.Catalog) string {
	t.Helper()
	name := in.Name
	create := func(ns string) (*corev1.Pod, string) {
		pod := &corev1.Pod{}
		if err := json.Unmarshal(in.Raw, pod); err != nil {
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
	return policytest.Outcome(t, name, in.Raw, wpod, werr, ppod, perr, cat)
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
