// Command pause is the sandbox image's process: it holds a Pod's
// namespaces and exits on SIGTERM or SIGINT. The node tests build it into
// the image the container runtime uses as its sandbox image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
