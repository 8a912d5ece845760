package e2e

import (
	"encoding/json"
	"errors"
	"os/exec"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// diagnose reads a live Pod, its status included, from the API server.
func TestDiagnoseLivePod(t *testing.T) {
	ns := namespace(t, "e2e-diagnose", nil)
	pod, err := create(t, ns, nginxPod("troubled", ""))
	if err != nil {
		t.Fatal(err)
	}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{
		Name: "nginx", Image: "nginx:1.27", RestartCount: 3,
		State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
		LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "OOMKilled", ExitCode: 137}},
	}}
	if _, err := suite.cluster.Client.CoreV1().Pods(ns).UpdateStatus(ctxFor(t), pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(suite.binary, "diagnose", "--kubeconfig", suite.cluster.Kubeconfig, "-n", ns, "troubled", "-o", "json").Output()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("diagnose exit: %v, want 1 for error-level findings; output %s", err, out)
	}
	var reports struct {
		Pods []struct {
			Pod      string
			Findings []struct{ Check, Container string }
		}
	}
	if err := json.Unmarshal(out, &reports); err != nil || len(reports.Pods) != 1 {
		t.Fatalf("%v: %s", err, out)
	}
	report := reports.Pods[0]
	checks := map[string]bool{}
	for _, f := range report.Findings {
		checks[f.Check+"/"+f.Container] = true
	}
	for _, want := range []string{"crashloop/nginx", "oom-killed/nginx", "restarts/nginx"} {
		if !checks[want] {
			t.Errorf("findings %+v lack %s", report.Findings, want)
		}
	}
}
