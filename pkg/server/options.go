package server

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Options configure the server. NewOptions gives the defaults; the serve
// command binds its flags to these fields.
type Options struct {
	// CatalogPath is a catalog file or directory; the embedded default
	// catalog if empty.
	CatalogPath string
	// StatusKeyDir holds the keys that sign and verify status entries
	// (see package statuskey). If empty, a random key of this process
	// signs: a reinvocation that reaches another replica, and the
	// controller, cannot verify what it signed.
	StatusKeyDir string
	// CertDir holds tls.crt and tls.key; CertFile and KeyFile, when set,
	// name the files instead.
	CertDir, CertFile, KeyFile string
	// Host to listen on; all interfaces if empty.
	Host string
	// Port of the webhook; 9443 by default.
	Port int
	// MetricsAddr serves /metrics; ":8080" by default, "0" or "" disables it.
	MetricsAddr string
	// HealthAddr serves /healthz and /readyz; ":8081" by default, "0" or
	// "" disables it.
	HealthAddr string
	// PprofAddr serves net/http/pprof when set; off by default.
	PprofAddr string
	// ShutdownGrace bounds the wait for in-flight requests after SIGTERM;
	// 25s by default.
	ShutdownGrace time.Duration
	// MaxRequestBytes caps a request body;
	// admission.DefaultMaxRequestBytes if zero.
	MaxRequestBytes int64
	// MaxConnectionAge closes a webhook connection gracefully once it is
	// this old (plus up to a tenth more), so clients reconnect through the
	// Service and load spreads over replicas; 5m by default, 0 keeps
	// connections open.
	MaxConnectionAge time.Duration
	// ClientCAFile, when set, makes the webhook require a client
	// certificate signed by one of its CAs (PEM).
	ClientCAFile string
	// RestConfig reaches the API server for namespace labels. With nil,
	// there is no cluster (as in `make run`): every namespace is taken as
	// unlabelled.
	RestConfig *rest.Config
	// Registry receives the metrics; controller-runtime's registry by
	// default. A process runs one server on a registry.
	Registry ctrlmetrics.RegistererGatherer
	Log      logr.Logger
}

// NewOptions returns the options with their defaults.
func NewOptions() Options {
	return Options{
		Port:             9443,
		MetricsAddr:      ":8080",
		HealthAddr:       ":8081",
		ShutdownGrace:    25 * time.Second,
		MaxConnectionAge: 5 * time.Minute,
		Registry:         ctrlmetrics.Registry,
		Log:              logr.Discard(),
	}
}

// Validate says what is wrong with the options, in the serve command's
// flag names.
func (o Options) Validate() error {
	switch {
	case o.CertFile == "" && o.KeyFile == "" && o.CertDir == "":
		return errors.New("no serving certificate: set --cert-dir, or --tls-cert-file and --tls-key-file (`sidecar-injector certs` makes development ones)")
	case (o.CertFile == "") != (o.KeyFile == "") && o.CertDir == "":
		return errors.New("--tls-cert-file and --tls-key-file go together")
	case o.Port < 1 || o.Port > 65535:
		return fmt.Errorf("--port %d is not a port", o.Port)
	case o.ShutdownGrace <= 0:
		return fmt.Errorf("--shutdown-grace %s must be positive", o.ShutdownGrace)
	case o.MaxConnectionAge < 0:
		return fmt.Errorf("--max-connection-age %s must not be negative; 0 keeps connections open", o.MaxConnectionAge)
	case o.Registry == nil:
		return errors.New("no metrics registry")
	}
	return nil
}

// certFiles are the certificate and key to serve: the files named, or
// tls.crt and tls.key in CertDir.
func (o Options) certFiles() (cert, key string) {
	cert, key = o.CertFile, o.KeyFile
	if cert == "" {
		cert = filepath.Join(o.CertDir, "tls.crt")
	}
	if key == "" {
		key = filepath.Join(o.CertDir, "tls.key")
	}
	return cert, key
}
