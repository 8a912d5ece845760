package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/net/netutil"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"

	"github.com/podpatterns/sidecar-injector/pkg/admission"
)

// maxHeaderBytes sizes request headers to what the API server sends
// with a review (a few hundred bytes), with room to spare: Go's default
// of 1 MiB lets 200 unfinished headers hold 200 MiB.
const maxHeaderBytes = 32 << 10

// maxWebhookConns caps the webhook's open connections. The API servers
// keep a few each (HTTP/2 multiplexes their reviews); past the cap a new
// connection waits in the listen backlog until one closes, so a flood of
// idle connections cannot take the memory and descriptors.
const maxWebhookConns = 1024

// webhookServer serves the admission handler over TLS with certificates
// from controller-runtime's certwatcher. It is not controller-runtime's
// webhook.Server because that one derives every connection's context from
// its run context: cancelling it at SIGTERM fails TLS handshakes still in
// progress. Here connections live on a background context and
// http.Server.Shutdown drains them.
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
		Handler:           closeAged(mux),
		ConnContext:       connectionAge(o.MaxConnectionAge),
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 10 * time.Second,
		// A request never takes longer than the API server's longest
		// webhook timeout (30s): a slow or stuck client cannot pin a
		// goroutine forever.
		ReadTimeout:  30 * time.Second,
		WriteTimeout: 30 * time.Second,
		// The API server keeps its connections busy; an idle one is
		// someone else's and holds memory and a descriptor.
		IdleTimeout:    30 * time.Second,
		MaxHeaderBytes: maxHeaderBytes,
	}}
	ln, err := net.Listen("tcp", net.JoinHostPort(o.Host, strconv.Itoa(o.Port)))
	if err != nil {
		return nil, fmt.Errorf("webhook listener: %w", err)
	}
	w.ln = netutil.LimitListener(ln, maxWebhookConns)
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

type closeAtKey struct{}

// connectionAge gives each connection the time after which it is closed:
// maxAge plus up to a tenth more, so that connections opened together do
// not all reconnect at once. With maxAge <= 0 connections live on.
func connectionAge(maxAge time.Duration) func(context.Context, net.Conn) context.Context {
	return func(ctx context.Context, _ net.Conn) context.Context {
		if maxAge <= 0 {
			return ctx
		}
		jitter := time.Duration(rand.Int64N(int64(maxAge)/10 + 1))
		return context.WithValue(ctx, closeAtKey{}, time.Now().Add(maxAge+jitter))
	}
}

// closeAged answers a request on a connection past its age with
// "Connection: close": HTTP/1.1 closes the connection after the answer,
// HTTP/2 sends GOAWAY and finishes the streams in flight. The client then
// dials again through the Service, which spreads the API server's long
// connections over the replicas, new ones included.
func closeAged(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if at, ok := r.Context().Value(closeAtKey{}).(time.Time); ok && time.Now().After(at) {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
}
