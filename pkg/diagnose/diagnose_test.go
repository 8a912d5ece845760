package diagnose

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/pkg/patch/patchtest"
)

var sized = corev1.ResourceRequirements{
	Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
	Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
}

// pair is a writer and a reader sharing an emptyDir, both sized.
func pair() *corev1.Pod {
	p := &corev1.Pod{}
	p.Name = "pair"
	p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	p.Spec.Containers = []corev1.Container{
		{Name: "writer", Image: "app:1", Resources: sized, VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}},
		{Name: "reader", Image: "app:1", Resources: sized, VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data", ReadOnly: true}}},
	}
	return p
}

func with(p *corev1.Pod, change func(*corev1.Pod)) *corev1.Pod { change(p); return p }

// injected is a sized app asking for template, with an fsGroup so its
// users can share files, as the webhook admits it.
func injected(t *testing.T, cat *catalog.Catalog, template string) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{}
	p.Name = "web"
	p.Annotations = map[string]string{inject.InjectAnnotation: template}
	p.Spec.Containers = []corev1.Container{{Name: "web", Image: "nginx:1.27", Resources: sized}}
	p.Spec.SecurityContext = &corev1.PodSecurityContext{FSGroup: new(int64(101))}
	return patchtest.Admitted(t, p, nil, cat)
}

func TestPod(t *testing.T) {
	cat, err := catalog.Default()
	if err != nil {
		t.Fatal(err)
	}
	uid := func(n int64) *corev1.SecurityContext { return &corev1.SecurityContext{RunAsUser: &n} }
	for name, c := range map[string]struct {
		pod  *corev1.Pod
		want []string // severity check container, in the order reported
	}{
		"a writer and a reader sized and sharing a volume have no findings": {pair(), nil},
		"a Pod as the webhook injects it has no findings":                   {injected(t, cat, "content-filler"), nil},
		"a native sidecar that drains in preStop cuts the app off": {with(pair(), func(p *corev1.Pod) {
			proxy := p.Spec.Containers[1]
			proxy.RestartPolicy = new(corev1.ContainerRestartPolicyAlways)
			proxy.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c", "curl -X POST localhost:15000/drain_listeners; sleep 20"}}}}
			p.Spec.Containers, p.Spec.InitContainers = p.Spec.Containers[:1], []corev1.Container{proxy}
		}), []string{"warning sidecar-prestop reader"}},
		"a classic sidecar's preStop is not a native one's": {with(pair(), func(p *corev1.Pod) {
			p.Spec.Containers[1].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 5}}}
		}), nil},
		"two containers declaring one port conflict": {with(pair(), func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8080}}
			p.Spec.Containers[1].Ports = []corev1.ContainerPort{{ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}
		}), []string{"error port-conflict reader"}},
		"a volume every container mounts read-only has no writer": {with(pair(), func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts[0].ReadOnly = true
		}), []string{"error volume-read-only writer"}},
		"different users on a shared volume without fsGroup": {with(pair(), func(p *corev1.Pod) {
			p.Spec.Containers[0].SecurityContext, p.Spec.Containers[1].SecurityContext = uid(1000), uid(2000)
		}), []string{"warning users-differ -"}},
		"different users with fsGroup can share": {with(pair(), func(p *corev1.Pod) {
			p.Spec.Containers[0].SecurityContext, p.Spec.Containers[1].SecurityContext = uid(1000), uid(2000)
			p.Spec.SecurityContext = &corev1.PodSecurityContext{FSGroup: new(int64(3000))}
		}), nil},
		"a container without requests or limits next to another": {with(pair(), func(p *corev1.Pod) {
			p.Spec.Containers[1].Resources = corev1.ResourceRequirements{}
		}), []string{"warning resources reader"}},
		"a Job's injected sidecar as a regular container keeps the Job alive": {with(injected(t, cat, "content-filler"), func(p *corev1.Pod) {
			p.Spec.RestartPolicy = corev1.RestartPolicyNever
		}), []string{"error job-sidecar content-filler", "error status-mismatch -"}}, // for a Job the template renders a native sidecar
		"a live container in CrashLoopBackOff": {with(pair(), func(p *corev1.Pod) {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "reader", RestartCount: 4, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}}
		}), []string{"error crashloop reader", "warning restarts reader"}},
		"a live container killed for its memory": {with(pair(), func(p *corev1.Pod) {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "writer", RestartCount: 1, LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "OOMKilled"}}}}
		}), []string{"error oom-killed writer", "warning restarts writer"}},
		"a live container whose image cannot be pulled": {with(pair(), func(p *corev1.Pod) {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "writer", Image: "app:nope", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull"}}}}
		}), []string{"error image-pull writer"}},
		"an injected container changed after injection": {with(injected(t, cat, "content-filler"), func(p *corev1.Pod) {
			p.Spec.Containers[1].Image = "busybox:evil"
		}), []string{"error status-mismatch -"}},
	} {
		t.Run(name, func(t *testing.T) {
			var got []string
			for _, f := range Pod(c.pod, cat) {
				container := f.Container
				if container == "" {
					container = "-"
				}
				got = append(got, fmt.Sprintf("%s %s %s", f.Severity, f.Check, container))
				if f.Problem == "" || f.Fix == "" {
					t.Errorf("finding %s says no problem or no fix: %+v", f.Check, f)
				}
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("findings\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(c.want, "\n  "))
			}
		})
	}
}

// On a live Pod the log lines say what actually happened on a shared
// volume; a path off the shared volumes is left alone.
func TestLogsNameWhatHappened(t *testing.T) {
	for name, c := range map[string]struct {
		pod  *corev1.Pod
		logs map[string]string
		want string // "" for no finding
	}{
		"a reader denied the writer's file": {pair(), map[string]string{"reader": "tail: can't open '/data/app.log': Permission denied\n"},
			`error shared-volume reader: may not read or write /data/app.log on volume "data"`},
		"a writer on a read-only mount": {with(pair(), func(p *corev1.Pod) { p.Spec.Containers[0].VolumeMounts[0].ReadOnly = true }), map[string]string{"writer": "sh: can't create /data/app.log: Read-only file system\n"},
			`error shared-volume writer: cannot write /data/app.log on volume "data"`},
		"a writer into a directory that is not there": {pair(), map[string]string{"writer": "sh: can't create /data/out/app.log: nonexistent directory\n"},
			`error shared-volume writer: cannot find /data/out/app.log on volume "data"`},
		"a reader that mounts the volume at another path": {with(pair(), func(p *corev1.Pod) { p.Spec.Containers[1].VolumeMounts[0].MountPath = "/logs" }), map[string]string{"reader": "cat: can't open '/data/app.log': No such file or directory\n"},
			`error shared-volume reader: uses /data/app.log, where container "writer" mounts volume "data", but this container mounts it at /logs`},
		"a reader that does not mount the volume": {with(pair(), func(p *corev1.Pod) { p.Spec.Containers[1].VolumeMounts = nil }), map[string]string{"reader": "cat: can't open '/data/app.log': No such file or directory\n"},
			`but this container does not mount it`},
		"a path off the shared volumes": {pair(), map[string]string{"writer": "open /etc/app.conf: no such file or directory\n"}, ""},
		"nothing wrong":                 {pair(), map[string]string{"writer": "started\n"}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			fs := Logs(c.pod, c.logs)
			if c.want == "" {
				if len(fs) != 0 {
					t.Errorf("findings %+v, want none", fs)
				}
				return
			}
			if len(fs) != 1 || !strings.Contains(fmt.Sprintf("%s %s %s: %s", fs[0].Severity, fs[0].Check, fs[0].Container, fs[0].Problem), c.want) || fs[0].Fix == "" {
				t.Errorf("findings %+v, want one holding %q", fs, c.want)
			}
		})
	}
}
