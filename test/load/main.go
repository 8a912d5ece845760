// Command load measures the webhook under load against floors in the
// same run. It starts three servers with the same TLS setup: the real
// `sidecar-injector serve`; a floor server that only reads the body and
// answers a fixed "allowed"; and a decode-only server, the floor plus
// decoding the review and its full Pod with encoding/json. It then
// alternates between them, round after round: each server with N
// connections as fast as they go for a duration, back to back, then each
// in an open-loop run paced at a fixed rate. For each run it reports
// req/s, p50/p99/max latency, errors, the CPU time the server and the load
// generator spent per request and the CPU time the hypervisor stole; then
// the servers' peak RSS and the ratios webhook/floor, each the median of
// the rounds' ratios, which are what to compare across runs on a shared,
// noisy machine. With -baseline it also measures a second webhook binary,
// to compare two versions in one run.
package main

import (
	"bufio"
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
	"github.com/podpatterns/sidecar-injector/test/cluster"
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
	baseline string
	flood    bool
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
	flag.StringVar(&c.baseline, "baseline", "", "another sidecar-injector binary, e.g. one built from main, measured as \"baseline\" beside the webhook to compare two versions in one run")
	flag.BoolVar(&c.flood, "flood", false, "instead of the throughput runs: flood the webhook with 40 connections of 6 MB bodies for -duration, sending a real review every 100ms, and check its RSS and answers")
	flag.Parse()
	if c.flood {
		body, err := readReview(c.review)
		if err == nil {
			var res floodResult
			if res, err = runFlood(c.server, 40, 6_000_000, c.duration, body); err == nil {
				fmt.Println("flood:", res)
				err = res.ok()
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "load:", err)
			os.Exit(1)
		}
		return
	}
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
	body, err := readReview(c.review)
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
	ports := freePorts(7)
	floor := &target{name: "floor", url: fmt.Sprintf("https://127.0.0.1:%d/mutate-pods", ports[0]),
		cmd: exec.Command(self, "serve-floor", fmt.Sprintf("127.0.0.1:%d", ports[0]), dir, "read")}
	decoder := &target{name: "decode-only", url: fmt.Sprintf("https://127.0.0.1:%d/mutate-pods", ports[1]),
		cmd: exec.Command(self, "serve-floor", fmt.Sprintf("127.0.0.1:%d", ports[1]), dir, "decode")}
	real := webhook("webhook", c.server, dir, ports[2], ports[3])
	pprofPort := ports[4]
	if c.profile != "" {
		real.cmd.Args = append(real.cmd.Args, "--pprof-addr", fmt.Sprintf("127.0.0.1:%d", pprofPort))
	}
	if c.env != "" {
		real.cmd.Env = append(os.Environ(), strings.Fields(c.env)...)
	}
	// The webhook runs right after the floor in every round, so the two
	// runs whose ratio is the target share the host's conditions.
	targets := []*target{floor, real, decoder}
	if c.baseline != "" {
		targets = []*target{floor, real, webhook("baseline", c.baseline, dir, ports[5], ports[6]), decoder}
	}
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
		// First every server at full speed, back to back, then every
		// server paced.
		for _, t := range targets {
			var profiled chan error
			if t == real && round == 0 && c.profile != "" {
				profiled = profile(pprofPort, c.duration, c.profile)
			}
			r, err := t.measure(func() (result, error) { return throughput(t.url, client, body, c.conns, c.duration) })
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			if profiled != nil {
				if err := <-profiled; err != nil {
					return fmt.Errorf("profile: %w", err)
				}
			}
			r.name = t.name + " max"
			results[r.name] = append(results[r.name], r)
		}
		// The same over HTTP/2, as the API server calls webhooks.
		for _, t := range targets {
			r, err := t.measure(func() (result, error) { return throughputH2(t.url, client, body, c.conns, c.duration) })
			if err != nil {
				return fmt.Errorf("%s over HTTP/2: %w", t.name, err)
			}
			r.name = t.name + " h2 max"
			results[r.name] = append(results[r.name], r)
		}
		if c.rate <= 0 {
			continue
		}
		for _, t := range targets {
			p, err := t.measure(func() (result, error) { return paced(t.url, client, body, c.conns, c.rate, c.duration) })
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			p.name = fmt.Sprintf("%s @%d/s", t.name, c.rate)
			results[p.name] = append(results[p.name], p)
		}
	}
	return report(os.Stdout, results, floor, real, c)
}

// webhook is `sidecar-injector serve` from bin on port, with its health
// server on healthPort and no metrics listener.
func webhook(name, bin, certDir string, port, healthPort int) *target {
	return &target{name: name, url: fmt.Sprintf("https://127.0.0.1:%d/mutate-pods", port),
		cmd: exec.Command(bin, "serve", "--cert-dir", certDir, "--port", strconv.Itoa(port),
			"--metrics-addr", "0", "--health-addr", fmt.Sprintf("127.0.0.1:%d", healthPort), "--log-level", "error")}
}

// readReview reads the review to send, compacted: the file is indented
// for people, the API server sends compact JSON.
func readReview(file string) ([]byte, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := json.Compact(&b, data); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return b.Bytes(), nil
}

type result struct {
	name             string
	requests, errors int64
	elapsed          time.Duration
	p50, p99, max    time.Duration
	firstErr         error
	// CPU time the server and the load generator spent in the run.
	serverCPU, loadCPU time.Duration
	// steal is the share of the machine's CPU time the hypervisor took
	// for other guests during the run.
	steal float64
}

func (r result) rps() float64 { return float64(r.requests) / r.elapsed.Seconds() }

// cpuPerRequest is a CPU time per answered request, in microseconds.
func (r result) cpuPerRequest(d time.Duration) float64 {
	if r.requests == 0 {
		return 0
	}
	return float64(d.Microseconds()) / float64(r.requests)
}

// measure runs one run against t, sampling its RSS and counting the CPU
// time it and this process spend.
func (t *target) measure(run func() (result, error)) (result, error) {
	stopRSS := t.rss.start()
	server0, load0 := processCPU(t.cmd.Process.Pid), selfCPU()
	steal0, total0 := machineCPU()
	r, err := run()
	r.serverCPU, r.loadCPU = processCPU(t.cmd.Process.Pid)-server0, selfCPU()-load0
	if steal1, total1 := machineCPU(); total1 > total0 {
		r.steal = float64(steal1-steal0) / float64(total1-total0)
	}
	stopRSS()
	return r, err
}

// processCPU is the user and system time of a process so far, from
// /proc/PID/stat (fields 14 and 15, in clock ticks of 1/100 s).
func processCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	_, rest, _ := bytes.Cut(data, []byte(") "))
	f := strings.Fields(string(rest))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// machineCPU is the steal time and the total of all CPU times in
// /proc/stat, in clock ticks.
func machineCPU() (steal, total int64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	f := strings.Fields(string(line)) // cpu user nice system idle iowait irq softirq steal ...
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i < 8 { // guest times are already counted in user and nice
			total += n
		}
		if i == 7 {
			steal = n
		}
	}
	return steal, total
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func clientConfig(dir string) *tls.Config {
	pem, _ := os.ReadFile(filepath.Join(dir, certs.CACert))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// conn is one keep-alive HTTP/1.1 connection, as the API server keeps
// to a webhook. The load generator writes a prepared request and reads the
// answer on the goroutine that times it: net/http's Transport hands each
// request through two more goroutines, and on a VM every handoff to an
// idle CPU costs a wakeup that showed up as a millisecond of latency on
// the floor server itself.
type conn struct {
	tls  *tls.Conn
	r    *bufio.Reader
	req  []byte
	body bytes.Buffer // the last answer, reused: the webhook's is 1.8 KiB
}

// request is the HTTP request for body, written once for all connections.
func request(url string, body []byte) []byte {
	host, path, _ := strings.Cut(strings.TrimPrefix(url, "https://"), "/")
	head := fmt.Sprintf("POST /%s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: %d\r\n\r\n", path, host, len(body))
	return append([]byte(head), body...)
}

func dial(url string, cfg *tls.Config, req []byte) (*conn, error) {
	host, _, _ := strings.Cut(strings.TrimPrefix(url, "https://"), "/")
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", host, cfg)
	if err != nil {
		return nil, err
	}
	return &conn{tls: c, r: bufio.NewReaderSize(c, 16<<10), req: req}, nil
}

// post sends the review and checks that the answer allows it.
func (c *conn) post() error {
	if err := c.tls.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return err
	}
	if _, err := c.tls.Write(c.req); err != nil {
		return err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return err
	}
	c.body.Reset()
	_, err = c.body.ReadFrom(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	data := c.body.Bytes()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(data, []byte(`"allowed":true`)) {
		return fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, data)
	}
	if resp.Close {
		return errors.New("server closed the connection")
	}
	return nil
}

func (c *conn) close() { _ = c.tls.Close() }

// throughput: conns connections, each sending back to back.
func throughput(url string, cfg *tls.Config, body []byte, conns int, d time.Duration) (result, error) {
	clients, err := dialAll(url, cfg, body, conns)
	if err != nil {
		return result{}, err
	}
	var wg sync.WaitGroup
	lat := make([][]time.Duration, conns)
	var errs atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(d)
	start := time.Now()
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.close()
			for t0 := time.Now(); t0.Before(deadline); t0 = time.Now() {
				if err := c.post(); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err)
					return // the connection is in an unknown state
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	return summarize(lat, errs.Load(), time.Since(start), firstErr), nil
}

// paced is open loop: request k is due at start + k/rate and goes out on
// connection k mod conns; its latency counts from when it was due, so a
// stall shows up instead of hiding.
func paced(url string, cfg *tls.Config, body []byte, conns, rate int, d time.Duration) (result, error) {
	clients, err := dialAll(url, cfg, body, conns)
	if err != nil {
		return result{}, err
	}
	total := int(d.Seconds() * float64(rate))
	interval := time.Second / time.Duration(rate)
	var wg sync.WaitGroup
	lat := make([][]time.Duration, conns)
	var errs atomic.Int64
	var firstErr atomic.Value
	start := time.Now().Add(10 * time.Millisecond)
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.close()
			for k := i; k < total; k += conns {
				at := start.Add(time.Duration(k) * interval)
				sleepUntil(at)
				if err := c.post(); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err)
					return
				}
				lat[i] = append(lat[i], time.Since(at))
			}
		}()
	}
	wg.Wait()
	return summarize(lat, errs.Load(), time.Since(start), firstErr), nil
}

// sleepUntil blocks the calling thread in nanosleep until t. time.Sleep
// would do for a busy program, but an idle Go program waits for its
// timers in epoll_wait, whose timeout is in whole milliseconds: paced
// requests went out up to a millisecond late, and since latency counts
// from when a request was due, that lateness was charged to the server.
func sleepUntil(t time.Time) {
	for d := time.Until(t); d > 0; d = time.Until(t) {
		ts := syscall.NsecToTimespec(d.Nanoseconds())
		_ = syscall.Nanosleep(&ts, nil)
	}
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

// dialAll opens every connection and sends one unmeasured request on
// each, so the runs measure requests, not TLS handshakes.
func dialAll(url string, cfg *tls.Config, body []byte, n int) ([]*conn, error) {
	req := request(url, body)
	clients := make([]*conn, n)
	for i := range clients {
		c, err := dial(url, cfg, req)
		if err == nil {
			err = c.post()
		}
		if err != nil {
			for _, c := range clients[:i] {
				c.close()
			}
			return nil, fmt.Errorf("opening connection %d: %w", i, err)
		}
		clients[i] = c
	}
	return clients, nil
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
	fmt.Fprintln(tw, "run\treq/s\tp50\tp99\tmax\terrors\tserver CPU/req\tloadgen CPU/req\tsteal\t")
	names := make([]string, 0, len(results))
	for n := range results {
		names = append(names, n)
	}
	sort.Strings(names)
	best := map[string]result{}
	for _, n := range names {
		for _, r := range results[n] {
			fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%d\t%.0fus\t%.0fus\t%.1f%%\t\n", n, r.rps(), ms(r.p50), ms(r.p99), ms(r.max), r.errors,
				r.cpuPerRequest(r.serverCPU), r.cpuPerRequest(r.loadCPU), 100*r.steal)
			if r.firstErr != nil {
				fmt.Fprintf(tw, "  first error: %v\t\t\t\t\t\t\t\t\t\n", r.firstErr)
			}
		}
		best[n] = median(results[n])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\npeak RSS under load: floor %.1f MiB, webhook %.1f MiB (VmHWM %.1f MiB)\n",
		mib(floor.rss.max), mib(real.rss.max), mib(real.rss.hwm()))
	// Each ratio pairs the runs of one round, which ran seconds apart,
	// and the median over rounds is reported: a burst of steal moves one
	// round's ratio, not the median.
	fmt.Fprintf(w, "throughput ratio webhook/floor, HTTP/1.1 at %d connections (median of %d rounds): %s (target >= 0.50); decode-only/floor: %s\n",
		c.conns, c.rounds, ratios(results, "webhook max", "floor max", result.rps), ratios(results, "decode-only max", "floor max", result.rps))
	fmt.Fprintf(w, "throughput ratio webhook/floor, HTTP/2 with %d streams on %d connections: %s (target >= 0.50); decode-only/floor: %s\n",
		c.conns, h2Conns, ratios(results, "webhook h2 max", "floor h2 max", result.rps), ratios(results, "decode-only h2 max", "floor h2 max", result.rps))
	cpu := func(name string) float64 {
		var v []float64
		for _, r := range results[name] {
			v = append(v, r.cpuPerRequest(r.serverCPU))
		}
		return medianOf(v)
	}
	fmt.Fprintf(w, "server CPU per request at %d connections (median of %d): webhook %.0fus, decode-only %.0fus, floor %.0fus\n",
		c.conns, c.rounds, cpu("webhook max"), cpu("decode-only max"), cpu("floor max"))
	if c.baseline != "" {
		serverCPU := func(r result) float64 { return r.cpuPerRequest(r.serverCPU) }
		fmt.Fprintf(w, "webhook/baseline (%s) at %d connections: throughput %s, server CPU per request %s (%.0fus against %.0fus)\n",
			c.baseline, c.conns, ratios(results, "webhook max", "baseline max", result.rps),
			ratios(results, "webhook max", "baseline max", serverCPU), cpu("webhook max"), cpu("baseline max"))
	}
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

// ratios is the median over rounds of f(a's run) / f(b's run in the same
// round), followed by each round's ratio.
func ratios(results map[string][]result, a, b string, f func(result) float64) string {
	var each []float64
	var text []string
	for i, r := range results[a] {
		if i < len(results[b]) && f(results[b][i]) > 0 {
			each = append(each, f(r)/f(results[b][i]))
			text = append(text, fmt.Sprintf("%.2f", each[len(each)-1]))
		}
	}
	if len(each) == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f (rounds %s)", medianOf(each), strings.Join(text, " "))
}

// medianOf returns the median of v, the upper one of an even count.
func medianOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = append([]float64(nil), v...)
	sort.Float64s(v)
	return v[len(v)/2]
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
	var err error
	for range 100 {
		var c *conn
		if c, err = dial(url, cfg, request(url, body)); err == nil {
			err = c.post()
			c.close()
			if err == nil {
				return nil
			}
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
			if v := cluster.ProcStatus(s.pid, "VmRSS:"); v > s.max {
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

func (s *rssSampler) hwm() int64 { return cluster.ProcStatus(s.pid, "VmHWM:") }

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
