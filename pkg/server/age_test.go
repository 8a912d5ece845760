package server

import (
	"bytes"
	"crypto/tls"
	"net/http"
	"net/http/httptrace"
	"testing"
	"time"
)

// Past --max-connection-age an HTTP/2 client is sent GOAWAY, dials again,
// and no request fails on the way.
func TestConnectionsAreClosedAfterTheirAge(t *testing.T) {
	s := start(t, func(o *Options) { o.MaxConnectionAge = 200 * time.Millisecond })
	for name, h2 := range map[string]bool{"HTTP/2": true, "HTTP/1.1": false} {
		t.Run(name, func(t *testing.T) {
			client := s.newClient(t, false)
			tr := client.Transport.(*http.Transport)
			tr.ForceAttemptHTTP2 = h2
			if !h2 {
				tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			conns := map[string]bool{}
			deadline := time.Now().Add(1200 * time.Millisecond)
			n := 0
			for time.Now().Before(deadline) {
				var local string
				trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { local = i.Conn.LocalAddr().String() }}
				req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), http.MethodPost, s.url(), bytes.NewReader(reviewFor("u", "content-filler")))
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					t.Fatalf("request %d failed: %v", n, err)
				}
				if h2 != (resp.ProtoMajor == 2) {
					t.Fatalf("protocol %s", resp.Proto)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("request %d: HTTP %d", n, resp.StatusCode)
				}
				conns[local] = true
				n++
				time.Sleep(20 * time.Millisecond)
			}
			if len(conns) < 3 {
				t.Errorf("%d requests over 1.2s used %d connections; want a new one at least every 220ms", n, len(conns))
			}
		})
	}
}
