package node

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podpatterns/sidecar-injector/pkg/conformance"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
)

// A catalog that moves only its sidecars' cpu and memory: `controller
// --repair=in-place` resizes a Deployment's Pods in place, a classic and
// a native sidecar each. Nothing restarts: every container keeps its ID
// with no restart; the spec, the kubelet's container status and the
// container's cgroup on this node hold the new values; the app serves
// throughout; the Pods classify current.
func TestSidecarsResizeInPlaceWithoutARestart(t *testing.T) {
	ns := namespace(t)
	ctx := context.Background()
	client := suite.cluster.Client
	d := sized(2)
	if _, err := client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pods []corev1.Pod
	err := wait(ctx, "two sized Pods, injected and ready", func() bool {
		list, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil || len(list.Items) != 2 {
			return false
		}
		pods = list.Items
		return ready(&pods[0]) && ready(&pods[1])
	})
	if err != nil {
		t.Fatalf("%v (logs: %s)", err, suite.logs.Name())
	}
	ids := map[string]string{} // Pod/container -> container ID
	for _, p := range pods {
		for _, cs := range slices.Concat(p.Status.InitContainerStatuses, p.Status.ContainerStatuses) {
			ids[p.Name+"/"+cs.Name] = cs.ContainerID
		}
	}
	stopServing := serveThroughout(pods)

	cat := upgradeController(t)
	want := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("20m"), corev1.ResourceMemory: resource.MustParse("24Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
	}
	resized := func(p *corev1.Pod) bool { return runsWith(p, "64Mi") && ready(p) }
	for _, p := range pods {
		until(t, ns, p.Name, p.Name+"'s sidecars running with their new cpu and memory", resized)
	}
	if served, failed := stopServing(); served == 0 || failed > 0 {
		t.Errorf("during the resize the app served %d requests and failed %d; want every one served", served, failed)
	}
	for _, before := range pods {
		p, err := client.CoreV1().Pods(ns).Get(ctx, before.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.UID != before.UID {
			t.Errorf("%s was re-created", p.Name)
		}
		for _, cs := range slices.Concat(p.Status.InitContainerStatuses, p.Status.ContainerStatuses) {
			if cs.ContainerID != ids[p.Name+"/"+cs.Name] || cs.RestartCount != 0 {
				t.Errorf("%s: container %s is %s with %d restarts, was %s; a resize restarts nothing", p.Name, cs.Name, cs.ContainerID, cs.RestartCount, ids[p.Name+"/"+cs.Name])
			}
		}
		for _, name := range []string{"sizer", "native-sizer"} {
			cs := ContainerStatus(p, name)
			if !cs.Resources.Requests.Cpu().Equal(*want.Requests.Cpu()) || !cs.Resources.Limits.Cpu().Equal(*want.Limits.Cpu()) {
				t.Errorf("%s: %s runs with %v; want %v", p.Name, name, cs.Resources, want)
			}
			id := strings.TrimPrefix(cs.ContainerID, "containerd://")
			if got := cgroupValue(t, "memory", id, "memory.limit_in_bytes"); got != want.Limits.Memory().Value() {
				t.Errorf("%s: %s's cgroup memory limit is %d; want %d", p.Name, name, got, want.Limits.Memory().Value())
			}
			if got := cgroupValue(t, "cpu", id, "cpu.cfs_quota_us"); got != 20000 {
				t.Errorf("%s: %s's cgroup cpu quota is %d; want 20000 (200m of a 100 ms period)", p.Name, name, got)
			}
		}
		if got := conformance.Classify(p, map[string]string{inject.InjectionLabel: "enabled"}, cat, suite.keys); got.State != conformance.Current {
			t.Errorf("%s is %s after the resize: %+v", p.Name, got.State, got.Templates)
		}
	}
}

// sized is a Deployment of web servers with the sizer and the native
// sizer: a classic and a native sidecar whose cpu and memory the
// in-place upgrade catalog moves, and nothing else.
func sized(replicas int32) *appsv1.Deployment {
	d := shop(replicas)
	d.Name = "sized"
	d.Spec.Template.Annotations[inject.InjectAnnotation] = "sizer,native-sizer"
	// No content-filler writes its page here: the app serves its own,
	// from a volume its user may write.
	d.Spec.Template.Spec.Containers[0].Command = []string{"sh", "-c", `trap "exit 0" TERM; echo ok > /srv/html/index.html; httpd -f -p 8080 -h /srv/html & wait`}
	d.Spec.Template.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "html", MountPath: "/srv/html"}}
	d.Spec.Template.Spec.Volumes = []corev1.Volume{{Name: "html", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	d.Spec.Template.Spec.SecurityContext.FSGroup = d.Spec.Template.Spec.SecurityContext.RunAsGroup
	return d
}

// runsWith reports whether the Pod's sizers run with the memory limit
// limit, as the kubelet reports it.
func runsWith(p *corev1.Pod, limit string) bool {
	for _, name := range []string{"sizer", "native-sizer"} {
		if cs := ContainerStatus(p, name); cs.Resources == nil || cs.Resources.Limits.Memory().String() != limit {
			return false
		}
	}
	return true
}

// cgroupValue reads a number of the container's cgroup in the node's
// hierarchy that holds file (cgroup v1: memory, cpu,cpuacct).
func cgroupValue(t *testing.T, controller, id, file string) int64 {
	t.Helper()
	for _, root := range roots() {
		if !slices.Contains(strings.Split(filepath.Base(filepath.Dir(root)), ","), controller) {
			continue
		}
		var found string
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() && d.Name() == id {
				found = p
				return fs.SkipAll
			}
			return nil
		})
		if found == "" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(found, file))
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	t.Fatalf("no %s cgroup for container %s under %v", controller, id, roots())
	return 0
}
