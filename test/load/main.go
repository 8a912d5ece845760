// Command load measures the webhook under load against a floor in the
// same run. It starts two servers with the same TLS setup: the real
// `sidecar-injector serve`, and a floor server that only reads the body
// and answers a fixed "allowed". It then alternates between them: N
// connections as fast as they go for a duration, and an open-loop paced
// run at a fixed rate. It reports req/s, p50/p99/max latency, errors, the
// servers' peak RSS, and the ratios real/floor, which are what to compare
// across runs on a shared, noisy machine.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/podpatterns/sidecar-injector/pkg/certs"
)

type config struct {
	server   string
	review   string
	conns    int
	duration time.Duration
	rate     int
	rounds   int
	profile  string
	env      string
}

func main() {
	if len(os.Args) == 5 && os.Args[1] == "serve-floor" {
		if err := serveFloor(os.Args[2], os.Args[3], os.Args[4] == "decode"); err != nil {
			fmt.Fprintln(os.Stderr, "floor:", err)
			os.Exit(1)
		}
		return
	}
	c := config{}
	flag.StringVar(&c.server, "server", "bin/sidecar-injector", "sidecar-injector binary to measure")
	flag.StringVar(&c.review, "review", "test/testdata/review.json", "AdmissionReview to send")
	flag.IntVar(&c.conns, "conns", 32, "concurrent connections in the throughput runs")
	flag.DurationVar(&c.duration, "duration", 5*time.Second, "length of each run")
	flag.IntVar(&c.rate, "rate", 1000, "requests per second in the paced runs; 0 skips them")
	flag.IntVar(&c.rounds, "rounds", 2, "how many times each server is measured, alternating")
	flag.StringVar(&c.profile, "cpuprofile", "", "write the webhook's CPU profile during the first throughput run to this file")
	flag.StringVar(&c.env, "server-env", "", "extra environment for the webhook only, e.g. GOGC=200")
	flag.Parse()
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

// target is one running server.
type target struct {
	name string
	url  string
	cmd  *exec.Cmd
	rss  *rssSampler
}

func run(c config) error {
	body, err := os.ReadFile(c.review)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "sidecar-injector-load-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if _, err := certs.Write(dir, certs.Options{Hosts: []string{"127.0.0.1"}, Validity: time.Hour}); err != nil {
		return err
	}
	client := clientConfig(dir)

	self, err := os.Executable()
	if err != nil {
		return err
	}
	ports := freePorts(5)
	floorPort, realPort, healthPort, pprofPort, decodePort := ports[0], ports[1], ports[2], ports[3], ports[4]
	floor := &target{name: "floor", url: fmt.Sprintf("https://127.0.0.1:%d/mutate-pods", floorPort),
		cmd: exec.Command(self, "serve-floor", fmt.Sprintf("127.0.0.1:%d", floorPort), dir, "read")}
	decoder := &target{name: "decode-only", url: fmt.Sprintf("https://127.0.0.1:%d/mutate-pods", decodePort),
		cmd: exec.Command(self, "serve-floor", fmt.Sprintf("127.0.0.1:%d", decodePort), dir, "decode")}
	real := &target{name: "webhook", url: fmt.Sprintf("https://127.0.0.1:%d/mutate-pods", realPort),
		cmd: exec.Command(c.server, "serve", "--cert-dir", dir, "--port", strconv.Itoa(realPort),
			"--metrics-addr", "0", "--health-addr", fmt.Sprintf("127.0.0.1:%d", healthPort), "--log-level", "error")}
	if c.profile != "" {
		real.cmd.Args = append(real.cmd.Args, "--pprof-addr", fmt.Sprintf("127.0.0.1:%d", pprofPort))
	}
	if c.env != "" {
		real.cmd.Env = append(os.Environ(), strings.Fields(c.env)...)
	}
	targets := []*target{floor, decoder, real}
	for _, t := range targets {
		t.cmd.Stderr = os.Stderr
		if err := t.cmd.Start(); err != nil {
			return fmt.Errorf("starting %s: %w", t.name, err)
		}
		defer stop(t.cmd)
		if err := waitServing(t.url, client, body); err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		t.rss = &rssSampler{pid: t.cmd.Process.Pid}
	}

	fmt.Printf("review %s (%d bytes), %d connections, %s per run, %d rounds, paced at %d req/s\n\n", c.review, len(body), c.conns, c.duration, c.rounds, c.rate)
	results := map[string][]result{}
	for round := 0; round < c.rounds; round++ {
		for _, t := range targets {
			stopRSS := t.rss.start()
			var profiled chan error
			if t == real && round == 0 && c.profile != "" {
				profiled = profile(pprofPort, c.duration, c.profile)
			}
			r := throughput(t.url, client, body, c.conns, c.duration)
			stopRSS()
			if profiled != nil {
				if err := <-profiled; err != nil {
					return fmt.Errorf("profile: %w", err)
				}
			}
			r.name = t.name + " max"
			results[r.name] = append(results[r.name], r)
			if c.rate > 0 {
				stopRSS := t.rss.start()
				p := paced(t.url, client, body, c.conns, c.rate, c.duration)
				stopRSS()
				p.name = fmt.Sprintf("%s @%d/s", t.name, c.rate)
				results[p.name] = append(results[p.name], p)
			}
		}
	}
	return report(os.Stdout, results, floor, real, c)
}

type result struct {
	name             string
	requests, errors int64
	elapsed          time.Duration
	p50, p99, max    time.Duration
	firstErr         error
}

func (r result) rps() float64 { return float64(r.requests) / r.elapsed.Seconds() }

func clientConfig(dir string) *tls.Config {
	pem, _ := os.ReadFile(filepath.Join(dir, certs.CACert))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// newClient has one keep-alive connection, like one API server connection.
func newClient(cfg *tls.Config) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: cfg, MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1,
	}}
}

func post(c *http.Client, url string, body []byte) error {
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !bytes.Contains(data, []byte(`"allowed":true`)) {
		return fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, data)
	}
	return nil
}

// throughput: conns connections, each sending back to back.
func throughput(url string, cfg *tls.Config, body []byte, conns int, d time.Duration) result {
	var wg sync.WaitGroup
	lat := make([][]time.Duration, conns)
	var errs atomic.Int64
	var firstErr atomic.Value
	clients := warmClients(url, cfg, body, conns)
	deadline := time.Now().Add(d)
	start := time.Now()
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[i]
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if err := post(c, url, body); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	return summarize(lat, errs.Load(), time.Since(start), firstErr)
}

// paced is open loop: request k is due at start + k/rate, and its latency
// counts from then, so a stall shows up instead of hiding.
func paced(url string, cfg *tls.Config, body []byte, conns, rate int, d time.Duration) result {
	total := int(d.Seconds() * float64(rate))
	interval := time.Second / time.Duration(rate)
	due := make(chan time.Time, total)
	var wg sync.WaitGroup
	lat := make([][]time.Duration, conns)
	var errs atomic.Int64
	var firstErr atomic.Value
	clients := warmClients(url, cfg, body, conns)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[i]
			for at := range due {
				if err := post(c, url, body); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				lat[i] = append(lat[i], time.Since(at))
			}
		}()
	}
	start := time.Now()
	for k := range total {
		at := start.Add(time.Duration(k) * interval)
		time.Sleep(time.Until(at))
		due <- at
	}
	close(due)
	wg.Wait()
	return summarize(lat, errs.Load(), time.Since(start), firstErr)
}

// profile fetches a CPU profile of the webhook while a run goes on.
func profile(port int, d time.Duration, file string) chan error {
	done := make(chan error, 1)
	go func() {
		secs := int(d.Seconds()) - 1
		if secs < 1 {
			secs = 1
		}
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", port, secs))
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err == nil {
			err = os.WriteFile(file, data, 0o644)
		}
		done <- err
	}()
	return done
}

// warmClients opens every connection with one unmeasured request, so the
// runs measure requests, not TLS handshakes.
func warmClients(url string, cfg *tls.Config, body []byte, n int) []*http.Client {
	clients := make([]*http.Client, n)
	var wg sync.WaitGroup
	for i := range clients {
		clients[i] = newClient(cfg)
		wg.Add(1)
		go func() { defer wg.Done(); _ = post(clients[i], url, body) }()
	}
	wg.Wait()
	return clients
}

func summarize(lat [][]time.Duration, errs int64, elapsed time.Duration, firstErr atomic.Value) result {
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	r := result{requests: int64(len(all)), errors: errs, elapsed: elapsed}
	if e, ok := firstErr.Load().(error); ok {
		r.firstErr = e
	}
	if len(all) > 0 {
		r.p50 = all[len(all)/2]
		r.p99 = all[len(all)*99/100]
		r.max = all[len(all)-1]
	}
	return r
}

func report(w io.Writer, results map[string][]result, floor, real *target, c config) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\treq/s\tp50\tp99\tmax\terrors\t")
	names := make([]string, 0, len(results))
	for n := range results {
		names = append(names, n)
	}
	sort.Strings(names)
	best := map[string]result{}
	for _, n := range names {
		for _, r := range results[n] {
			fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%d\t\n", n, r.rps(), ms(r.p50), ms(r.p99), ms(r.max), r.errors)
			if r.firstErr != nil {
				fmt.Fprintf(tw, "  first error: %v\t\t\t\t\t\t\n", r.firstErr)
			}
		}
		best[n] = median(results[n])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\npeak RSS under load: floor %.1f MiB, webhook %.1f MiB (VmHWM %.1f MiB)\n",
		mib(floor.rss.max), mib(real.rss.max), mib(real.rss.hwm()))
	fr, rr, dr := best["floor max"], best["webhook max"], best["decode-only max"]
	fmt.Fprintf(w, "throughput ratio webhook/floor at %d connections (median of %d): %.2f (target >= 0.60); decode-only/floor: %.2f\n", c.conns, c.rounds, rr.rps()/fr.rps(), dr.rps()/fr.rps())
	if c.rate > 0 {
		p := best[fmt.Sprintf("webhook @%d/s", c.rate)]
		pf := best[fmt.Sprintf("floor @%d/s", c.rate)]
		fmt.Fprintf(w, "p99 at %d req/s (median of %d): webhook %s, floor %s (target <= 2ms)\n", c.rate, c.rounds, ms(p.p99), ms(pf.p99))
	}
	var errs int64
	for _, rs := range results {
		for _, r := range rs {
			errs += r.errors
		}
	}
	if errs > 0 {
		return fmt.Errorf("%d requests failed", errs)
	}
	return nil
}

// median is the run with the median throughput; for paced runs, whose
// throughput is fixed, the one with the median p99.
func median(rs []result) result {
	sorted := append([]result(nil), rs...)
	sort.Slice(sorted, func(i, j int) bool {
		if a, b := sorted[i].rps(), sorted[j].rps(); a/b < 0.98 || a/b > 1.02 {
			return a < b
		}
		return sorted[i].p99 < sorted[j].p99
	})
	return sorted[len(sorted)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// freePorts returns n distinct ports that were free a moment ago: all are
// held open until each is chosen, so none is handed out twice.
func freePorts(n int) []int {
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports
}

func waitServing(url string, cfg *tls.Config, body []byte) error {
	c := newClient(cfg)
	var err error
	for range 100 {
		if err = post(c, url, body); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not serving after 10s: %w", err)
}

func stop(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
	}
}

// rssSampler records a process's resident set while a run goes on.
type rssSampler struct {
	pid int
	max int64
}

func (s *rssSampler) start() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if v := procStatus(s.pid, "VmRSS:"); v > s.max {
				s.max = v
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() { cancel(); <-done }
}

func (s *rssSampler) hwm() int64 { return procStatus(s.pid, "VmHWM:") }

// procStatus reads a "kB" field of /proc/PID/status, in bytes.
func procStatus(pid int, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// serveFloor is the floor: the webhook's TLS setup, a handler that reads
// the body and answers a fixed "allowed". With decode it also decodes the
// review and its Pod, as any webhook on the API types must: the second
// reference, for what decoding alone costs.
func serveFloor(addr, dir string, decode bool) error {
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, certs.ServerCert), filepath.Join(dir, certs.ServerKey))
	if err != nil {
		return err
	}
	answer := []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"","allowed":true}}`)
	srv := &http.Server{
		Addr:              addr,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}},
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			if decode {
				var review struct {
					Request *struct {
						admissionv1.AdmissionRequest
						Object *corev1.Pod `json:"object"`
					} `json:"request"`
				}
				if err := json.Unmarshal(body, &review); err != nil || review.Request == nil || review.Request.Object == nil {
					http.Error(w, "bad review", http.StatusBadRequest)
					return
				}
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(answer)
		}),
	}
	err = srv.ListenAndServeTLS("", "")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
