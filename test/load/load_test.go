package main

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// server answers reviews with the given answer and counts them.
func server(t *testing.T, answer string) (*httptest.Server, *tls.Config, *atomic.Int64) {
	t.Helper()
	n := &atomic.Int64{}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/mutate-pods" || r.Header.Get("Content-Type") != "application/json" || r.ContentLength <= 0 {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		n.Add(1)
		_, _ = w.Write([]byte(answer))
	}))
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return srv, &tls.Config{RootCAs: pool}, n
}

func TestRunsCountEveryAnswer(t *testing.T) {
	srv, cfg, served := server(t, `{"response":{"allowed":true}}`)
	body, err := readReview("../testdata/review.json")
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(string(body), "\n") {
		t.Fatal("the review is not compacted")
	}
	url := srv.URL + "/mutate-pods"
	r, err := throughput(url, cfg, body, 4, 200*time.Millisecond)
	if err != nil || r.errors != 0 || r.requests == 0 || r.p50 <= 0 || r.p99 < r.p50 || r.max < r.p99 {
		t.Fatalf("throughput: %+v, %v", r, err)
	}
	// 4 warm-up requests, then the measured ones.
	if want := r.requests + 4; served.Load() != want {
		t.Fatalf("server answered %d requests, the run counted %d", served.Load(), want)
	}
	p, err := paced(url, cfg, body, 4, 200, 200*time.Millisecond)
	if err != nil || p.errors != 0 || p.requests != 40 {
		t.Fatalf("paced at 200/s for 200ms: %+v, %v; want 40 requests", p, err)
	}
}

func TestRunsCountRefusals(t *testing.T) {
	srv, cfg, _ := server(t, `{"response":{"allowed":false}}`)
	_, err := throughput(srv.URL+"/mutate-pods", cfg, []byte(`{}`), 2, 100*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), `"allowed":false`) {
		t.Fatalf("a refused warm-up request should fail the run with the answer, got %v", err)
	}
}

// The two readers of the process's CPU time agree: spinning until
// getrusage says 200ms of CPU went by, /proc/PID/stat (10ms ticks) says
// so too. The spin is counted in CPU, not in wall time, so a busy machine
// only makes it longer.
func TestCPUTimes(t *testing.T) {
	proc0, self0 := processCPU(os.Getpid()), selfCPU()
	for deadline := time.Now().Add(20 * time.Second); selfCPU()-self0 < 200*time.Millisecond; {
		if time.Now().After(deadline) {
			t.Fatalf("selfCPU grew by %v in 20s of spinning", selfCPU()-self0)
		}
	}
	self, proc := selfCPU()-self0, processCPU(os.Getpid())-proc0
	if proc < self-30*time.Millisecond || proc > self+200*time.Millisecond {
		t.Errorf("processCPU grew by %v while selfCPU grew by %v", proc, self)
	}
	if steal, total := machineCPU(); total <= 0 || steal < 0 || steal > total {
		t.Fatalf("machineCPU: steal %d of %d", steal, total)
	}
}

// Ratios pair the runs of one round and take the median over rounds, so
// one bad round does not move the figure.
func TestRatiosPairRounds(t *testing.T) {
	run := func(requests int64) result { return result{requests: requests, elapsed: time.Second} }
	results := map[string][]result{
		"webhook max": {run(600), run(100), run(700)},
		"floor max":   {run(1000), run(1000), run(1000)},
	}
	if got, want := ratios(results, "webhook max", "floor max", result.rps), "0.60 (rounds 0.60 0.10 0.70)"; got != want {
		t.Errorf("ratios: %q, want %q", got, want)
	}
	if got := ratios(results, "webhook max", "baseline max", result.rps); got != "n/a" {
		t.Errorf("ratios against runs that do not exist: %q", got)
	}
}

// A flood of large bodies neither blows the webhook's memory nor starves
// the real reviews sent meanwhile (the real binary, built here).
func TestFloodKeepsTheWebhookServing(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "sidecar-injector")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/sidecar-injector")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatal(err)
	}
	review, err := readReview("../testdata/review.json")
	if err != nil {
		t.Fatal(err)
	}
	res, err := runFlood(bin, 40, 6_000_000, 3*time.Second, review)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	if err := res.ok(); err != nil {
		t.Error(err)
	}
	if res.bodies < 40 || res.refused == 0 {
		t.Errorf("the flood did not flood: %s", res)
	}
}
