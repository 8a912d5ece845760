package diagnose

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// logCauses are the log lines that say why a container could not use a
// path, what that means for a shared volume, and the fix, given the
// volume and where each container mounts it.
var logCauses = []struct {
	re      *regexp.Regexp
	problem string // the path, the volume, the log line
	fix     func(volume, where string) string
}{
	{regexp.MustCompile(`(?i)(/[^\s:'"]+)[^\n]*permission denied|permission denied[^\n]*?(/[^\s:'"]+)`),
		"may not read or write %s on volume %q (%q): the containers sharing it run as different users, and the files are not this one's",
		func(string, string) string {
			return "run both sides as one user (runAsUser on the Pod), or set spec.securityContext.fsGroup so the volume's files are the group's"
		}},
	{regexp.MustCompile(`(?i)(/[^\s:'"]+)[^\n]*read-only file system|read-only file system[^\n]*?(/[^\s:'"]+)`),
		"cannot write %s on volume %q (%q): its mount is read-only",
		func(volume, _ string) string {
			return fmt.Sprintf("drop readOnly on this container's mount of %q: it is the side that writes", volume)
		}},
	{regexp.MustCompile(`(?i)(/[^\s:'"]+)[^\n]*(nonexistent directory|no such file or directory)|(no such file or directory|nonexistent directory)[^\n]*?(/[^\s:'"]+)`),
		"cannot find %s on volume %q (%q): the directory is not there",
		func(volume, where string) string {
			return fmt.Sprintf("create the directory before writing (mkdir -p), or use the path the other side uses; volume %q is mounted at %s", volume, where)
		}},
}

// Logs finds, in the log lines of a live Pod's containers (by container
// name), the reason a container could not use a path on a volume it
// shares: a permission denied, a read-only mount, a missing directory;
// and says what actually happened and the fix, once per container. A
// path off the shared volumes is not the pattern's and is left alone.
func Logs(pod *corev1.Pod, logs map[string]string) []Finding {
	var out []Finding
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		text, ok := logs[c.Name]
		if !ok {
			continue
		}
		for line := range strings.SplitSeq(text, "\n") {
			if f, ok := logFinding(pod, c, line); ok {
				out = append(out, f) // the first line that explains is enough
				break
			}
		}
	}
	return out
}

func logFinding(pod *corev1.Pod, c corev1.Container, line string) (Finding, bool) {
	for _, cause := range logCauses {
		m := cause.re.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		p := ""
		for _, g := range m[1:] {
			if strings.HasPrefix(g, "/") {
				p = g
				break
			}
		}
		mount := mountUnder(c.VolumeMounts, p)
		if mount == nil {
			if f, ok := elsewhere(pod, c, p, strings.TrimSpace(line)); ok {
				return f, true
			}
			continue // not a shared volume's path
		}
		var where []string
		for _, other := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
			if m := mountOf(other.VolumeMounts, mount.Name); m != nil {
				where = append(where, other.Name+":"+m.MountPath)
			}
		}
		line = strings.TrimSpace(line)
		return Finding{
			Severity:  Error,
			Check:     "shared-volume",
			Container: c.Name,
			Problem:   fmt.Sprintf(cause.problem, p, mount.Name, line),
			Fix:       cause.fix(mount.Name, strings.Join(where, ", ")),
		}, true
	}
	return Finding{}, false
}

// mountUnder returns the mount p lies under, or nil.
func mountUnder(ms []corev1.VolumeMount, p string) *corev1.VolumeMount {
	p = path.Clean(p)
	for i := range ms {
		mp := path.Clean(ms[i].MountPath)
		if p == mp || strings.HasPrefix(p, mp+"/") {
			return &ms[i]
		}
	}
	return nil
}

// elsewhere is the finding for a path this container does not mount but
// another container does: the two sides disagree on where the shared
// volume is.
func elsewhere(pod *corev1.Pod, c corev1.Container, p, line string) (Finding, bool) {
	for _, other := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		if other.Name == c.Name {
			continue
		}
		m := mountUnder(other.VolumeMounts, p)
		if m == nil {
			continue
		}
		here := "does not mount it"
		if own := mountOf(c.VolumeMounts, m.Name); own != nil {
			here = "mounts it at " + own.MountPath
		}
		return Finding{
			Severity:  Error,
			Check:     "shared-volume",
			Container: c.Name,
			Problem:   fmt.Sprintf("uses %s, where container %q mounts volume %q, but this container %s (%q)", p, other.Name, m.Name, here, line),
			Fix:       fmt.Sprintf("mount volume %q at %s in container %q too, or use the path it is mounted at here", m.Name, m.MountPath, c.Name),
		}, true
	}
	return Finding{}, false
}
