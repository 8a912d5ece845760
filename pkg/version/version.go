// Package version holds the build's version, stamped with -ldflags.
package version

// Version is set at build time with
// -X github.com/podpatterns/sidecar-injector/pkg/version.Version=...
var Version = "dev"
