// Command sidecar-injector is a Kubernetes mutating admission webhook that
// injects vetted sidecar, ambassador and adapter containers into Pods, and
// the offline tools that preview and diagnose the result.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/podpatterns/sidecar-injector/pkg/cmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := cmd.Execute(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
