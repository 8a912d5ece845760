// Package node runs a real Kubernetes node for the tests: kubelet v1.37.0
// built from the module proxy, Debian's containerd, runc and CNI plugins,
// images built from files on the machine, all inside a network namespace
// of its own, so that injected Pods really run.
package node
