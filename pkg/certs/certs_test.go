package certs

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

func TestWriteAndRotate(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	o := Options{Service: "sidecar-injector", Namespace: "sidecar-injector", Hosts: []string{"127.0.0.1"}, Validity: 24 * time.Hour, Now: now}
	first, err := Write(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	if first.CAReused {
		t.Error("first run claims to reuse a CA")
	}
	leaf := loadLeaf(t, dir)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(first.CAPEM)
	for _, name := range []string{"sidecar-injector.sidecar-injector.svc", "sidecar-injector.sidecar-injector.svc.cluster.local", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool, CurrentTime: now.Add(time.Hour)}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if info, _ := os.Stat(filepath.Join(dir, ServerKey)); info.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v", info.Mode().Perm())
	}

	o.Now = now.Add(12 * time.Hour)
	second, err := Write(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	if !second.CAReused || string(second.CAPEM) != string(first.CAPEM) {
		t.Error("rotation before expiry changed the CA; the webhook's caBundle would break")
	}
	if loadLeaf(t, dir).SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Error("rotation kept the old serving certificate")
	}
}

func loadLeaf(t *testing.T, dir string) *x509.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, ServerCert), filepath.Join(dir, ServerKey))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

func TestSetCABundleKeepsThePatchMinimal(t *testing.T) {
	in, err := os.ReadFile("../../deploy/overlays/self-signed/webhook-ca.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := SetCABundle(in, []byte("PEM"))
	if err != nil {
		t.Fatal(err)
	}
	var obj struct {
		Webhooks []map[string]any
	}
	if err := yaml.Unmarshal(out, &obj); err != nil {
		t.Fatal(err)
	}
	want := base64.StdEncoding.EncodeToString([]byte("PEM"))
	if got := obj.Webhooks[0]["clientConfig"].(map[string]any)["caBundle"]; got != want {
		t.Errorf("caBundle %v, want %s", got, want)
	}
	if len(obj.Webhooks[0]) != 2 || strings.Contains(string(out), "null") {
		t.Errorf("the patch grew fields a merge would apply:\n%s", out)
	}
	if _, err := SetCABundle([]byte("kind: ConfigMap\n"), nil); err == nil {
		t.Error("a ConfigMap was accepted")
	}
}
