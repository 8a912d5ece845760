package cluster

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podpatterns/sidecar-injector/pkg/certs"
)

// What the agent webhook adds, as a monitoring agent's webhook does.
const (
	AgentEnv        = "DD_AGENT_HOST"
	AgentVolume     = "agent-socket"
	AgentMountPath  = "/var/run/agent"
	AgentLabel      = "monitoring.example.com/agent"
	AgentLabelValue = "injected"
)

// Agent is a second mutating webhook in the admission chain, as a
// monitoring agent's: to every container and init container of every
// Pod it adds an env var from the host's IP and a mount of a volume of its
// own, and a label to the Pod, each once (so it is idempotent under
// reinvocation).
type Agent struct {
	URL    string
	CA     []byte
	server *http.Server
}

// StartAgent serves the agent webhook on 127.0.0.1 with a certificate
// made in dir.
func StartAgent(dir string) (*Agent, error) {
	if _, err := certs.Write(dir, certs.Options{Hosts: []string{"127.0.0.1"}, Validity: 24 * time.Hour}); err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		return nil, err
	}
	ca, err := CAPEM(dir)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a := &Agent{URL: fmt.Sprintf("https://%s/mutate", ln.Addr()), CA: ca}
	a.server = &http.Server{Handler: http.HandlerFunc(serveAgent), TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = a.server.ServeTLS(ln, "", "") }()
	return a, nil
}

// Stop ends the server.
func (a *Agent) Stop() { _ = a.server.Shutdown(context.Background()) }

// Config is the agent's MutatingWebhookConfiguration, called name (the
// API server calls webhooks in the order of their configurations'
// names), for the namespaces selector selects.
func (a *Agent) Config(name string, selector *metav1.LabelSelector) *admissionregistrationv1.MutatingWebhookConfiguration {
	fail, none, ifNeeded := admissionregistrationv1.Fail, admissionregistrationv1.SideEffectClassNone, admissionregistrationv1.IfNeededReinvocationPolicy
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "agent.monitoring.example.com",
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             &none,
			FailurePolicy:           &fail,
			ReinvocationPolicy:      &ifNeeded,
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &a.URL, CABundle: a.CA},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
			NamespaceSelector: selector,
		}},
	}
}

func serveAgent(w http.ResponseWriter, r *http.Request) {
	review := &admissionv1.AdmissionReview{}
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err == nil {
		err = json.Unmarshal(body, review)
	}
	if err != nil || review.Request == nil {
		http.Error(w, "not an AdmissionReview", http.StatusBadRequest)
		return
	}
	pod := &corev1.Pod{}
	resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
	if err := json.Unmarshal(review.Request.Object.Raw, pod); err == nil {
		if ops := agentPatch(pod); len(ops) > 0 {
			resp.Patch, _ = json.Marshal(ops)
			pt := admissionv1.PatchTypeJSONPatch
			resp.PatchType = &pt
		}
	}
	review.Request, review.Response = nil, resp
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(review)
}

type op struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// agentPatch adds what the agent adds and the Pod lacks.
func agentPatch(pod *corev1.Pod) []op {
	var ops []op
	for _, list := range []struct {
		field      string
		containers []corev1.Container
	}{{"initContainers", pod.Spec.InitContainers}, {"containers", pod.Spec.Containers}} {
		for i, c := range list.containers {
			at := fmt.Sprintf("/spec/%s/%d", list.field, i)
			if !hasEnvNamed(c.Env, AgentEnv) {
				env := corev1.EnvVar{Name: AgentEnv, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.hostIP"}}}
				ops = append(ops, appendTo(at+"/env", len(c.Env), env))
			}
			if !hasMountAt(c.VolumeMounts, AgentMountPath) {
				ops = append(ops, appendTo(at+"/volumeMounts", len(c.VolumeMounts), corev1.VolumeMount{Name: AgentVolume, MountPath: AgentMountPath, ReadOnly: true}))
			}
		}
	}
	if !hasVolumeNamed(pod.Spec.Volumes, AgentVolume) {
		ops = append(ops, appendTo("/spec/volumes", len(pod.Spec.Volumes), corev1.Volume{Name: AgentVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}))
	}
	if pod.Labels[AgentLabel] != AgentLabelValue {
		key := "/metadata/labels/" + strings.ReplaceAll(strings.ReplaceAll(AgentLabel, "~", "~0"), "/", "~1")
		if pod.Labels == nil {
			ops = append(ops, op{"add", "/metadata/labels", map[string]string{AgentLabel: AgentLabelValue}})
		} else {
			ops = append(ops, op{"add", key, AgentLabelValue})
		}
	}
	return ops
}

// appendTo appends v to the list at path, which holds n entries.
func appendTo(path string, n int, v any) op {
	if n == 0 {
		return op{"add", path, []any{v}}
	}
	return op{"add", path + "/-", v}
}

func hasEnvNamed(list []corev1.EnvVar, name string) bool {
	for _, e := range list {
		if e.Name == name {
			return true
		}
	}
	return false
}

func hasMountAt(list []corev1.VolumeMount, path string) bool {
	for _, m := range list {
		if m.MountPath == path {
			return true
		}
	}
	return false
}

func hasVolumeNamed(list []corev1.Volume, name string) bool {
	for _, v := range list {
		if v.Name == name {
			return true
		}
	}
	return false
}
