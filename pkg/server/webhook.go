package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/certwatcher"

	"github.com/podpatterns/sidecar-injector/pkg/admission"
)

// webhookServer serves the admission handler over TLS with certificates
// from controller-runtime's certwatcher. It is not controller-runtime's
// webhook.Server because that one derives every connection's context from
// its run context: cancelling it at SIGTERM fails TLS handshakes still in
// progress, which the shutdown test caught. Here connections live on a
// background context and http.Server.Shutdown drains them.
type webhookServer struct {
	srv     *http.Server
	ln      net.Listener
	serving atomic.Bool
}

func newWebhookServer(ctx context.Context, o Options, h http.Handler) (*webhookServer, error) {
	cw, err := certwatcher.New(o.CertFile, o.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("loading the serving certificate: %w", err)
	}
	go func() {
		if err := cw.Start(ctx); err != nil {
			o.Log.Error(err, "Certificate watcher stopped; rotated certificates are no longer picked up")
		}
	}()
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: cw.GetCertificate}
	if o.ClientCAFile != "" {
		pem, err := os.ReadFile(o.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("reading the client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client CA %s holds no PEM certificate", o.ClientCAFile)
		}
		tlsConfig.ClientCAs, tlsConfig.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	mux := http.NewServeMux()
	mux.Handle(admission.Path, h)
	w := &webhookServer{srv: &http.Server{
		Handler:           mux,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 10 * time.Second,
		// A request never takes longer than the API server's longest
		// webhook timeout (30s): a slow or stuck client cannot pin a
		// goroutine forever.
		ReadTimeout:    30 * time.Second,
		WriteTimeout:   30 * time.Second,
		IdleTimeout:    90 * time.Second,
		MaxHeaderBytes: 1 << 20,
		ErrorLog:       nil,
	}}
	w.ln, err = net.Listen("tcp", net.JoinHostPort(o.Host, strconv.Itoa(o.Port)))
	if err != nil {
		return nil, fmt.Errorf("webhook listener: %w", err)
	}
	return w, nil
}

// serve blocks until Shutdown or Close.
func (w *webhookServer) serve() error {
	w.serving.Store(true)
	defer w.serving.Store(false)
	if err := w.srv.ServeTLS(w.ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
