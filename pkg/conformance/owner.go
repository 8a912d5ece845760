package conformance

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Owner is the workload that owns a Pod.
type Owner struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

// OwnerOf names the workload that owns the Pod: a Deployment through its
// ReplicaSet (by the pod-template-hash the ReplicaSet's name ends in), the
// Pod's controller otherwise, or the Pod itself.
func OwnerOf(pod *corev1.Pod) Owner {
	ref := metav1.GetControllerOf(pod)
	if ref == nil {
		return Owner{"Pod", pod.Name}
	}
	if hash := pod.Labels["pod-template-hash"]; ref.Kind == "ReplicaSet" && hash != "" && strings.HasSuffix(ref.Name, "-"+hash) {
		return Owner{"Deployment", strings.TrimSuffix(ref.Name, "-"+hash)}
	}
	return Owner{ref.Kind, ref.Name}
}

// restartable are the kinds a rollout restart re-creates the Pods of.
var restartable = []string{"Deployment", "StatefulSet", "DaemonSet"}

// Restartable reports whether a rollout restart repairs the owner's Pods:
// never a bare Pod, a Job or a ReplicaSet of its own.
func (o Owner) Restartable() bool { return slices.Contains(restartable, o.Kind) }

// Repair is what re-creates the owner's Pods in namespace ns, as a person
// runs it.
func (o Owner) Repair(ns string) string {
	switch {
	case o.Restartable():
		return fmt.Sprintf("kubectl rollout restart %s/%s -n %s", strings.ToLower(o.Kind), o.Name, ns)
	case o.Kind == "Pod":
		return fmt.Sprintf("re-create the Pod (kubectl delete pod %s -n %s, then apply it again)", o.Name, ns)
	}
	return "its next run is injected; re-run it to repair now"
}
