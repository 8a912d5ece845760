package server

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/podpatterns/sidecar-injector/pkg/admission"
	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/pkg/statuskey"
	"github.com/podpatterns/sidecar-injector/pkg/version"
)

// Run serves until ctx is done, then stops taking new work: /readyz fails
// at once, in-flight requests finish within ShutdownGrace, and Run returns.
func Run(ctx context.Context, o Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	o.CertFile, o.KeyFile = o.certFiles()
	log := o.Log

	m := newMetrics(o.Registry)
	o.Registry.MustRegister(certificateExpiry(o.CertFile))
	cat, err := catalog.LoadOrDefault(o.CatalogPath)
	if err != nil {
		return err
	}
	store := catalog.NewStore(cat)
	log.Info("Catalog loaded", "path", catalog.Describe(o.CatalogPath), "version", cat.Version, "templates", cat.Names())

	// Work that lives as long as the server: the catalog watcher and the
	// namespace cache stop after the HTTP servers drain.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	if o.CatalogPath != "" {
		go watchCatalog(bg, o, store, m)
	}
	handler, nsSynced, err := newHandler(bg, o, store, m)
	if err != nil {
		return err
	}
	webhook, err := newWebhookServer(bg, o, handler)
	if err != nil {
		return err
	}
	var stopping atomic.Bool
	ready := map[string]healthz.Checker{
		"shutdown":   check(func() bool { return !stopping.Load() }, "shutting down"),
		"catalog":    check(func() bool { return store.Current() != nil }, "no catalog loaded"),
		"namespaces": check(nsSynced, "namespace cache not synced"),
		"webhook":    check(webhook.serving.Load, "webhook not serving"),
	}
	side, err := listenSide(o, ready)
	if err != nil {
		_ = webhook.ln.Close()
		return err
	}

	log.Info("Serving", "webhook", fmt.Sprintf("https://%s%s", net.JoinHostPort(o.Host, fmt.Sprint(o.Port)), admission.Path),
		"health", o.HealthAddr, "metrics", o.MetricsAddr, "version", version.Version)
	return serve(ctx, o, webhook, side, &stopping)
}

// serve runs the listeners until ctx is done or one fails, then shuts
// down: not ready at once, the webhook's in-flight requests given
// ShutdownGrace, the side servers a second.
func serve(ctx context.Context, o Options, webhook *webhookServer, side []sideServer, stopping *atomic.Bool) error {
	errc := make(chan error, 1+len(side))
	hookDone := make(chan struct{})
	go func() {
		defer close(hookDone)
		if err := webhook.serve(); err != nil {
			errc <- fmt.Errorf("webhook server: %w", err)
		}
	}()
	for _, s := range side {
		go func() {
			if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s server: %w", s.name, err)
			}
		}()
	}
	var runErr error
	select {
	case <-ctx.Done():
		o.Log.Info("Shutting down: not ready, finishing in-flight requests", "grace", o.ShutdownGrace.String())
	case runErr = <-errc:
		o.Log.Error(runErr, "Server failed; shutting down")
	}
	stopping.Store(true)
	graceCtx, cancel := context.WithTimeout(context.Background(), o.ShutdownGrace)
	defer cancel()
	if err := webhook.srv.Shutdown(graceCtx); err != nil {
		o.Log.Info("Shutdown grace period over; requests still in flight are abandoned", "error", err.Error())
		_ = webhook.srv.Close()
	}
	<-hookDone
	closeCtx, cancelClose := context.WithTimeout(context.Background(), time.Second)
	defer cancelClose()
	for _, s := range side {
		_ = s.srv.Shutdown(closeCtx)
	}
	return runErr
}

// watchCatalog reloads the catalog on change until ctx is done.
func watchCatalog(ctx context.Context, o Options, store *catalog.Store, m *serverMetrics) {
	w := &catalog.Watcher{Path: o.CatalogPath, Store: store, Log: o.Log, OnReload: func(_ *catalog.Catalog, err error) {
		if err != nil {
			m.reloads.WithLabelValues("failure").Inc()
		} else {
			m.reloads.WithLabelValues("success").Inc()
		}
	}}
	if err := w.Run(ctx); err != nil {
		o.Log.Error(err, "Catalog watcher stopped; changes on disk are no longer picked up")
	}
}

// namespaceLabels returns the namespace label source and whether it has
// synced; with no cluster, labels are empty and always "synced".
// namespaceInfo is the namespace labels and resource rules the handler
// reads, both nil with no cluster.
func namespaceInfo(ctx context.Context, o Options) (admission.NamespaceLabels, admission.ResourceRules, func() bool, error) {
	if o.RestConfig == nil {
		o.Log.Info("No cluster configured; every namespace is taken as unlabelled, so only policies that match an empty label set apply, and as having no LimitRanges or ResourceQuotas")
		return nil, nil, func() bool { return true }, nil
	}
	nc, err := newNamespaceCache(ctx, o.RestConfig)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("namespace cache: %w", err)
	}
	return nc, nc, nc.synced, nil
}

func check(ok func() bool, problem string) healthz.Checker {
	return func(*http.Request) error {
		if !ok() {
			return errors.New(problem)
		}
		return nil
	}
}

// sideServer is a plain HTTP server next to the webhook.
type sideServer struct {
	name string
	srv  *http.Server
	ln   net.Listener
}

// maxSideConns caps the connections of each side server: kubelet's
// probes and a few scrapers need a handful.
const maxSideConns = 64

// listenSide opens the health, metrics and (when asked) pprof listeners,
// all or none.
func listenSide(o Options, ready map[string]healthz.Checker) ([]sideServer, error) {
	readyz := &healthz.Handler{Checks: ready}
	health := http.NewServeMux()
	health.Handle("/healthz", http.StripPrefix("/healthz", &healthz.Handler{Checks: map[string]healthz.Checker{"ping": healthz.Ping}}))
	health.Handle("/readyz", http.StripPrefix("/readyz", readyz))
	health.Handle("/readyz/", http.StripPrefix("/readyz", readyz))
	metrics := http.NewServeMux()
	metrics.Handle("/metrics", promhttp.HandlerFor(o.Registry, promhttp.HandlerOpts{}))
	wanted := []struct {
		addr, name string
		h          http.Handler
		write      time.Duration // a pprof profile takes 30s by default
	}{{o.HealthAddr, "health", health, 10 * time.Second}, {o.MetricsAddr, "metrics", metrics, 10 * time.Second}, {o.PprofAddr, "pprof", pprofMux(), 2 * time.Minute}}
	var side []sideServer
	for _, w := range wanted {
		if w.addr == "" || w.addr == "0" {
			continue
		}
		ln, err := net.Listen("tcp", w.addr)
		if err != nil {
			for _, s := range side {
				_ = s.ln.Close()
			}
			return nil, fmt.Errorf("%s server: %w", w.name, err)
		}
		srv := &http.Server{
			Handler:           w.h,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      w.write,
			IdleTimeout:       30 * time.Second,
			MaxHeaderBytes:    maxHeaderBytes,
		}
		side = append(side, sideServer{w.name, srv, netutil.LimitListener(ln, maxSideConns)})
	}
	return side, nil
}

func pprofMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

type serverMetrics struct {
	admission *admission.Metrics
	reloads   *prometheus.CounterVec
}

// certificateExpiry exports when the serving certificate on disk expires,
// read at each scrape so a rotation shows at once; 0 when it cannot be
// read.
func certificateExpiry(certFile string) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sidecar_injector_certificate_expiry_timestamp_seconds",
		Help: "When the serving certificate expires, in seconds since the Unix epoch.",
	}, func() float64 {
		data, err := os.ReadFile(certFile)
		if err != nil {
			return 0
		}
		block, _ := pem.Decode(data)
		if block == nil {
			return 0
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return 0
		}
		return float64(cert.NotAfter.Unix())
	})
}

// newMetrics creates and registers the server's metrics, with the Go and
// process collectors unless the registry has them already.
func newMetrics(reg ctrlmetrics.RegistererGatherer) *serverMetrics {
	m := &serverMetrics{
		admission: admission.NewMetrics(reg),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_injector_catalog_reloads_total",
			Help: "Catalog reloads from disk by result: success or failure (the old catalog kept serving).",
		}, []string{"result"}),
	}
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("failure")
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sidecar_injector_build_info",
		Help: "Build information; always 1.",
	}, []string{"version", "goversion"})
	build.WithLabelValues(version.Version, runtime.Version()).Set(1)
	reg.MustRegister(m.reloads, build)
	// controller-runtime's registry may hold Go and process collectors of
	// its own already (its packages register them as they are linked in);
	// either set serves.
	for _, c := range []prometheus.Collector{collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		_ = reg.Register(c)
	}
	return m
}

// newHandler is the admission handler over the catalog store, with the
// status keys and the namespace caches, and whether the caches synced.
func newHandler(ctx context.Context, o Options, store *catalog.Store, m *serverMetrics) (*admission.Handler, func() bool, error) {
	namespaces, rules, synced, err := namespaceInfo(ctx, o)
	if err != nil {
		return nil, nil, err
	}
	keys, err := statusKeys(o)
	if err != nil {
		return nil, nil, err
	}
	return &admission.Handler{
		Catalog:         store.Current,
		Keys:            keys,
		Namespaces:      namespaces,
		Rules:           rules,
		Metrics:         m.admission,
		Log:             o.Log.WithName("admission"),
		MaxRequestBytes: o.MaxRequestBytes,
	}, synced, nil
}

// statusKeys reads the keys of StatusKeyDir, or makes one for this
// process.
func statusKeys(o Options) (*inject.Keys, error) {
	if o.StatusKeyDir != "" {
		return statuskey.Read(o.StatusKeyDir)
	}
	o.Log.Info("No --status-key-dir: status entries are signed with a random key of this process; other replicas and the controller cannot verify them")
	return inject.NewKeys(statuskey.New())
}
