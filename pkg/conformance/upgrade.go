package conformance

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
)

// Upgrade is how a stale Pod comes to carry what the catalog renders for
// it today without being re-created: new images for running template
// containers, which a running Pod may change; new cpu and memory for
// them, which the Pod's resize subresource changes with no restart; and
// the status annotation the webhook would write for the new rendering.
type Upgrade struct {
	Images  []Image
	Resizes []Resize
	// Status is the status annotation's new value.
	Status string
}

// Resize is one container's move to new cpu and memory.
type Resize struct {
	Init     bool
	Index    int
	Name     string
	From, To corev1.ResourceRequirements
}

// Path is the JSON pointer of the container in the Pod.
func (rs Resize) Path() string { return Image{Init: rs.Init, Index: rs.Index}.Path() }

// Image is one container's move to a new image.
type Image struct {
	// Init: the container is in spec.initContainers (a native sidecar).
	Init bool
	// Index is its place in its list, Name its name.
	Index    int
	Name     string
	From, To string
}

// Path is the JSON pointer of the container in the Pod.
func (im Image) Path() string {
	list := "containers"
	if im.Init {
		list = "initContainers"
	}
	return fmt.Sprintf("/spec/%s/%d", list, im.Index)
}

// InPlace works out the Upgrade of a stale Pod, or says why it must be
// re-created instead: it is not stale, or today's rendering differs in
// more than the images and the cpu and memory of containers that keep
// running (args, env, mounts, other resources, a volume, a pull policy
// the new image would default otherwise, or an init container that
// already ran), or a resize Kubernetes would refuse or carry out with a
// restart (see resizes). The Upgrade applied
// to the Pod classifies current, and a reinvocation of the webhook
// would keep it as it is.
func InPlace(pod *corev1.Pod, nsLabels map[string]string, cat *catalog.Catalog, keys *inject.Keys) (*Upgrade, error) {
	res := Classify(pod, nsLabels, cat, keys)
	if res.State != Stale {
		return nil, fmt.Errorf("it is %s, not stale", res.State)
	}
	upgraded := pod.DeepCopy()
	up, err := move(upgraded, res, cat, keys)
	if err != nil {
		return nil, err
	}
	if err := sameContent(upgraded, cat, keys); err != nil {
		return nil, err
	}
	if after := Classify(upgraded, nsLabels, cat, keys); after.State != Current {
		return nil, errors.New("it would still not be current: " + staleReasons(after))
	}
	admitted, err := inject.Pod(upgraded, nsLabels, cat, keys)
	if err != nil {
		return nil, err
	}
	up.Status = upgraded.Annotations[inject.StatusAnnotation]
	if p := admitted.Plan; p != nil {
		if len(admitted.Injected) > 0 || len(p.InitContainers)+len(p.Containers)+len(p.Volumes)+len(p.Apps)+len(p.ImagePullSecrets) > 0 {
			return nil, fmt.Errorf("the webhook would add %s to it", strings.Join(admitted.Injected, ", "))
		}
		up.Status = p.Status.String()
	}
	return up, nil
}

// move gives the stale templates' containers of upgraded, a copy of the
// Pod classified res, their new images and cpu and memory, and their
// status entries the content they then hold.
func move(upgraded *corev1.Pod, res Result, cat *catalog.Catalog, keys *inject.Keys) (*Upgrade, error) {
	before := upgraded.DeepCopy()
	up := &Upgrade{}
	moved := map[string]map[string]corev1.Container{} // template: container: as rendered
	for _, t := range res.Templates {
		if t.State != Stale {
			continue
		}
		rendered, err := inject.Rendered(before, cat, t.Name)
		if err != nil {
			return nil, err
		}
		ims, err := moveImages(upgraded, rendered)
		if err != nil {
			return nil, err
		}
		rss, err := resizes(upgraded, rendered)
		if err != nil {
			return nil, err
		}
		up.Images, up.Resizes = append(up.Images, ims...), append(up.Resizes, rss...)
		moved[t.Name] = rendered
	}
	if len(up.Images)+len(up.Resizes) == 0 {
		return nil, errors.New("no template container's image, cpu or memory differs: " + staleReasons(res))
	}
	if len(up.Resizes) > 0 {
		if err := sameQoS(before, upgraded); err != nil {
			return nil, err
		}
	}
	return up, withContent(upgraded, moved, keys)
}

// sameContent says what, besides images, cpu and memory, the moved Pod
// still holds differently from what its status entries say.
func sameContent(upgraded *corev1.Pod, cat *catalog.Catalog, keys *inject.Keys) error {
	claims, err := inject.VerifyStatus(upgraded, cat, keys)
	if err != nil {
		return err
	}
	var differ []string
	for _, c := range claims {
		if c.Reason != "" {
			differ = append(differ, c.Name+": "+c.Reason)
		}
	}
	if len(differ) > 0 {
		return errors.New("more than images, cpu and memory differ: " + strings.Join(differ, "; "))
	}
	return nil
}

// moveImages gives the Pod's containers their new images (by container
// name), or says why one cannot change in place.
func moveImages(pod *corev1.Pod, rendered map[string]corev1.Container) ([]Image, error) {
	var out []Image
	for _, name := range slices.Sorted(maps.Keys(rendered)) {
		image := rendered[name].Image
		im, c := find(pod, name)
		if c == nil || c.Image == image {
			continue
		}
		if im.Init && (c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways) {
			return nil, fmt.Errorf("init container %q has run already; a new image takes a new Pod", name)
		}
		if p := c.ImagePullPolicy; p != "" && p == inject.DefaultPullPolicy(c.Image) && p != inject.DefaultPullPolicy(image) {
			return nil, fmt.Errorf("container %q pulls %s, the default for %s; %s defaults to %s, and a pull policy cannot change in place", name, p, c.Image, image, inject.DefaultPullPolicy(image))
		}
		im.From, im.To = c.Image, image
		c.Image = image
		out = append(out, im)
	}
	return out, nil
}

// withContent rewrites the status entries of the templates whose
// containers moved to new images or resources, as the content they hold
// now.
func withContent(pod *corev1.Pod, moved map[string]map[string]corev1.Container, keys *inject.Keys) error {
	var status inject.Status
	if err := json.Unmarshal([]byte(pod.Annotations[inject.StatusAnnotation]), &status); err != nil {
		return fmt.Errorf("annotation %s: %w", inject.StatusAnnotation, err)
	}
	for i, in := range status.Templates {
		if rendered, ok := moved[in.Name]; ok {
			var err error
			if status.Templates[i], err = inject.WithContent(in, rendered, keys); err != nil {
				return err
			}
		}
	}
	pod.Annotations[inject.StatusAnnotation] = status.String()
	return nil
}

// find returns where the container of that name is, and the container.
func find(pod *corev1.Pod, name string) (Image, *corev1.Container) {
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return Image{Init: true, Index: i, Name: name}, &pod.Spec.InitContainers[i]
		}
	}
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return Image{Index: i, Name: name}, &pod.Spec.Containers[i]
		}
	}
	return Image{}, nil
}

// staleReasons joins the reasons of the templates that are not current.
func staleReasons(res Result) string {
	var reasons []string
	for _, t := range res.Templates {
		if t.State != Current {
			reasons = append(reasons, t.Name+": "+t.Reason)
		}
	}
	return strings.Join(reasons, "; ")
}
