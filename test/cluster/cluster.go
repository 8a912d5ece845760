// Package cluster starts a real control plane for the end-to-end suite and
// the demo: kube-apiserver and etcd through controller-runtime's envtest,
// kube-controller-manager (so Deployments get Pods), and the webhook as
// the sidecar-injector binary serves it, installed from deploy/.
package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/podpatterns/sidecar-injector/pkg/manifest"
)

// Cluster is a running control plane.
type Cluster struct {
	Config     *rest.Config
	Client     kubernetes.Interface
	Kubeconfig string // admin kubeconfig file
	Dir        string // scratch directory, removed by Stop

	env *envtest.Environment
	kcm *exec.Cmd
}

// Start runs kube-apiserver, etcd and kube-controller-manager from
// KUBEBUILDER_ASSETS. Output of the controller manager goes to logs.
// apiserverFlags are name=value pairs added to kube-apiserver's flags.
func Start(logs io.Writer, apiserverFlags ...string) (*Cluster, error) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		return nil, errors.New("KUBEBUILDER_ASSETS is not set: run `make test` (or `bash test/controlplane.sh`), which builds or finds kube-apiserver, etcd and kube-controller-manager")
	}
	for _, b := range []string{"kube-apiserver", "etcd", "kube-controller-manager"} {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil {
			return nil, fmt.Errorf("KUBEBUILDER_ASSETS=%s lacks %s: %w", assets, b, err)
		}
	}
	dir, err := os.MkdirTemp("", "sidecar-injector-cluster-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, env: &envtest.Environment{BinaryAssetsDirectory: assets}}
	for _, f := range apiserverFlags {
		name, value, _ := strings.Cut(f, "=")
		c.env.ControlPlane.GetAPIServer().Configure().Append(name, value)
	}
	if c.Config, err = c.env.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting kube-apiserver and etcd: %w", err)
	}
	user, err := c.env.ControlPlane.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		c.Stop()
		return nil, err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		c.Stop()
		return nil, err
	}
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, kc, 0o600); err != nil {
		c.Stop()
		return nil, err
	}
	c.Config = user.Config()
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		c.Stop()
		return nil, err
	}
	c.kcm = exec.Command(filepath.Join(assets, "kube-controller-manager"),
		"--kubeconfig="+c.Kubeconfig,
		"--controllers=deployment-controller,replicaset-controller,job-controller,resourcequota-controller",
		"--leader-elect=false",
		"--secure-port=0",
		"--concurrent-deployment-syncs=2",
		"--concurrent-replicaset-syncs=2",
		"--concurrent-job-syncs=2",
	)
	c.kcm.Stdout, c.kcm.Stderr = logs, logs
	if err := c.kcm.Start(); err != nil {
		c.Stop()
		return nil, fmt.Errorf("starting kube-controller-manager: %w", err)
	}
	return c, nil
}

// Stop ends every process and removes the scratch directory.
func (c *Cluster) Stop() {
	StopProcess(c.kcm, 5*time.Second)
	if c.env != nil {
		_ = c.env.Stop()
	}
	os.RemoveAll(c.Dir)
}

// Render builds a kustomization directory, as `kubectl apply -k` would.
func Render(dir string) ([]*unstructured.Unstructured, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize %s: %w", dir, err)
	}
	text, err := res.AsYaml()
	if err != nil {
		return nil, err
	}
	docs, err := manifest.Split(bytes.NewReader(text))
	if err != nil {
		return nil, err
	}
	objs := make([]*unstructured.Unstructured, len(docs))
	for i, d := range docs {
		objs[i] = &unstructured.Unstructured{}
		if err := objs[i].UnmarshalJSON(d.JSON); err != nil {
			return nil, fmt.Errorf("kustomize %s: document %d: %w", dir, d.Index, err)
		}
	}
	return objs, nil
}

// FreePorts returns n distinct ports that were free a moment ago on
// 127.0.0.1: all are held open until each is chosen, so none repeats.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// RepoRoot finds the repository root from the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// WaitFor polls ok until it returns true or ctx ends.
func WaitFor(ctx context.Context, what string, ok func() bool) error {
	for !ok() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out waiting for %s", what)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// StopProcess ends a started command: SIGTERM, then SIGKILL once grace
// has passed. A command never started is left alone.
func StopProcess(cmd *exec.Cmd, grace time.Duration) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}
