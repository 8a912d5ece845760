// Package e2e proves the webhook against a real kube-apiserver, etcd and
// kube-controller-manager, with the sidecar-injector binary serving and
// the MutatingWebhookConfiguration taken from deploy/.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/pkg/statuskey"
	"github.com/podpatterns/sidecar-injector/test/cluster"
)

// suite is the shared state of the run.
var suite struct {
	root       string
	cluster    *cluster.Cluster
	webhook    *cluster.Webhook
	binary     string
	catalogDir string
	keyDir     string       // the webhook's status keys
	keys       *inject.Keys // read from keyDir
	logs       *os.File
	warnings   *warningRecorder
	client     kubernetes.Interface // records admission warnings
}

// policies are added to the default catalog for the policy tests.
const policies = `apiVersion: sidecars.podpatterns.io/v1alpha1
kind: Catalog
policies:
- name: team-a
  namespaceSelector: {matchLabels: {team: a}}
  allowed: [log-shipper, content-filler]
  defaults: [log-shipper]
- name: prod
  namespaceSelector: {matchLabels: {env: prod}}
  allowed: [log-shipper, content-filler]
  required: [log-shipper]
`

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		if suite.logs != nil {
			fmt.Fprintln(os.Stderr, "control plane and webhook logs:", suite.logs.Name())
		}
		code = 1
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	var err error
	if suite.root, err = cluster.RepoRoot(); err != nil {
		return 1, err
	}
	tmp, err := os.MkdirTemp("", "sidecar-injector-e2e-")
	if err != nil {
		return 1, err
	}
	defer os.RemoveAll(tmp)
	if suite.logs, err = os.Create(filepath.Join(os.TempDir(), "sidecar-injector-e2e.log")); err != nil {
		return 1, err
	}
	suite.binary = filepath.Join(tmp, "sidecar-injector")
	build := exec.Command("go", "build", "-o", suite.binary, "./cmd/sidecar-injector")
	build.Dir, build.Stdout, build.Stderr = suite.root, os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return 1, fmt.Errorf("building the binary: %w", err)
	}
	suite.catalogDir = filepath.Join(tmp, "catalog")
	if err := writeCatalog(catalog.DefaultYAML()); err != nil {
		return 1, err
	}
	if err := os.WriteFile(filepath.Join(suite.catalogDir, "policies.yaml"), []byte(policies), 0o644); err != nil {
		return 1, err
	}

	start := time.Now()
	// The admission chain of a hardened cluster: LimitRanger and
	// ResourceQuota are on by default, AlwaysPullImages as the CIS
	// benchmark recommends.
	if suite.cluster, err = cluster.Start(suite.logs, "enable-admission-plugins=AlwaysPullImages,LimitRanger,ResourceQuota"); err != nil {
		return 1, err
	}
	defer suite.cluster.Stop()
	fmt.Fprintf(os.Stderr, "e2e: control plane up in %s\n", time.Since(start).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := dryRunBase(ctx); err != nil {
		return 1, err
	}
	suite.keyDir = filepath.Join(tmp, "status-key")
	keyFlags, err := cluster.StatusKey(suite.keyDir)
	if err != nil {
		return 1, err
	}
	if suite.keys, err = statuskey.Read(suite.keyDir); err != nil {
		return 1, err
	}
	if err := suite.cluster.InstallStatusKey(ctx, suite.keyDir); err != nil {
		return 1, err
	}
	if suite.webhook, err = cluster.StartWebhook(ctx, suite.binary, filepath.Join(tmp, "tls"), suite.cluster.Kubeconfig, suite.logs, append(keyFlags, "--catalog", suite.catalogDir)...); err != nil {
		return 1, err
	}
	defer func() { _ = suite.webhook.Stop() }()
	if err := suite.cluster.InstallDeployWebhook(ctx, suite.root, suite.webhook); err != nil {
		return 1, err
	}

	cfg := rest.CopyConfig(suite.cluster.Config)
	suite.warnings = &warningRecorder{}
	cfg.WarningHandler = suite.warnings
	if suite.client, err = kubernetes.NewForConfig(cfg); err != nil {
		return 1, err
	}
	if err := waitUntilWebhookActive(ctx); err != nil {
		return 1, err
	}
	return m.Run(), nil
}

// writeCatalog replaces catalog.yaml in the served catalog directory.
func writeCatalog(data []byte) error {
	if err := os.MkdirAll(suite.catalogDir, 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(suite.catalogDir, ".catalog.yaml.tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(suite.catalogDir, "catalog.yaml"))
}

// dryRunBase creates every manifest of deploy/base with a server-side dry
// run (the namespace for real, so namespaced objects can be checked), so
// each one is proven valid against this API server.
func dryRunBase(ctx context.Context) error {
	objs, err := cluster.Render(filepath.Join(suite.root, "deploy", "base"))
	if err != nil {
		return err
	}
	c, err := client.New(suite.cluster.Config, client.Options{})
	if err != nil {
		return err
	}
	for _, o := range objs {
		if o.GetKind() == "Namespace" {
			if err := c.Create(ctx, o.DeepCopy()); err != nil {
				return fmt.Errorf("creating %s %s: %w", o.GetKind(), o.GetName(), err)
			}
		}
	}
	for _, o := range objs {
		if o.GetKind() == "Namespace" {
			continue // created for real above
		}
		if err := c.Create(ctx, o.DeepCopy(), client.DryRunAll); err != nil {
			return fmt.Errorf("deploy/base: %s %s is refused by the API server: %w", o.GetKind(), o.GetName(), err)
		}
	}
	fmt.Fprintf(os.Stderr, "e2e: %d manifests of deploy/base pass a server-side dry run\n", len(objs))
	return nil
}

// waitUntilWebhookActive: the API server picks up a new webhook
// configuration asynchronously.
func waitUntilWebhookActive(ctx context.Context) error {
	ns := "e2e-warmup"
	if err := createNamespace(ctx, ns, map[string]string{"sidecars.podpatterns.io/injection": "enabled"}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	i := 0
	return cluster.WaitFor(ctx, "the webhook configuration to take effect", func() bool {
		i++
		pod := nginxPod(fmt.Sprintf("warmup-%d", i), "content-filler")
		got, err := suite.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil && len(got.Spec.Containers) == 2
	})
}

func createNamespace(ctx context.Context, name string, labels map[string]string) error {
	_, err := suite.cluster.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	return err
}
