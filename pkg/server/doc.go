// Package server runs `sidecar-injector serve`: the HTTPS admission
// webhook (controller-runtime's webhook server, with certificates reloaded
// from disk), the health and metrics endpoints, the catalog watcher and the
// namespace label cache, with a graceful shutdown.
package server
