package node

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
)

// inNamespaceEnv marks the test process re-run inside the node's network
// namespace.
const inNamespaceEnv = "SIDECAR_INJECTOR_NODE_NETNS"

// InNamespace reports whether this process runs in the node's network
// namespace.
func InNamespace() bool { return os.Getenv(inNamespaceEnv) != "" }

// Missing names what this machine lacks to run a node, or "".
func Missing() string {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, tool := range []string{"ip", "nsenter", "ldd", "containerd", "ctr", "runc", "/usr/lib/cni/bridge", "/bin/busybox", "/usr/bin/socat", "/usr/bin/prometheus-nginx-exporter"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory"); err != nil {
		if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
			missing = append(missing, "cgroups")
		}
	}
	return strings.Join(missing, ", ")
}

// Install installs, with apt-get, the Debian packages the node needs
// when they are missing: containerd, runc, the CNI plugins, and the
// programs the test images hold (busybox-static, socat,
// prometheus-nginx-exporter).
func Install() error {
	if Missing() == "" {
		return nil
	}
	for _, args := range [][]string{{"update", "-qq"}, {"install", "-y", "-qq", "containerd", "runc", "containernetworking-plugins", "busybox-static", "socat", "prometheus-nginx-exporter", "iproute2", "util-linux"}} {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %v: %s", args[0], err, out)
		}
	}
	return nil
}

// RunInNamespace creates the node's network namespace (a veth pair with
// both ends inside it, NodeIP on one), runs this program again inside it
// with the same arguments (and extra open files, from fd 3 on), removes
// the namespace, and returns the exit code. `nsenter --net` keeps /sys
// and the cgroups as they are, which kubelet needs (`ip netns exec`
// remounts /sys).
func RunInNamespace(extra ...*os.File) int {
	deleteStaleNamespaces()
	name := fmt.Sprintf("sidecar-injector-node-%d", os.Getpid())
	if err := createNamespace(name); err != nil {
		fmt.Fprintln(os.Stderr, "node network namespace:", err)
		deleteNamespace(name)
		return 1
	}
	defer deleteNamespace(name)
	cmd := exec.Command("nsenter", append([]string{"--net=/run/netns/" + name, "--", os.Args[0]}, os.Args[1:]...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), inNamespaceEnv+"="+name)
	cmd.ExtraFiles = extra // fds 3, 4...: sockets of the host's network
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// An interrupt reaches the process inside, which stops everything
	// it started before it exits.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(signals)
	go func() {
		for sig := range signals {
			_ = cmd.Process.Signal(sig)
		}
	}()
	if err := cmd.Wait(); err != nil {
		if exit, ok := err.(*exec.ExitError); ok {
			return exit.ExitCode()
		}
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func createNamespace(name string) error {
	for _, args := range [][]string{
		{"netns", "add", name},
		{"-n", name, "link", "set", "lo", "up"},
		{"-n", name, "link", "add", "node0", "type", "veth", "peer", "name", "node1"},
		{"-n", name, "addr", "add", NodeIP + "/24", "dev", "node0"},
		{"-n", name, "link", "set", "node0", "up"},
		{"-n", name, "link", "set", "node1", "up"},
		// kubelet wants a default route; it leads nowhere but the peer.
		{"-n", name, "route", "add", "default", "via", "192.168.250.254", "dev", "node0", "onlink"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

func deleteNamespace(name string) {
	_ = exec.Command("ip", "netns", "del", name).Run()
}

// deleteStaleNamespaces removes the node namespaces of runs that were
// killed before they could remove their own.
func deleteStaleNamespaces() {
	stale, _ := filepath.Glob("/run/netns/sidecar-injector-node-*")
	for _, ns := range stale {
		deleteNamespace(filepath.Base(ns))
	}
}
