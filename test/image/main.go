// Command image runs the sidecar-injector image the way the Deployment
// runs it: read-only root filesystem, user 65532, every capability
// dropped, no privilege escalation, the serving certificate mounted
// read-only. It sends a review and checks the patch, checks /healthz and
// /metrics, then stops the container. `make image-test` builds the image
// and runs this; it needs podman (and root).
package main

import (
	"bytes"
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
	"strconv"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/podpatterns/sidecar-injector/pkg/admission/admissiontest"
	"github.com/podpatterns/sidecar-injector/pkg/certs"
	"github.com/podpatterns/sidecar-injector/test/cluster"
)

func main() {
	image := flag.String("image", "", "image to run")
	flag.Parse()
	if err := run(*image); err != nil {
		fmt.Fprintln(os.Stderr, "image-test:", err)
		os.Exit(1)
	}
	fmt.Println("image-test: passed")
}

func run(image string) error {
	if image == "" {
		return errors.New("-image is required")
	}
	dir, err := os.MkdirTemp("", "sidecar-injector-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if _, err := certs.Write(dir, certs.Options{Hosts: []string{"127.0.0.1"}, Validity: time.Hour}); err != nil {
		return err
	}
	// The container runs as 65532; it must read the mounted key, as it
	// reads a Secret volume the kubelet mounts.
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	for _, f := range []string{certs.ServerCert, certs.ServerKey} {
		if err := os.Chmod(filepath.Join(dir, f), 0o644); err != nil {
			return err
		}
	}
	ports, err := cluster.FreePorts(3)
	if err != nil {
		return err
	}
	name := "sidecar-injector-image-test-" + strconv.Itoa(os.Getpid())
	cmd := exec.Command("podman", "run", "--rm", "--name", name, "--network", "host",
		"--read-only", "--user", "65532:65532", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
		"-v", dir+":/etc/sidecar-injector/tls:ro", image,
		"serve", "--cert-dir=/etc/sidecar-injector/tls",
		"--port="+strconv.Itoa(ports[0]),
		"--metrics-addr=127.0.0.1:"+strconv.Itoa(ports[1]),
		"--health-addr=127.0.0.1:"+strconv.Itoa(ports[2]))
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		_ = exec.Command("podman", "stop", "-t", "10", name).Run()
		_ = cmd.Wait()
	}()

	health := fmt.Sprintf("http://127.0.0.1:%d/healthz", ports[2])
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(health)
		if err == nil && resp.StatusCode == http.StatusOK {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s never answered 200: %v", health, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := review(dir, ports[0]); err != nil {
		return err
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[1]))
	if err != nil {
		return err
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(metrics, []byte(`sidecar_injector_requests_total{outcome="injected"} 1`)) {
		return fmt.Errorf("/metrics does not count the injection:\n%s", metrics)
	}
	return nil
}

// review sends a Pod asking for content-filler and checks the answer.
func review(dir string, port int) error {
	pem, err := os.ReadFile(filepath.Join(dir, certs.CACert))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	pod := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","annotations":{"sidecars.podpatterns.io/inject":"content-filler"}},"spec":{"containers":[{"name":"nginx","image":"nginx:1.27"}]}}`)
	resp, err := client.Post(fmt.Sprintf("https://127.0.0.1:%d/mutate-pods", port), "application/json", bytes.NewReader(admissiontest.Review("image-test", "CREATE", pod)))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out := &admissionv1.AdmissionReview{}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil || out.Response == nil {
		return fmt.Errorf("not an AdmissionReview (HTTP %d): %v", resp.StatusCode, err)
	}
	if r := out.Response; !r.Allowed || r.UID != "image-test" || !strings.Contains(string(r.Patch), `"name":"content-filler"`) {
		return fmt.Errorf("answer %+v, want content-filler injected", r)
	}
	return nil
}
