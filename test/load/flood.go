package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/podpatterns/sidecar-injector/pkg/certs"
	"github.com/podpatterns/sidecar-injector/test/cluster"
)

// floodResult is what a flood did to the webhook.
type floodResult struct {
	bodies     int64         // large bodies sent in full or in part
	refused    int64         // answered with an error before the body was read
	peakRSS    int64         // the webhook's VmHWM, in bytes
	reviews    int           // real reviews sent during the flood
	slowest    time.Duration // the slowest of them
	reviewErrs []error
}

// floodRSSLimit and floodLatencyLimit are the targets a flood must meet.
const (
	floodRSSLimit     = 100 << 20
	floodLatencyLimit = time.Second
)

func (f floodResult) ok() error {
	var problems []string
	if f.peakRSS >= floodRSSLimit {
		problems = append(problems, fmt.Sprintf("peak RSS %.1f MiB, want under %d MiB", mib(f.peakRSS), floodRSSLimit>>20))
	}
	if f.slowest > floodLatencyLimit {
		problems = append(problems, fmt.Sprintf("a review took %s, want at most %s", f.slowest, floodLatencyLimit))
	}
	if f.reviews == 0 {
		problems = append(problems, "no review was sent during the flood")
	}
	for _, err := range f.reviewErrs {
		problems = append(problems, "review failed: "+err.Error())
	}
	if len(problems) > 0 {
		return fmt.Errorf("flood: %s", strings.Join(problems, "; "))
	}
	return nil
}

func (f floodResult) String() string {
	return fmt.Sprintf("%d large bodies sent (%d refused before reading), peak RSS %.1f MiB; %d reviews answered meanwhile, slowest %s",
		f.bodies, f.refused, mib(f.peakRSS), f.reviews, ms(f.slowest))
}

// runFlood starts the webhook binary and floods it: conns TLS connections
// that each announce and send size-byte bodies, again and again, for d.
// Meanwhile a real review goes out every 100ms on a fresh connection, and
// each must be answered correctly.
func runFlood(bin string, conns, size int, d time.Duration, review []byte) (floodResult, error) {
	dir, err := os.MkdirTemp("", "sidecar-injector-flood-")
	if err != nil {
		return floodResult{}, err
	}
	defer os.RemoveAll(dir)
	if _, err := certs.Write(dir, certs.Options{Hosts: []string{"127.0.0.1"}, Validity: time.Hour}); err != nil {
		return floodResult{}, err
	}
	cfg := clientConfig(dir)
	ports := freePorts(2)
	t := webhook("webhook", bin, dir, ports[0], ports[1])
	t.cmd.Env = append(os.Environ(), "KUBECONFIG=") // no cluster: namespaces unlabelled
	// Its error log, a line for each refused body, is left out.
	if err := t.cmd.Start(); err != nil {
		return floodResult{}, err
	}
	defer stop(t.cmd)
	if err := waitServing(t.url, cfg, review); err != nil {
		return floodResult{}, err
	}

	var res floodResult
	var bodies, refused atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() { floodConn(t.url, cfg, size, done, &bodies, &refused) })
	}
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		start := time.Now()
		c, err := dial(t.url, cfg, request(t.url, review))
		if err == nil {
			err = c.post()
			c.close()
		}
		res.reviews++
		res.slowest = max(res.slowest, time.Since(start))
		if err != nil {
			res.reviewErrs = append(res.reviewErrs, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(done)
	wg.Wait()
	res.bodies, res.refused = bodies.Load(), refused.Load()
	res.peakRSS = cluster.ProcStatus(t.cmd.Process.Pid, "VmHWM:")
	return res, nil
}

// floodConn sends large bodies on one connection until done, dialling
// again whenever the server closes it.
func floodConn(url string, cfg *tls.Config, size int, done <-chan struct{}, bodies, refused *atomic.Int64) {
	host, path, _ := strings.Cut(strings.TrimPrefix(url, "https://"), "/")
	open := []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"flood","object":{"pad":"`)
	end := []byte(`"}}}`)
	pad := bytes.Repeat([]byte("a"), 64<<10)
	head := fmt.Sprintf("POST /%s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, host, size)
	for {
		select {
		case <-done:
			return
		default:
		}
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", host, cfg)
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		answered := make(chan bool, 1)
		go func() { // an early answer means the body was refused unread
			resp, err := http.ReadResponse(r, nil)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			answered <- err == nil && resp.StatusCode != http.StatusOK
		}()
		bodies.Add(1)
		if _, err := io.WriteString(c, head); err == nil {
			sent := 0
			write := func(b []byte) bool {
				if sent+len(b) > size {
					b = b[:size-sent]
				}
				n, err := c.Write(b)
				sent += n
				return err == nil
			}
			ok := write(open)
			for ok && sent < size-len(end) {
				chunk := pad
				if rest := size - len(end) - sent; rest < len(chunk) {
					chunk = chunk[:rest]
				}
				ok = write(chunk)
			}
			if ok {
				write(end)
			}
		}
		if <-answered {
			refused.Add(1)
		}
		c.Close()
	}
}
