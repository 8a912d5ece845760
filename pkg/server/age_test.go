package server

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podpatterns/sidecar-injector/pkg/admission"
	"github.com/podpatterns/sidecar-injector/pkg/certs"
)

// Past --max-connection-age an HTTP/2 client is sent GOAWAY, an HTTP/1.1
// client "Connection: close"; either dials again, and no request fails on
// the way. The test counts reconnections, not time: it sends until the
// client has used three connections, and fails only if 500 requests
// spread over many ages never get there.
func TestConnectionsAreClosedAfterTheirAge(t *testing.T) {
	s := start(t, func(o *Options) { o.MaxConnectionAge = 50 * time.Millisecond })
	for name, h2 := range map[string]bool{"HTTP/2": true, "HTTP/1.1": false} {
		t.Run(name, func(t *testing.T) {
			client := s.newClient(t, false)
			tr := client.Transport.(*http.Transport)
			tr.ForceAttemptHTTP2 = h2
			if !h2 {
				tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			conns := map[string]bool{}
			n := 0
			for ; n < 500 && len(conns) < 3; n++ {
				local, proto := s.review(t, client)
				if h2 != (proto == 2) {
					t.Fatalf("HTTP/%d", proto)
				}
				conns[local] = true
				time.Sleep(20 * time.Millisecond)
			}
			if len(conns) < 3 {
				t.Errorf("%d requests, each 20ms apart, used %d connections; want a new one after each 50ms age", n, len(conns))
			}
		})
	}
}

// With a maximum age of 0 a connection lives on: every request of a
// keep-alive client goes over the first one.
func TestConnectionsLiveOnWithoutAnAge(t *testing.T) {
	s := start(t, func(o *Options) { o.MaxConnectionAge = 0 })
	client := s.newClient(t, false)
	conns := map[string]bool{}
	for range 20 {
		local, _ := s.review(t, client)
		conns[local] = true
		time.Sleep(5 * time.Millisecond)
	}
	if len(conns) != 1 {
		t.Errorf("20 requests used %d connections; want 1", len(conns))
	}
}

// review sends one review and returns the local address of the
// connection it went over and the HTTP major version; it fails the test
// unless the answer is 200.
func (s *testServer) review(t *testing.T, client *http.Client) (string, int) {
	t.Helper()
	var local string
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { local = i.Conn.LocalAddr().String() }}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), http.MethodPost, s.url(), bytes.NewReader(reviewFor("u", "content-filler")))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("request failed: %v", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body) // else HTTP/1.1 cannot reuse the connection
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP %d", resp.StatusCode)
	}
	return local, resp.ProtoMajor
}

// A header larger than any review needs is refused once it passes the
// limit, not read to a megabyte; a review after it is served.
func TestOversizedHeadersAreRefused(t *testing.T) {
	s := start(t)
	pem, err := os.ReadFile(filepath.Join(s.certDir, certs.CACert))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	conn, err := tls.Dial("tcp", strings.TrimPrefix(strings.TrimSuffix(s.url(), admission.Path), "https://"), &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	go func() {
		_, _ = conn.Write([]byte("POST " + admission.Path + " HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("a", 1<<20) + "\r\n\r\n"))
	}()
	status, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.Contains(status, "431") {
		t.Errorf("a 1 MiB header: %q, %v; want 431 Request Header Fields Too Large", status, err)
	}
	if _, proto := s.review(t, s.newClient(t, true)); proto == 0 {
		t.Error("no review served after the refusal")
	}
}
