package node

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/podpatterns/sidecar-injector/test/cluster"
)

// The images Pods run, under the references the default catalog uses:
// Debian's busybox-static (the tests' apps and the content-filler),
// Debian's socat with its libraries (the ambassador) and Debian's
// prometheus-nginx-exporter (the metrics adapter).
const (
	Busybox = "docker.io/library/busybox:1.37.0"
	// BusyboxNext is the same busybox under the next patch release's
	// tag: what a catalog moves its sidecars to.
	BusyboxNext = "docker.io/library/busybox:1.37.1"
	// BusyboxSized is busybox under a tag no catalog moves: the sidecars
	// whose cpu and memory the resize tests move, and nothing else.
	BusyboxSized = "docker.io/library/busybox:1.37.2"
	Socat        = "docker.io/alpine/socat:1.8.0.3"
	Exporter     = "docker.io/nginx/nginx-prometheus-exporter:1.4.2"
)

// Env is a control plane, a node and the webhook serving a catalog, all
// in the current network namespace.
type Env struct {
	Cluster *cluster.Cluster
	Node    *Node
	Webhook *cluster.Webhook
	// KeyDir holds the status key the webhook signs with, also in the
	// Secret live audit reads.
	KeyDir string
	dir    string
}

// Up starts an Env: the control plane, the node with the images, and
// the webhook built from this repository with the catalog files given,
// installed through deploy/'s webhook configuration. Logs of every part
// go to logs.
func Up(ctx context.Context, logs *os.File, catalogFiles map[string][]byte) (*Env, error) {
	e := &Env{}
	if err := e.up(ctx, logs, catalogFiles); err != nil {
		e.Down()
		return nil, err
	}
	return e, nil
}

func (e *Env) up(ctx context.Context, logs *os.File, catalogFiles map[string][]byte) error {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	kubelet := filepath.Join(assets, "kubelet")
	if _, err := os.Stat(kubelet); err != nil {
		return fmt.Errorf("no kubelet in KUBEBUILDER_ASSETS=%q: run `make test` (test/controlplane.sh builds it)", assets)
	}
	root, err := cluster.RepoRoot()
	if err != nil {
		return err
	}
	if e.dir, err = os.MkdirTemp("", "sidecar-injector-env-"); err != nil {
		return err
	}
	binary := filepath.Join(e.dir, "sidecar-injector")
	build := exec.Command("go", "build", "-o", binary, "./cmd/sidecar-injector")
	build.Dir, build.Stdout, build.Stderr = root, os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building the binary: %w", err)
	}
	catalogDir := filepath.Join(e.dir, "catalog")
	if err := os.MkdirAll(catalogDir, 0o755); err != nil {
		return err
	}
	for name, text := range catalogFiles {
		if err := os.WriteFile(filepath.Join(catalogDir, name), text, 0o644); err != nil {
			return err
		}
	}
	start := time.Now()
	// A hardened cluster's admission chain, as the e2e suite's: with
	// AlwaysPullImages every image is pulled, from the node's registry.
	if e.Cluster, err = cluster.Start(logs, "kubelet-preferred-address-types=InternalIP", "enable-admission-plugins=AlwaysPullImages,LimitRanger,ResourceQuota"); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	images, err := testImages(e.dir)
	if err != nil {
		return err
	}
	if e.Node, err = Start(ctx, e.Cluster.Client, Options{Kubelet: kubelet, Kubeconfig: e.Cluster.Kubeconfig, Images: images, Logs: logs}); err != nil {
		return err
	}
	e.KeyDir = filepath.Join(e.dir, "status-key")
	keyFlags, err := cluster.StatusKey(e.KeyDir)
	if err != nil {
		return err
	}
	if err := e.Cluster.InstallStatusKey(ctx, e.KeyDir); err != nil {
		return err
	}
	if e.Webhook, err = cluster.StartWebhook(ctx, binary, filepath.Join(e.dir, "tls"), e.Cluster.Kubeconfig, logs, append(keyFlags, "--catalog", catalogDir)...); err != nil {
		return err
	}
	if err := e.Cluster.InstallDeployWebhook(ctx, root, e.Webhook); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "node: control plane, node %s and webhook up in %s\n", Name, time.Since(start).Round(time.Millisecond))
	return nil
}

// testImages are the images the node holds: the sandbox, busybox (under
// three tags), socat and the exporter.
func testImages(dir string) ([]Image, error) {
	pause, err := PauseImage(SandboxImage, dir)
	if err != nil {
		return nil, err
	}
	box, err := BusyboxImage(Busybox)
	if err != nil {
		return nil, err
	}
	next, err := BusyboxImage(BusyboxNext)
	if err != nil {
		return nil, err
	}
	sized, err := BusyboxImage(BusyboxSized)
	if err != nil {
		return nil, err
	}
	proxy, err := ProgramImage(Socat, "/usr/bin/socat")
	if err != nil {
		return nil, err
	}
	metrics, err := ProgramImage(Exporter, "/usr/bin/prometheus-nginx-exporter")
	if err != nil {
		return nil, err
	}
	return []Image{pause, box, next, sized, proxy, metrics}, nil
}

// Down stops the webhook, the node and the control plane, and removes
// what they left.
func (e *Env) Down() {
	if e.Webhook != nil {
		_ = e.Webhook.Stop()
	}
	if e.Node != nil {
		e.Node.Stop()
	}
	if e.Cluster != nil {
		e.Cluster.Stop()
	}
	if e.dir != "" {
		_ = os.RemoveAll(e.dir)
	}
}
