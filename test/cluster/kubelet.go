package cluster

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// PlayKubelet marks every Pod of the namespace Running and Ready through
// the status subresource, as a kubelet would once its containers start,
// and again when a container's image changes, until ctx is done. There is no scheduler or kubelet in the test control
// plane; with this, Deployments' rollouts progress and complete.
func PlayKubelet(ctx context.Context, client kubernetes.Interface, namespace string) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		pods, err := client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
		if err == nil {
			for i := range pods.Items {
				markReady(ctx, client, &pods.Items[i])
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func markReady(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod) {
	if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodRunning && inStep(pod) {
		return
	}
	now := metav1.Now()
	pod.Status.Phase = corev1.PodRunning
	pod.Status.StartTime = &now
	pod.Status.Conditions = nil
	for _, t := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	pod.Status.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		// A container per image: a new image, as a kubelet restarts the
		// container, a new ID.
		// The resources it runs with: those the spec asks for, as a
		// kubelet reports them once a resize is done.
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, Ready: true, Started: new(true), ContainerID: "fake://" + c.Name + "/" + c.Image,
			State:     corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
			Resources: c.Resources.DeepCopy(),
		})
	}
	_, _ = client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
}

// inStep reports whether the Pod's container statuses show the images
// and resources its spec names.
func inStep(pod *corev1.Pod) bool {
	if len(pod.Status.ContainerStatuses) != len(pod.Spec.Containers) {
		return false
	}
	for i, c := range pod.Spec.Containers {
		cs := pod.Status.ContainerStatuses[i]
		if cs.Image != c.Image || cs.Resources == nil || !equality.Semantic.DeepEqual(*cs.Resources, c.Resources) {
			return false
		}
	}
	return true
}
