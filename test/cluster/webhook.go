package cluster

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/certs"
	"github.com/podpatterns/sidecar-injector/pkg/statuskey"
)

// Webhook is a running `sidecar-injector serve` process.
type Webhook struct {
	Port, HealthPort, MetricsPort int
	CertDir                       string
	cmd                           *exec.Cmd
	done                          chan error
}

// URL is where the API server reaches the webhook.
func (w *Webhook) URL() string { return fmt.Sprintf("https://127.0.0.1:%d/mutate-pods", w.Port) }

// MetricsURL serves Prometheus metrics.
func (w *Webhook) MetricsURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d/metrics", w.MetricsPort)
}

// StartWebhook runs binary serve with a fresh certificate for 127.0.0.1 in
// certDir (reused, so the caBundle stays valid across restarts) and waits
// until /readyz answers. args are added to the serve flags.
func StartWebhook(ctx context.Context, binary, certDir, kubeconfig string, logs io.Writer, args ...string) (*Webhook, error) {
	if _, err := certs.Write(certDir, certs.Options{Hosts: []string{"127.0.0.1", "localhost"}, Validity: 24 * time.Hour}); err != nil {
		return nil, err
	}
	w := &Webhook{CertDir: certDir, done: make(chan error, 1)}
	ports, err := FreePorts(3)
	if err != nil {
		return nil, err
	}
	w.Port, w.HealthPort, w.MetricsPort = ports[0], ports[1], ports[2]
	w.cmd = exec.Command(binary, append([]string{"serve",
		"--cert-dir", certDir,
		"--port", strconv.Itoa(w.Port),
		"--health-addr", fmt.Sprintf("127.0.0.1:%d", w.HealthPort),
		"--metrics-addr", fmt.Sprintf("127.0.0.1:%d", w.MetricsPort),
		"--kubeconfig", kubeconfig,
		"--shutdown-grace", "10s",
		"--log-level", "debug",
	}, args...)...)
	w.cmd.Stdout, w.cmd.Stderr = logs, logs
	if err := w.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { w.done <- w.cmd.Wait() }()
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = WaitFor(waitCtx, "the webhook to be ready", func() bool {
		select {
		case err := <-w.done:
			w.done <- err
			return true
		default:
		}
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", w.HealthPort))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	select {
	case exitErr := <-w.done:
		return nil, fmt.Errorf("sidecar-injector serve exited: %v", exitErr)
	default:
	}
	if err != nil {
		w.Stop()
		return nil, err
	}
	return w, nil
}

// Stop sends SIGTERM and waits for a clean exit.
func (w *Webhook) Stop() error {
	if w.cmd.Process == nil {
		return nil
	}
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-w.done:
		w.done <- err
		return err
	case <-time.After(15 * time.Second):
		_ = w.cmd.Process.Kill()
		return fmt.Errorf("sidecar-injector serve did not exit within 15s of SIGTERM")
	}
}

// WebhookConfig returns the MutatingWebhookConfiguration of the rendered
// manifests with its client config pointed at url and trusting caPEM, as
// envtest's webhook install does; nothing else changes.
func WebhookConfig(objs []*unstructured.Unstructured, url string, caPEM []byte) (*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	for _, u := range objs {
		if u.GetKind() != "MutatingWebhookConfiguration" {
			continue
		}
		cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, cfg); err != nil {
			return nil, err
		}
		for i := range cfg.Webhooks {
			cfg.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caPEM}
		}
		return cfg, nil
	}
	return nil, fmt.Errorf("no MutatingWebhookConfiguration among %d rendered objects", len(objs))
}

// InstallWebhook creates or replaces cfg.
func (c *Cluster) InstallWebhook(ctx context.Context, cfg *admissionregistrationv1.MutatingWebhookConfiguration) error {
	api := c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	existing, err := api.Get(ctx, cfg.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = api.Create(ctx, cfg, metav1.CreateOptions{})
	case err == nil:
		cfg.ResourceVersion = existing.ResourceVersion
		_, err = api.Update(ctx, cfg, metav1.UpdateOptions{})
	}
	return err
}

// CAPEM reads the CA of a webhook's certificate directory.
func CAPEM(certDir string) ([]byte, error) {
	return os.ReadFile(filepath.Join(certDir, certs.CACert))
}

// InstallDeployWebhook installs deploy/base's webhook configuration, from
// the repository at root, pointed at w and trusting w's CA.
func (c *Cluster) InstallDeployWebhook(ctx context.Context, root string, w *Webhook) error {
	objs, err := Render(filepath.Join(root, "deploy", "base"))
	if err != nil {
		return err
	}
	ca, err := CAPEM(w.CertDir)
	if err != nil {
		return err
	}
	cfg, err := WebhookConfig(objs, w.URL(), ca)
	if err != nil {
		return err
	}
	return c.InstallWebhook(ctx, cfg)
}

// StatusKey makes dir hold a status key (see package statuskey) unless it
// does already, and returns the flag that gives it to serve and
// controller.
func StatusKey(dir string) ([]string, error) {
	if _, err := statuskey.Write(dir); err != nil {
		return nil, err
	}
	return []string{"--status-key-dir", dir}, nil
}

// InstallStatusKey creates the Secret of the status key in dir, in the
// injector's namespace, as the chart and `make deploy` do: live audit
// reads it.
func (c *Cluster) InstallStatusKey(ctx context.Context, dir string) error {
	key, err := os.ReadFile(filepath.Join(dir, statuskey.Current))
	if err != nil {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: catalog.ConfigMapNamespace}}
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: statuskey.SecretName, Namespace: ns.Name}, Data: map[string][]byte{statuskey.Current: key}}
	_, err = c.Client.CoreV1().Secrets(secret.Namespace).Create(ctx, secret, metav1.CreateOptions{})
	return err
}
