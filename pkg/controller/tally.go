package controller

import (
	"cmp"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podpatterns/sidecar-injector/pkg/conformance"
)

// tally is the fleet's classification, kept up to date one Pod at a
// time: each Pod's result, each owner's Pods by state and the
// controller references of those that need repair, and the gauges'
// counts. A Pod's change costs its own classification (usually a lookup
// of its shape's), never a pass over the fleet.
type tally struct {
	pods   map[string]counted // by store key
	owners map[key]*ownerTally
	counts map[[3]string]int
	// resources are what the sidecars request and limit, by namespace,
	// template, resource and kind (request or limit), in milli-units
	// (millicores, millibytes) so sums and differences stay exact; and
	// how many Pods hold each namespace's template.
	resources map[[4]string]int64
	holders   map[[2]string]int
	// changed are the series and owners touched since the last flush.
	changedSeries    map[[3]string]bool
	changedResources map[[2]string]bool
	changedOwners    map[key]bool
}

// counted is one Pod's part in the tally.
type counted struct {
	owner key
	res   *conformance.Result
	ref   *metav1.OwnerReference // its controller, when it needs repair
}

// ownerTally is one owner's Pods by state, and the controllers its Pods
// that need repair name, by UID.
// numStates is len(conformance.States); TestEveryStateIsCounted holds
// it to that.
const numStates = 7

type ownerTally struct {
	states [numStates]int // by index in conformance.States
	refs   map[types.UID]refCount
}

type refCount struct {
	ref metav1.OwnerReference
	n   int
}

func newTally() *tally {
	return &tally{pods: map[string]counted{}, owners: map[key]*ownerTally{}, counts: map[[3]string]int{},
		resources: map[[4]string]int64{}, holders: map[[2]string]int{},
		changedSeries: map[[3]string]bool{}, changedResources: map[[2]string]bool{}, changedOwners: map[key]bool{}}
}

// put records the Pod's result in place of what it counted before.
func (t *tally) put(storeKey string, p *cachedPod, res *conformance.Result) {
	c := counted{owner: key{p.Namespace, p.Owner}, res: res}
	if res.State.NeedsRepair() {
		c.ref = p.Controller
	}
	if old, ok := t.pods[storeKey]; ok {
		if old.owner == c.owner && old.res == res && old.ref == c.ref {
			return // a shape's memo: nothing moved
		}
		t.add(old, -1)
	}
	t.pods[storeKey] = c
	t.add(c, 1)
}

// remove forgets a Pod that went away or out of scope.
func (t *tally) remove(storeKey string) {
	if old, ok := t.pods[storeKey]; ok {
		t.add(old, -1)
		delete(t.pods, storeKey)
	}
}

func (t *tally) add(c counted, n int) {
	ns := c.owner.namespace
	for _, tpl := range c.res.Templates {
		t.count([3]string{ns, tpl.Name, string(tpl.State)}, n)
	}
	if len(c.res.Templates) == 0 {
		t.count([3]string{ns, "", string(conformance.None)}, n)
	}
	for _, sc := range c.res.Sidecars {
		t.addSidecar(ns, sc, n)
	}
	o := t.owners[c.owner]
	if o == nil {
		o = &ownerTally{refs: map[types.UID]refCount{}}
		t.owners[c.owner] = o
	}
	o.states[slices.Index(conformance.States, c.res.State)] += n
	if c.ref != nil {
		rc := o.refs[c.ref.UID]
		rc.ref, rc.n = *c.ref, rc.n+n
		if rc.n == 0 {
			delete(o.refs, c.ref.UID)
		} else {
			o.refs[c.ref.UID] = rc
		}
	}
	if o.states == [numStates]int{} {
		delete(t.owners, c.owner)
	}
	t.changedOwners[c.owner] = true
}

// addSidecar counts n Pods' sidecar of a template in namespace ns.
func (t *tally) addSidecar(ns string, sc conformance.Sidecar, n int) {
	held := [2]string{ns, sc.Template}
	t.holders[held] += n
	if t.holders[held] == 0 {
		delete(t.holders, held)
	}
	for kind, list := range map[string]corev1.ResourceList{"request": sc.Requests, "limit": sc.Limits} {
		for name, q := range list {
			t.resources[[4]string{ns, sc.Template, string(name), kind}] += int64(n) * q.MilliValue()
		}
	}
	if t.holders[held] == 0 {
		for series := range t.resources {
			if series[0] == ns && series[1] == sc.Template {
				delete(t.resources, series)
			}
		}
	}
	t.changedResources[held] = true
}

func (t *tally) count(series [3]string, n int) {
	t.counts[series] += n
	if t.counts[series] == 0 {
		delete(t.counts, series)
	}
	t.changedSeries[series] = true
}

// worst is the owner's worst state, and false when it has no Pods.
func (t *tally) worst(k key) (conformance.State, bool) {
	o := t.owners[k]
	if o == nil {
		return "", false
	}
	for i, n := range o.states {
		if n > 0 {
			return conformance.States[i], true
		}
	}
	return "", false
}

// claim is the controller reference the owner's Pods that need repair
// carry.
func (t *tally) claim(k key) claim {
	o := t.owners[k]
	if o == nil || len(o.refs) == 0 {
		return claim{}
	}
	var c claim
	for _, rc := range o.refs {
		c.ref, c.exists = rc.ref, true
	}
	c.mixed = len(o.refs) > 1
	return c
}

// needRepair lists the owners whose worst state needs repair.
func (t *tally) needRepair() []key {
	var out []key
	for k := range t.owners {
		if w, _ := t.worst(k); w.NeedsRepair() {
			out = append(out, k)
		}
	}
	slices.SortFunc(out, func(a, b key) int {
		return cmp.Or(cmp.Compare(a.namespace, b.namespace), cmp.Compare(a.owner.Name, b.owner.Name), cmp.Compare(a.owner.Kind, b.owner.Kind))
	})
	return out
}
