// Package server runs `sidecar-injector serve`: the HTTPS admission
// webhook (a net/http server of its own, with certificates reloaded from
// disk by controller-runtime's certwatcher), the health and metrics
// endpoints, the catalog watcher and the namespace cache (labels,
// LimitRanges, ResourceQuotas), with a graceful shutdown.
package server
