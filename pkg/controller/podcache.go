package controller

import (
	"crypto/sha256"
	"encoding/json"
	"maps"
	"runtime"
	"strings"
	"sync"
	"weak"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podpatterns/sidecar-injector/pkg/conformance"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/pkg/statuskey"
)

// cachedPod is what the controller's cache keeps of a Pod, about 1 KiB
// however large the Pod: who it is (name, namespace, UID, resource
// version), the workload that owns it and its controller reference (to
// prove ownership before a repair), its phase, whether it is being
// deleted, and a pointer to its shape, which it shares with every Pod of
// the same content. The Pod as stored is read, uncached, only when one is
// upgraded.
type cachedPod struct {
	metav1.TypeMeta
	metav1.ObjectMeta
	Owner      conformance.Owner
	Controller *metav1.OwnerReference
	Phase      corev1.PodPhase
	shape      *shape
}

// DeepCopyObject is a shallow copy: a cachedPod is never modified once
// made.
func (p *cachedPod) DeepCopyObject() k8sruntime.Object { c := *p; return &c }

// running reports whether the Pod counts: not finished, not going away.
func (p *cachedPod) running() bool {
	return p.Phase != corev1.PodSucceeded && p.Phase != corev1.PodFailed && p.DeletionTimestamp == nil
}

// shape is a Pod as the classification reads it: its spec and
// annotations and the opt-out label, without what tells one Pod of a
// workload from another (name, UID, owner, node, host name, status, the
// random suffix of the service account token volume). Classify gives
// a Pod and its shape the same result, so Pods of one shape are
// classified once per namespace, catalog and namespace labels.
type shape struct {
	pod  *corev1.Pod
	keys *inject.Keys // its status entries are signed with

	mu   sync.Mutex
	memo map[string]memo // by namespace
}

// memo is a classification and the generation of the catalog and
// namespace labels it was made under.
type memo struct {
	gen uint64
	res *conformance.Result
}

// classify returns the shape's classification in namespace ns under
// generation gen, classifying it if it has none for them with the keys
// its status entries are signed with (see shapes).
func (s *shape) classify(ns string, gen uint64, classify func(*corev1.Pod, *inject.Keys) conformance.Result) *conformance.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m, ok := s.memo[ns]; ok && m.gen == gen {
		return m.res
	}
	res := classify(s.pod, s.keys)
	if s.memo == nil {
		s.memo = map[string]memo{}
	}
	s.memo[ns] = memo{gen, &res}
	return &res
}

// shapes interns shapes by the hash of their JSON. A shape lives as long
// as a cached Pod points to it; its entry goes with it.
//
// The webhook signs each status entry with the time, so no two Pods of a
// workload would share a shape. A shape's status entries are vouched for
// instead (inject.Vouch): those keys verify are signed anew, without a
// time, with a key of this process (vouched), those they do not get a
// MAC that never verifies; shapes are classified with vouched.
type shapes struct {
	mu            sync.Mutex
	m             map[[32]byte]weak.Pointer[shape]
	keys, vouched *inject.Keys
}

// newShapes interns shapes for a cache whose Pods keys verify (nil: none
// can be).
func newShapes(keys *inject.Keys) *shapes {
	s := &shapes{keys: keys}
	if keys != nil {
		s.vouched, _ = inject.NewKeys(statuskey.New()) // a new key is long enough
	}
	return s
}

func (s *shapes) intern(pod *corev1.Pod) *shape {
	data, _ := json.Marshal(pod) // API types always marshal
	key := sha256.Sum256(data)
	s.mu.Lock()
	defer s.mu.Unlock()
	if sh := s.m[key].Value(); sh != nil {
		return sh
	}
	if s.m == nil {
		s.m = map[[32]byte]weak.Pointer[shape]{}
	}
	sh := &shape{pod: pod, keys: s.vouched}
	s.m[key] = weak.Make(sh)
	runtime.AddCleanup(sh, s.forget, key)
	return sh
}

func (s *shapes) forget(key [32]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[key].Value() == nil {
		delete(s.m, key)
	}
}

// transform turns a Pod from the API server into a cachedPod; the
// informer keeps only that.
func (s *shapes) transform(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // a tombstone
	}
	p := &cachedPod{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID, ResourceVersion: pod.ResourceVersion, DeletionTimestamp: pod.DeletionTimestamp},
		Owner:      conformance.OwnerOf(pod),
		Controller: metav1.GetControllerOf(pod),
		Phase:      pod.Status.Phase,
	}
	p.shape = s.intern(s.shapeOf(pod))
	return p, nil
}

// shapeOf is the Pod as the classification reads it.
func (sh *shapes) shapeOf(pod *corev1.Pod) *corev1.Pod {
	s := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: pod.Annotations}, Spec: *pod.Spec.DeepCopy()}
	if status, ok := pod.Annotations[inject.StatusAnnotation]; ok {
		s.Annotations = maps.Clone(pod.Annotations)
		s.Annotations[inject.StatusAnnotation] = inject.Vouch(status, sh.keys, sh.vouched)
	}
	if v, ok := pod.Labels[inject.InjectionLabel]; ok {
		s.Labels = map[string]string{inject.InjectionLabel: v}
	}
	s.Spec.NodeName, s.Spec.Hostname, s.Spec.Subdomain = "", "", ""
	// The API server names each Pod's token volume kube-api-access-<5
	// random characters>; the classification never reads it.
	renamed := map[string]bool{}
	for i := range s.Spec.Volumes {
		if v := &s.Spec.Volumes[i]; strings.HasPrefix(v.Name, tokenVolume) && v.Projected != nil {
			renamed[v.Name], v.Name = true, tokenVolume
		}
	}
	for _, list := range [][]corev1.Container{s.Spec.InitContainers, s.Spec.Containers} {
		for i := range list {
			for j := range list[i].VolumeMounts {
				if m := &list[i].VolumeMounts[j]; renamed[m.Name] {
					m.Name = tokenVolume
				}
			}
		}
	}
	return s
}

// tokenVolume is the prefix of the service account token volume's name.
const tokenVolume = "kube-api-access-"

// podKey is the key of a Pod in the informer's store.
func podKey(ns, name string) string { return types.NamespacedName{Namespace: ns, Name: name}.String() }
