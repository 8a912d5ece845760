// Command up runs a control plane, a real node and the webhook with the
// default catalog until interrupted, for a person to try Pods by hand
// (`make cluster`). Everything runs in a network namespace of its own;
// the API server is reached from the host through a port on 127.0.0.1
// that this command forwards. Its last line, once the node is Ready, is
// the `export KUBECONFIG=...` to use.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/test/node"
)

func main() {
	if !node.InNamespace() {
		os.Exit(outside())
	}
	if err := inside(); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

// outside opens the host's port for the API server and runs this
// command again inside the node's network namespace.
func outside() int {
	if os.Geteuid() == 0 {
		if err := node.Install(); err != nil {
			fmt.Fprintln(os.Stderr, "cluster: installing the runtime:", err)
		}
	}
	if missing := node.Missing(); missing != "" {
		fmt.Fprintf(os.Stderr, "cluster: this machine lacks %s; `make demo` runs without a node\n", missing)
		return 1
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	node.Cleanup("")
	code := node.RunInNamespace(f)
	node.Cleanup("")
	return code
}

func inside() error {
	logs, err := os.Create(filepath.Join(os.TempDir(), "sidecar-injector-cluster.log"))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env, err := node.Up(ctx, logs, map[string][]byte{"default.yaml": catalog.DefaultYAML()})
	if err != nil {
		return fmt.Errorf("%w (logs: %s)", err, logs.Name())
	}
	defer env.Down()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo", Labels: map[string]string{inject.InjectionLabel: "enabled"}}}
	if _, err := env.Cluster.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return err
	}
	// The catalog where audit and the controller read it in a cluster.
	ns = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: catalog.ConfigMapNamespace}}
	if _, err := env.Cluster.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return err
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: catalog.ConfigMapName, Namespace: catalog.ConfigMapNamespace}, Data: map[string]string{"catalog.yaml": string(catalog.DefaultYAML())}}
	if _, err := env.Cluster.Client.CoreV1().ConfigMaps(catalog.ConfigMapNamespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		return err
	}
	host, err := forward(env.Cluster.Config.Host)
	if err != nil {
		return err
	}
	kubeconfig, err := hostKubeconfig(env.Cluster.Kubeconfig, host)
	if err != nil {
		return err
	}
	defer os.Remove(kubeconfig)
	fmt.Printf(`The control plane, node %s and the webhook (default catalog) are up; namespace "demo" is opted in.
Pods name the node themselves (spec.nodeName: %s): no scheduler runs. Images: %s, %s, %s.
Logs: %s. Interrupt (Ctrl-C) to stop everything.
export KUBECONFIG=%s
`, node.Name, node.Name, node.Busybox, node.Socat, node.Exporter, logs.Name(), kubeconfig)
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "cluster: stopping")
	return nil
}

// forward serves the host's port (fd 3, opened in the host's network)
// by copying each connection to the API server inside the namespace;
// it returns the host's address.
func forward(apiserver string) (string, error) {
	u, err := url.Parse(apiserver)
	if err != nil {
		return "", err
	}
	ln, err := net.FileListener(os.NewFile(3, "apiserver-port"))
	if err != nil {
		return "", fmt.Errorf("the host's port: %w", err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", u.Host)
				if err != nil {
					return
				}
				defer up.Close()
				go func() { _, _ = io.Copy(up, c) }()
				_, _ = io.Copy(c, up)
			}()
		}
	}()
	return ln.Addr().String(), nil
}

// hostKubeconfig writes the admin kubeconfig with its server at the
// host's port; the API server's certificate names 127.0.0.1.
func hostKubeconfig(path, host string) (string, error) {
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		return "", err
	}
	for _, c := range cfg.Clusters {
		c.Server = "https://" + host
	}
	out := filepath.Join(os.TempDir(), "sidecar-injector-cluster.kubeconfig")
	return out, clientcmd.WriteToFile(*cfg, out)
}
