package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/podpatterns/sidecar-injector/test/cluster"
)

// The network of the node and its Pods: the node's own address, and the
// range the CNI bridge gives Pods. Both live in the node's network
// namespace, never on the host's network.
const (
	NodeIP  = "192.168.250.1"
	PodCIDR = "10.250.0.0/24"
	Name    = "node-1"
)

// SandboxImage is the reference containerd runs as each Pod's sandbox.
const SandboxImage = "registry.k8s.io/pause:3.10"

// Node is a running containerd and kubelet.
type Node struct {
	Dir        string
	containerd *exec.Cmd
	kubelet    *exec.Cmd
	socket     string
	registry   *httptest.Server // the images, for containerd to pull
}

// Options say where the node's binaries and its cluster are.
type Options struct {
	Kubelet    string // the kubelet binary
	Kubeconfig string // reaches the API server from the node's namespace
	Images     []Image
	Logs       io.Writer
}

// Start runs containerd and kubelet in the current network namespace,
// imports the images, and waits until the node is Ready.
func Start(ctx context.Context, client kubernetes.Interface, o Options) (*Node, error) {
	dir, err := os.MkdirTemp("", "sidecar-injector-node-")
	if err != nil {
		return nil, err
	}
	n := &Node{Dir: dir, socket: filepath.Join(dir, "containerd.sock")}
	if err := n.start(ctx, client, o); err != nil {
		n.Stop()
		return nil, err
	}
	return n, nil
}

func (n *Node) start(ctx context.Context, client kubernetes.Interface, o Options) error {
	var err error
	if n.registry, err = startRegistry(o.Images); err != nil {
		return err
	}
	if err := n.writeConfigs(o); err != nil {
		return err
	}
	n.containerd = exec.Command("containerd", "--config", filepath.Join(n.Dir, "containerd.toml"))
	n.containerd.Stdout, n.containerd.Stderr = o.Logs, o.Logs
	n.containerd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := n.containerd.Start(); err != nil {
		return fmt.Errorf("starting containerd: %w", err)
	}
	if err := wait(ctx, "containerd's socket", func() bool { _, err := os.Stat(n.socket); return err == nil }); err != nil {
		return err
	}
	if err := makeCgroupRoot(); err != nil {
		return err
	}
	archive := filepath.Join(n.Dir, "images.tar")
	if err := Write(archive, o.Images...); err != nil {
		return err
	}
	if out, err := exec.Command("ctr", "--address", n.socket, "-n", "k8s.io", "images", "import", archive).CombinedOutput(); err != nil {
		return fmt.Errorf("importing images: %v: %s", err, out)
	}
	n.kubelet = exec.Command(o.Kubelet,
		"--config", filepath.Join(n.Dir, "kubelet.yaml"),
		"--kubeconfig", o.Kubeconfig,
		"--container-runtime-endpoint", "unix://"+n.socket,
		"--hostname-override", Name,
		"--node-ip", NodeIP,
		"--root-dir", filepath.Join(n.Dir, "kubelet"),
		"--cert-dir", filepath.Join(n.Dir, "kubelet-pki"),
		"--v", "2",
	)
	n.kubelet.Stdout, n.kubelet.Stderr = o.Logs, o.Logs
	n.kubelet.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := n.kubelet.Start(); err != nil {
		return fmt.Errorf("starting kubelet: %w", err)
	}
	return wait(ctx, "node "+Name+" to be Ready", func() bool {
		node, err := client.CoreV1().Nodes().Get(ctx, Name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return true
			}
		}
		return false
	})
}

// writeConfigs writes containerd's, the CNI's and kubelet's
// configuration under the node's directory.
func (n *Node) writeConfigs(o Options) error {
	cni := filepath.Join(n.Dir, "cni")
	if err := os.MkdirAll(cni, 0o755); err != nil {
		return err
	}
	files := map[string]string{
		"containerd.toml": fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
[grpc]
  address = %[3]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[4]q
  restrict_oom_score_adj = true
  # The Pods' network namespaces under the state directory: Cleanup
  # finds them there, and never touches another runtime's.
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[5]q
%[6]s`, filepath.Join(n.Dir, "containerd"), filepath.Join(n.Dir, "containerd-state"), n.socket, SandboxImage, cni, mirrorConfig(n.registry.Listener.Addr().String())),
		"cni/10-pods.conflist": fmt.Sprintf(`{"cniVersion": "0.4.0", "name": "pods", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "dataDir": %q}},
  {"type": "portmap", "capabilities": {"portMappings": true}}
]}`, PodCIDR, filepath.Join(n.Dir, "cni-ipam")),
		"cni/99-loopback.conf": `{"cniVersion": "0.4.0", "name": "lo", "type": "loopback"}`,
		"kubelet.yaml": `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: true
cgroupRoot: /` + cgroupRoot + `
enforceNodeAllocatable: []
failSwapOn: false
resolvConf: ""
evictionHard: {}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization:
  mode: AlwaysAllow
address: ` + NodeIP + `
readOnlyPort: 0
healthzPort: 0
serializeImagePulls: false
fileCheckFrequency: 1s
nodeStatusUpdateFrequency: 2s
syncFrequency: 5s
`,
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(n.Dir, name), []byte(text), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Stop ends kubelet, every container and containerd, and cleans up
// after them (see Cleanup). It is safe on a node that did not start.
func (n *Node) Stop() {
	cluster.StopProcess(n.kubelet, 10*time.Second)
	cluster.StopProcess(n.containerd, 10*time.Second)
	if n.registry != nil {
		n.registry.Close()
	}
	Cleanup(n.Dir)
}

// Cleanup removes what a node leaves on the machine, also after a run
// that was killed, and nothing else: the processes of its Pods (the
// cgroups under cgroupRoot), the shims of its containerd (the socket
// under a sidecar-injector-node-* directory), the mounts under dir (the
// Pods' network namespaces among them) and dir itself; with dir "", every
// sidecar-injector-node-* directory an earlier run left.
func Cleanup(dir string) {
	for range 100 { // the shims reap what they started
		pids := cgroupProcs()
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = exec.Command("pkill", "-9", "-f", "containerd-shim-runc-v2 .*-address [^ ]*/sidecar-injector-node-[^/ ]*/containerd.sock").Run()
	dirs := []string{dir}
	if dir == "" {
		dirs, _ = filepath.Glob(filepath.Join(os.TempDir(), "sidecar-injector-node-*"))
	}
	for _, d := range dirs {
		unmountUnder(d)
		_ = os.RemoveAll(d)
	}
	removeCgroups()
}

// unmountUnder unmounts everything mounted under dir, deepest first.
func unmountUnder(dir string) {
	mounts, _ := os.ReadFile("/proc/self/mounts")
	var under []string
	for line := range strings.SplitSeq(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
			under = append(under, f[1])
		}
	}
	for i := len(under) - 1; i >= 0; i-- {
		_ = syscall.Unmount(under[i], syscall.MNT_DETACH)
	}
}

// cgroupRoot is the cgroup kubelet puts every Pod under, in each
// hierarchy: this node's own, so Cleanup leaves any other kubelet's
// kubepods alone.
const cgroupRoot = "sidecar-injector-node"

// hierarchies are the cgroup v1 hierarchies and the hybrid host's
// unified one.
func hierarchies() []string {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*")
	return dirs
}

// makeCgroupRoot creates cgroupRoot in every hierarchy, with the cpuset
// of its parent (a new cpuset starts empty on cgroup v1).
func makeCgroupRoot() error {
	for _, h := range hierarchies() {
		dir := filepath.Join(h, cgroupRoot)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("cgroup root: %w", err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if data, err := os.ReadFile(filepath.Join(h, f)); err == nil {
				if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
					return fmt.Errorf("cgroup root: %w", err)
				}
			}
		}
	}
	return nil
}

// roots are cgroupRoot in each hierarchy, where it exists.
func roots() []string {
	var out []string
	for _, h := range hierarchies() {
		if _, err := os.Stat(filepath.Join(h, cgroupRoot)); err == nil {
			out = append(out, filepath.Join(h, cgroupRoot))
		}
	}
	return out
}

// cgroupProcs lists the processes in the node's cgroups.
func cgroupProcs() []int {
	seen := map[int]bool{}
	for _, root := range roots() {
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.Name() != "cgroup.procs" {
				return nil
			}
			data, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(data)) {
				if pid, err := strconv.Atoi(f); err == nil {
					seen[pid] = true
				}
			}
			return nil
		})
	}
	return slices.Collect(maps.Keys(seen))
}

// removeCgroups removes the node's cgroups, cgroupRoot included, deepest
// first, once their processes are gone.
func removeCgroups() {
	for _, root := range roots() {
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			for range 50 { // a killed process leaves its cgroup a moment later
				if err := syscall.Rmdir(dirs[i]); err == nil || errors.Is(err, os.ErrNotExist) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
}

// wait polls ok for at most two minutes.
func wait(ctx context.Context, what string, ok func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return cluster.WaitFor(ctx, what, ok)
}
