package node

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podpatterns/sidecar-injector/pkg/inject"
)

// The Pods the node tests and the demo run: each pattern with an app
// that shows it working.

// TestCatalog adds to the default catalog a log shipper of the default log-shipper's shape (a native
// sidecar on a shared emptyDir, run as the app's user) that ships by
// printing what the app writes: Fluent Bit is not packaged by Debian.
const TestCatalog = `apiVersion: sidecars.podpatterns.io/v1alpha1
kind: Catalog
templates:
- name: tail-shipper
  pattern: sidecar
  description: Ships the app's log lines to its own stdout.
  nativeSidecar: true
  runAsAppUser: true
  parameters:
  - {name: log-dir, type: path, default: /var/log/app}
  volumes:
  - {name: tail-logs, emptyDir: {}}
  appVolumeMounts:
  - {name: tail-logs, mountPath: '{{log-dir}}'}
  containers:
  - name: tail-shipper
    image: ` + Busybox + `
    # As PID 1 a process ignores SIGTERM unless it handles it: the trap
    # ends the shipper at once when the Pod stops or its work is done.
    command: [sh, -c, 'trap "exit 0" TERM; tail -F /logs/app.log & wait']
    securityContext: {runAsUser: 65534}
    volumeMounts:
    - {name: tail-logs, mountPath: /logs, readOnly: true}
- name: pinger
  pattern: sidecar
  description: Does nothing, on the next busybox; the in-place upgrade tests move it to an image the node lacks.
  containers:
  - name: pinger
    image: ` + BusyboxNext + `
    imagePullPolicy: Never # nothing is pulled from outside
    command: [sh, -c, 'trap "exit 0" TERM; sleep 3600 & wait']
    securityContext: {runAsUser: 65534}
- name: hog
  pattern: sidecar
  description: Wants more memory than its limit.
  containers:
  - name: hog
    image: ` + Busybox + `
    command: [sh, -c, 'trap "exit 0" TERM; x=$(head -c 64000000 /dev/zero | tr "\\000" a); sleep 3600 & wait']
    securityContext: {runAsUser: 65534}
    resources:
      requests: {cpu: 10m, memory: 16Mi}
      limits: {cpu: 100m, memory: 32Mi}
- name: sizer
  pattern: sidecar
  description: Does nothing; the resize tests move its cpu and memory.
  containers:
  - name: sizer
    image: ` + BusyboxSized + `
    imagePullPolicy: Never
    command: [sh, -c, 'trap "exit 0" TERM; sleep 3600 & wait']
    securityContext: {runAsUser: 65534}
    resources:
      ` + SizedBefore + `
- name: native-sizer
  pattern: sidecar
  description: The same, as a native sidecar.
  nativeSidecar: true
  containers:
  - name: native-sizer
    image: ` + BusyboxSized + `
    imagePullPolicy: Never
    command: [sh, -c, 'trap "exit 0" TERM; sleep 3600 & wait']
    securityContext: {runAsUser: 65534}
    resources:
      ` + SizedBefore + `
`

// SizedBefore and SizedAfter are the sizers' resources in TestCatalog and
// in the catalog the in-place tests move to: cpu and memory, both up.
const (
	SizedBefore = "{requests: {cpu: 10m, memory: 16Mi}, limits: {cpu: 100m, memory: 48Mi}}"
	SizedAfter  = "{requests: {cpu: 20m, memory: 24Mi}, limits: {cpu: 200m, memory: 64Mi}}"
)

// WebPod is a web server asking for the content-filler, ready once it
// serves the page the filler writes; restricted as Pod Security's
// restricted level wants it when asked.
func WebPod(restricted bool) *corev1.Pod {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Annotations: map[string]string{inject.InjectAnnotation: "content-filler"}}}
	pod.Spec.Containers = []corev1.Container{{
		Name: "web", Image: Busybox, ImagePullPolicy: corev1.PullNever,
		// httpd as PID 1 would ignore SIGTERM; the app must not be what
		// holds a Pod for its grace period here.
		Command:        []string{"sh", "-c", `trap "exit 0" TERM; mkdir -p /usr/share/nginx/html; httpd -f -p 8080 -h /usr/share/nginx/html & wait`},
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/index.html", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1},
	}}
	if restricted {
		uid := int64(1000)
		pod.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: new(true), RunAsUser: &uid, SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}
		pod.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{AllowPrivilegeEscalation: new(false), Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}
	}
	return pod
}

// ShipperApp writes numbered lines to its log file, with the test
// catalog's tail-shipper, as user 1000.
func ShipperApp() *corev1.Pod {
	uid := int64(1000)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Annotations: map[string]string{inject.InjectAnnotation: "tail-shipper"}}}
	pod.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: &uid, RunAsGroup: &uid}
	pod.Spec.Containers = []corev1.Container{{
		Name: "app", Image: Busybox, ImagePullPolicy: corev1.PullNever,
		Command: []string{"sh", "-c", `trap "exit 0" TERM; i=0; while true; do echo "order $i shipped" >> /var/log/app/app.log; i=$((i+1)); sleep 0.2 & wait; done`},
	}}
	return pod
}

// Upstream serves hello.txt on port 8080, uninjected.
func Upstream() *corev1.Pod {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "upstream", Annotations: map[string]string{inject.InjectAnnotation: "none"}}}
	pod.Spec.Containers = []corev1.Container{{
		Name: "upstream", Image: Busybox, ImagePullPolicy: corev1.PullNever,
		Command:        []string{"sh", "-c", `trap "exit 0" TERM; mkdir -p /tmp/www && echo hello from upstream > /tmp/www/hello.txt && httpd -f -p 8080 -h /tmp/www & wait`},
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1},
	}}
	return pod
}

// AmbassadorApp asks, once, for hello.txt through the default
// ambassador, which forwards to the upstream at ip:8080.
func AmbassadorApp(ip string) *corev1.Pod {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Annotations: map[string]string{
		inject.InjectAnnotation:                              "ambassador",
		inject.ParameterAnnotation("ambassador", "upstream"): ip + ":8080",
	}}}
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	pod.Spec.Containers = []corev1.Container{{
		Name: "app", Image: Busybox, ImagePullPolicy: corev1.PullNever,
		Command: []string{"sh", "-c", `wget -q -O- "http://$AMBASSADOR_ADDR/hello.txt"`},
	}}
	return pod
}

// StatusPage serves a status page in nginx's stub_status format, with
// the default metrics adapter.
func StatusPage() *corev1.Pod {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Annotations: map[string]string{inject.InjectAnnotation: "metrics-adapter"}}}
	page := `Active connections: 7 \nserver accepts handled requests\n 11 11 42 \nReading: 0 Writing: 1 Waiting: 6 \n`
	pod.Spec.Containers = []corev1.Container{{
		Name: "web", Image: Busybox, ImagePullPolicy: corev1.PullNever,
		Command: []string{"sh", "-c", `trap "exit 0" TERM; mkdir -p /tmp/www && printf "` + page + `" > /tmp/www/stub_status && httpd -f -p 8080 -h /tmp/www & wait`},
	}}
	return pod
}

// ContainerStatus is the status of the Pod's container or native sidecar
// of that name; empty if it has none yet.
func ContainerStatus(p *corev1.Pod, name string) corev1.ContainerStatus {
	for _, cs := range slices.Concat(p.Status.InitContainerStatuses, p.Status.ContainerStatuses) {
		if cs.Name == name {
			return cs
		}
	}
	return corev1.ContainerStatus{}
}
