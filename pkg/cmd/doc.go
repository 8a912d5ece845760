// Package cmd holds the sidecar-injector command line: one cobra command per
// subcommand, each testable without a network (serve takes the function it
// runs as a parameter).
package cmd
