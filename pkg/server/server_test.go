package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/podpatterns/sidecar-injector/pkg/admission"
	"github.com/podpatterns/sidecar-injector/pkg/admission/admissiontest"
	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/certs"
)

// testServer is a running Run with its own certificates, catalog
// directory (laid out as a mounted ConfigMap), ports and registry.
type testServer struct {
	certDir, catalogDir string
	o                   Options
	cancel              context.CancelFunc
	done                chan error
	client              *http.Client
}

// freePorts returns n distinct ports free a moment ago; all are held
// open until each is chosen, so none repeats.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports
}

func start(t *testing.T, configure ...func(*Options)) *testServer {
	t.Helper()
	s := &testServer{certDir: t.TempDir(), catalogDir: t.TempDir(), done: make(chan error, 1)}
	if _, err := certs.Write(s.certDir, certs.Options{Hosts: []string{"127.0.0.1"}, Validity: time.Hour}); err != nil {
		t.Fatal(err)
	}
	s.writeCatalog(t, catalog.DefaultYAML())
	ports := freePorts(t, 3)
	s.o = NewOptions()
	s.o.CatalogPath, s.o.CertDir, s.o.Host, s.o.Port = s.catalogDir, s.certDir, "127.0.0.1", ports[0]
	s.o.MetricsAddr, s.o.HealthAddr = fmt.Sprintf("127.0.0.1:%d", ports[1]), fmt.Sprintf("127.0.0.1:%d", ports[2])
	s.o.ShutdownGrace, s.o.Registry = 10*time.Second, prometheus.NewRegistry()
	for _, c := range configure {
		c(&s.o)
	}
	s.client = s.newClient(t, false)
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() { s.done <- Run(ctx, s.o) }()
	t.Cleanup(func() { s.stop(t) })
	s.waitReady(t)
	return s
}

func (s *testServer) newClient(t *testing.T, fresh bool) *http.Client {
	pem, err := os.ReadFile(filepath.Join(s.certDir, certs.CACert))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: fresh,
	}}
}

func (s *testServer) stop(t *testing.T) {
	s.cancel()
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("Run returned %v", err)
		}
		s.done <- nil
	case <-time.After(15 * time.Second):
		t.Error("Run did not return within the shutdown grace")
	}
}

// writeCatalog swaps in a new catalog the way the kubelet updates a
// mounted ConfigMap: a new timestamped directory, then an atomic rename of
// the ..data symlink.
func (s *testServer) writeCatalog(t *testing.T, data []byte) {
	t.Helper()
	ts, err := os.MkdirTemp(s.catalogDir, "..ts_")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ts, "catalog.yaml"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(s.catalogDir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(s.catalogDir, "..data")); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(s.catalogDir, "catalog.yaml")
	if _, err := os.Lstat(link); err != nil {
		if err := os.Symlink("..data/catalog.yaml", link); err != nil {
			t.Fatal(err)
		}
	}
}

func (s *testServer) url() string {
	return fmt.Sprintf("https://127.0.0.1:%d/mutate-pods", s.o.Port)
}

func (s *testServer) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if s.readyz() == http.StatusOK {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("server never became ready")
}

func (s *testServer) readyz() int {
	resp, err := http.Get("http://" + s.o.HealthAddr + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

const podJSON = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","annotations":{"sidecars.podpatterns.io/inject":%q}},"spec":{"containers":[{"name":"nginx","image":"nginx:1.27"}]}}`

func reviewFor(uid, request string) []byte {
	return admissiontest.Review(uid, "CREATE", []byte(fmt.Sprintf(podJSON, request)))
}

func (s *testServer) send(c *http.Client, body io.Reader) (*admissionv1.AdmissionResponse, error) {
	resp, err := c.Post(s.url(), "application/json", body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := &admissionv1.AdmissionReview{}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 || out.Response == nil {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return out.Response, nil
}

func TestCertificateRotationFailsNoRequest(t *testing.T) {
	s := start(t)
	before := s.servedSerial(t)
	var sent, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := s.newClient(t, true) // a handshake per request
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				sent.Add(1)
				if _, err := s.send(c, bytes.NewReader(reviewFor(fmt.Sprint(i), "content-filler"))); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	for range 3 {
		if _, err := certs.Write(s.certDir, certs.Options{Hosts: []string{"127.0.0.1"}, Validity: time.Hour}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	deadline := time.Now().Add(15 * time.Second)
	for s.servedSerial(t) == before && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if failed.Load() > 0 {
		t.Errorf("%d of %d requests failed during rotation; first: %v", failed.Load(), sent.Load(), firstErr.Load())
	}
	if sent.Load() < 50 {
		t.Errorf("only %d requests sent; the test proves little", sent.Load())
	}
	written, err := tls.LoadX509KeyPair(filepath.Join(s.certDir, certs.ServerCert), filepath.Join(s.certDir, certs.ServerKey))
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(written.Certificate[0])
	if got := s.servedSerial(t); got != leaf.SerialNumber.String() {
		t.Errorf("served certificate %s, want the newest %s", got, leaf.SerialNumber)
	}
}

func (s *testServer) servedSerial(t *testing.T) string {
	t.Helper()
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.o.Port), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func TestCatalogReload(t *testing.T) {
	s := start(t)
	resp, err := s.send(s.client, bytes.NewReader(reviewFor("a", "extra")))
	if err != nil || resp.Allowed {
		t.Fatalf("unknown template allowed before the reload: %+v %v", resp, err)
	}
	extra := append(catalog.DefaultYAML(), []byte(`
- name: extra
  pattern: adapter
  description: added while serving
  containers: [{name: extra, image: busybox:1.37.0}]
`)...)
	s.writeCatalog(t, extra)
	s.eventually(t, "the new template serves", func() bool {
		r, err := s.send(s.client, bytes.NewReader(reviewFor("b", "extra")))
		return err == nil && r.Allowed && len(r.Patch) > 0
	})

	s.writeCatalog(t, []byte("apiVersion: sidecars.podpatterns.io/v1alpha1\nkind: Catalog\ntemplates: [{name: BROKEN}]\n"))
	s.eventually(t, "the broken version is refused and counted", func() bool {
		return strings.Contains(s.scrape(t), `sidecar_injector_catalog_reloads_total{result="failure"} 1`)
	})
	r, err := s.send(s.client, bytes.NewReader(reviewFor("c", "extra")))
	if err != nil || !r.Allowed {
		t.Errorf("the last good catalog stopped serving: %+v %v", r, err)
	}
	if s.readyz() != http.StatusOK {
		t.Error("a refused catalog made the server unready")
	}
}

func (s *testServer) eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *testServer) scrape(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + s.o.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// In-flight requests finish after SIGTERM, while /readyz fails at once.
func TestShutdownFinishesInFlightRequests(t *testing.T) {
	s := start(t)
	const n = 8
	writers := make([]*io.PipeWriter, n)
	results := make(chan error, n)
	// Big enough that the first half leaves the client's 4 KiB buffer.
	body := bytes.Replace(reviewFor("slow", "content-filler"), []byte(`"name":"web",`), []byte(`"name":"web","generateName":"`+strings.Repeat("p", 16<<10)+`",`), 1)
	for i := range n {
		r, w := io.Pipe()
		writers[i] = w
		go func() {
			resp, err := s.send(s.client, r)
			if err == nil && (!resp.Allowed || len(resp.Patch) == 0) {
				err = fmt.Errorf("not injected: %+v", resp)
			}
			results <- err
		}()
		if _, err := w.Write(body[:len(body)/2]); err != nil { // the request is now in flight
			t.Fatal(err)
		}
	}
	// Go's http.Server drops a request whose headers it reads after
	// Shutdown began, so wait until the handler holds all of them; the
	// Deployment's preStop delay covers requests still on the wire.
	s.eventually(t, "the server holds every request", func() bool {
		return strings.Contains(s.scrape(t), fmt.Sprintf("sidecar_injector_requests_in_flight %d\n", n))
	})
	s.cancel()
	s.eventually(t, "/readyz fails", func() bool { return s.readyz() != http.StatusOK })
	for _, w := range writers {
		if _, err := w.Write(body[len(body)/2:]); err != nil {
			t.Fatal(err)
		}
		w.Close()
	}
	for range n {
		if err := <-results; err != nil {
			t.Errorf("in-flight request failed during shutdown: %v", err)
		}
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("Run returned %v", err)
		}
		s.done <- nil
	case <-time.After(s.o.ShutdownGrace):
		t.Error("Run did not return within the grace period")
	}
}

func TestMetricsCountEachOutcome(t *testing.T) {
	s := start(t)
	for _, req := range []string{"content-filler", "none", "no-such-template"} {
		if _, err := s.send(s.client, bytes.NewReader(reviewFor("m", req))); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := s.client.Post(s.url(), "application/json", strings.NewReader("{broken"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// Only the webhook's path is served, and nothing else is counted.
	other := strings.TrimSuffix(s.url(), admission.Path) + "/mutate-pods/x"
	resp, err = s.client.Post(other, "application/json", bytes.NewReader(reviewFor("m", "content-filler")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST %s: HTTP %d, want 404", other, resp.StatusCode)
	}
	text := s.scrape(t)
	for _, want := range []string{
		`sidecar_injector_requests_total{outcome="injected"} 1`,
		`sidecar_injector_requests_total{outcome="skipped"} 1`,
		`sidecar_injector_requests_total{outcome="denied"} 1`,
		`sidecar_injector_requests_total{outcome="invalid"} 1`, // the broken review: the client's fault
		`sidecar_injector_requests_total{outcome="error"} 0`,
		`sidecar_injector_injections_total{template="content-filler"} 1`,
		`sidecar_injector_request_duration_seconds_bucket{le="0.005"}`,
		`sidecar_injector_request_duration_seconds_count 4`,
		`sidecar_injector_build_info{`,
		`go_goroutines `,
		`process_resident_memory_bytes `,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// The certificate certs.Write made lives an hour.
	var expiry float64
	for line := range strings.SplitSeq(text, "\n") {
		if v, ok := strings.CutPrefix(line, "sidecar_injector_certificate_expiry_timestamp_seconds "); ok {
			expiry, _ = strconv.ParseFloat(v, 64)
		}
	}
	if left := time.Until(time.Unix(int64(expiry), 0)); left < 50*time.Minute || left > time.Hour+time.Minute {
		t.Errorf("certificate expiry %v is %s away; want about an hour", expiry, left)
	}
}
