// Package policysync keeps a catalog's compiled admission policies
// applied in the cluster: the controller runs it with
// --admission-policies, for clusters that inject without the webhook.
package policysync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podpatterns/sidecar-injector/pkg/admissionpolicy"
	"github.com/podpatterns/sidecar-injector/pkg/catalog"
)

// Syncer keeps the catalog's compiled admission policies applied:
// at start, at every catalog the watcher accepts and every Interval (a
// policy edited or deleted by hand comes back). A catalog the watcher
// refuses leaves the policies of the last good one in place (an Event and
// a count say so); what it applied before and the catalog no longer
// compiles to is deleted. What it applies carries OwnerAnnotation with
// Owner, and it deletes nothing else: another team's policy with the
// same managed-by label, or another install's, stays.
type Syncer struct {
	Client   client.Client
	Catalog  func() *catalog.Catalog
	Recorder record.EventRecorder
	Log      logr.Logger
	Metrics  *Metrics
	// Owner names this install: the namespace it runs in.
	Owner string
	// Sync is signalled to apply the current catalog again.
	Sync chan struct{}
	// Interval between applications with no signal.
	Interval time.Duration
}

// OwnerAnnotation marks an admission policy object with the install
// whose syncer applied it.
const OwnerAnnotation = "sidecars.podpatterns.io/owner"

// Metrics count the syncer's work.
type Metrics struct {
	syncs   *prometheus.CounterVec
	refused prometheus.Gauge
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_injector_admission_policy_syncs_total",
			Help: "Times the compiled admission policies were applied, by result: applied, failed (the API server refused or was unreachable; retried every --audit-interval and at a catalog change), catalog-refused (a broken catalog: the last good policies stay).",
		}, []string{"result"}),
		refused: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sidecar_injector_admission_policy_refused_templates",
			Help: "Templates of the applied catalog the compiler refused: the policies deny the Pods that get them.",
		}),
	}
	for _, r := range []string{"applied", "failed", "catalog-refused"} {
		m.syncs.WithLabelValues(r)
	}
	reg.MustRegister(m.syncs, m.refused)
	return m
}

// Start applies the policies now, at each signal and every Interval,
// until ctx is done.
func (s *Syncer) Start(ctx context.Context) error {
	tick := time.NewTicker(s.Interval)
	defer tick.Stop()
	for {
		if err := s.apply(ctx); err != nil {
			s.Log.Error(err, "Applying the compiled admission policies failed")
			s.Metrics.syncs.WithLabelValues("failed").Inc()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.Sync:
		case <-tick.C:
		}
	}
}

// Signal asks for the policies to be applied again, unless that is asked
// already; a nil syncer does nothing.
func (s *Syncer) Signal() {
	if s == nil {
		return
	}
	select {
	case s.Sync <- struct{}{}:
	default:
	}
}

// CatalogRefused notes a broken catalog: the policies are left as they are.
func (s *Syncer) CatalogRefused(ctx context.Context, err error) {
	s.Metrics.syncs.WithLabelValues("catalog-refused").Inc()
	mutating := &admissionv1.MutatingAdmissionPolicy{}
	if s.Client.Get(ctx, client.ObjectKey{Name: admissionpolicy.Name}, mutating) == nil {
		s.Recorder.Eventf(mutating, corev1.EventTypeWarning, "CatalogRefused", "the catalog was refused, so the admission policies of the last good one stay: %v", err)
	}
}

func (s *Syncer) apply(ctx context.Context) error {
	cat := s.Catalog()
	compiled := admissionpolicy.Compile(cat, admissionpolicy.Options{})
	emitted := map[string]bool{}
	changed := false
	for _, o := range compiled.Objects() {
		obj := o.(client.Object)
		obj.SetAnnotations(map[string]string{OwnerAnnotation: s.Owner})
		c, err := s.createOrUpdate(ctx, obj)
		if err != nil {
			return fmt.Errorf("%s %s: %w", o.GetObjectKind().GroupVersionKind().Kind, obj.GetName(), err)
		}
		changed = changed || c
		emitted[fmt.Sprintf("%T/%s", obj, obj.GetName())] = true
	}
	pruned, err := s.prune(ctx, emitted)
	if err != nil {
		return err
	}
	s.Metrics.syncs.WithLabelValues("applied").Inc()
	if !changed && !pruned {
		return nil // as they were: nothing to say
	}
	var refused []string
	for _, r := range compiled.Refused {
		refused = append(refused, fmt.Sprintf("%s (%s)", r.Template, r.Reason))
	}
	s.Metrics.refused.Set(float64(len(refused)))
	s.Log.Info("Applied the compiled admission policies", "catalog", cat.Version, "refused", refused)
	message := "applied the admission policies of catalog " + cat.Version
	if len(refused) > 0 {
		message += "; refused, so the policies deny the Pods that get them: " + strings.Join(refused, "; ")
	}
	s.Recorder.Event(compiled.Mutating, corev1.EventTypeNormal, "Compiled", message)
	return nil
}

// createOrUpdate makes the cluster's object obj, as a client that owns
// it: the compiler's output replaces what is there. It reports whether
// it wrote.
func (s *Syncer) createOrUpdate(ctx context.Context, obj client.Object) (bool, error) {
	existing := obj.DeepCopyObject().(client.Object)
	err := s.Client.Get(ctx, client.ObjectKeyFromObject(obj), existing)
	switch {
	case apierrors.IsNotFound(err):
		return true, s.Client.Create(ctx, obj)
	case err != nil:
		return false, err
	}
	obj.SetResourceVersion(existing.GetResourceVersion())
	obj.SetUID(existing.GetUID())
	if equality.Semantic.DeepEqual(spec(existing), spec(obj)) && equality.Semantic.DeepEqual(existing.GetLabels(), obj.GetLabels()) && existing.GetAnnotations()[OwnerAnnotation] == s.Owner {
		return false, nil
	}
	return true, s.Client.Update(ctx, obj)
}

func spec(obj client.Object) any {
	switch o := obj.(type) {
	case *admissionv1.MutatingAdmissionPolicy:
		return o.Spec
	case *admissionv1.MutatingAdmissionPolicyBinding:
		return o.Spec
	case *admissionv1.ValidatingAdmissionPolicy:
		return o.Spec
	case *admissionv1.ValidatingAdmissionPolicyBinding:
		return o.Spec
	}
	return nil
}

// prune deletes what the syncer applied before and did not apply now,
// and reports whether it deleted anything: only objects named as the
// compiler names them and marked with this install as their owner.
func (s *Syncer) prune(ctx context.Context, emitted map[string]bool) (bool, error) {
	lists := []client.ObjectList{&admissionv1.MutatingAdmissionPolicyBindingList{}, &admissionv1.ValidatingAdmissionPolicyBindingList{},
		&admissionv1.MutatingAdmissionPolicyList{}, &admissionv1.ValidatingAdmissionPolicyList{}}
	var errs []error
	deleted := false
	for _, list := range lists {
		if err := s.Client.List(ctx, list, client.MatchingLabels(admissionpolicy.ManagedLabels)); err != nil {
			return deleted, err
		}
		var items []client.Object
		switch l := list.(type) {
		case *admissionv1.MutatingAdmissionPolicyBindingList:
			items = pointers(l.Items)
		case *admissionv1.ValidatingAdmissionPolicyBindingList:
			items = pointers(l.Items)
		case *admissionv1.MutatingAdmissionPolicyList:
			items = pointers(l.Items)
		case *admissionv1.ValidatingAdmissionPolicyList:
			items = pointers(l.Items)
		}
		for _, obj := range items {
			if emitted[fmt.Sprintf("%T/%s", obj, obj.GetName())] || !strings.HasPrefix(obj.GetName(), admissionpolicy.Name) || obj.GetAnnotations()[OwnerAnnotation] != s.Owner {
				continue
			}
			s.Log.Info("Deleting an admission policy object the catalog no longer compiles to", "kind", fmt.Sprintf("%T", obj), "name", obj.GetName())
			if err := s.Client.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, err)
			}
			deleted = true
		}
	}
	return deleted, errors.Join(errs...)
}

func pointers[T any, P interface {
	*T
	client.Object
}](items []T) []client.Object {
	out := make([]client.Object, len(items))
	for i := range items {
		out[i] = P(&items[i])
	}
	return slices.Clip(out)
}
