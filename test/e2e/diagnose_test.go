package e2e

import (
	"encoding/json"
	"errors"
	"os/exec"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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

// audit finds Pods created before their namespace opted in, and those in
// a namespace a required policy matches that never opted in; once they
// are re-created injected, it exits 0.
func TestAuditFindsUninjectedPods(t *testing.T) {
	ns := namespace(t, "e2e-audit", nil)
	prod := namespace(t, "e2e-audit-prod", map[string]string{"env": "prod"})
	if _, err := create(t, ns, nginxPod("early", "content-filler")); err != nil {
		t.Fatal(err)
	}
	if _, err := create(t, prod, nginxPod("unseen", "")); err != nil {
		t.Fatal(err)
	}
	// Opt in now: the Pod above predates it.
	labelNamespace(t, ns, "sidecars.podpatterns.io/injection", "enabled")
	type report struct {
		Unlabelled []string `json:"unlabelledNamespaces"`
		Pods       []struct {
			Namespace, Name, State string
		}
	}
	audit := func(args ...string) (int, report) {
		t.Helper()
		out, err := exec.Command(suite.binary, append([]string{"audit", "--kubeconfig", suite.cluster.Kubeconfig, "--catalog", suite.catalogDir, "-o", "json"}, args...)...).Output()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		var r report
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		return code, r
	}
	state := func(r report, ns, name string) string {
		for _, p := range r.Pods {
			if p.Namespace == ns && p.Name == name {
				return p.State
			}
		}
		return "(not audited)"
	}

	code, r := audit()
	if code != 1 || state(r, ns, "early") != "missing" || state(r, prod, "unseen") != "missing" {
		t.Errorf("exit %d, early %s, unseen %s; want 1, missing, missing", code, state(r, ns, "early"), state(r, prod, "unseen"))
	}
	if !slices.Contains(r.Unlabelled, prod) {
		t.Errorf("unlabelled namespaces %v lack %s, where policy prod requires templates", r.Unlabelled, prod)
	}

	// Re-create the early Pod: the webhook injects it now.
	_ = suite.client.CoreV1().Pods(ns).Delete(ctxFor(t), "early", metav1.DeleteOptions{})
	_ = suite.client.CoreV1().Pods(prod).Delete(ctxFor(t), "unseen", metav1.DeleteOptions{})
	eventually(t, "the old Pods to go", func() bool {
		_, e1 := suite.client.CoreV1().Pods(ns).Get(ctxFor(t), "early", metav1.GetOptions{})
		_, e2 := suite.client.CoreV1().Pods(prod).Get(ctxFor(t), "unseen", metav1.GetOptions{})
		return apierrors.IsNotFound(e1) && apierrors.IsNotFound(e2)
	})
	if _, err := create(t, ns, nginxPod("early", "content-filler")); err != nil {
		t.Fatal(err)
	}
	code, r = audit("-n", ns) // other tests' namespaces may need repair
	if code != 0 || state(r, ns, "early") != "current" {
		t.Errorf("after re-creating the early Pod: exit %d, state %s; want 0, current", code, state(r, ns, "early"))
	}
}
