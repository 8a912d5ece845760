package main

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// h2Conns is how many HTTP/2 connections carry the streams, as an API
// server keeps a few long-lived connections to a webhook Service.
const h2Conns = 2

// throughputH2 sends reviews on streams concurrent HTTP/2 streams over
// h2Conns connections, back to back, through net/http's HTTP/2 client.
func throughputH2(url string, cfg *tls.Config, body []byte, streams int, d time.Duration) (result, error) {
	clients := make([]*http.Client, h2Conns)
	for i := range clients {
		clients[i] = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: cfg.Clone(), ForceAttemptHTTP2: true, MaxConnsPerHost: 1,
		}}
		defer clients[i].CloseIdleConnections()
		if err := postH2(clients[i], url, body); err != nil { // opens the connection
			return result{}, err
		}
	}
	lat := make([][]time.Duration, streams)
	var errs atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range streams {
		client := clients[i%h2Conns]
		wg.Go(func() {
			for t0 := time.Now(); t0.Before(deadline); t0 = time.Now() {
				if err := postH2(client, url, body); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		})
	}
	wg.Wait()
	return summarize(lat, errs.Load(), time.Since(start), firstErr), nil
}

func postH2(c *http.Client, url string, body []byte) error {
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.ProtoMajor != 2 {
		return fmt.Errorf("answered over %s, not HTTP/2", resp.Proto)
	}
	if resp.StatusCode != http.StatusOK || !bytes.Contains(data, []byte(`"allowed":true`)) {
		return fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, data)
	}
	return nil
}
