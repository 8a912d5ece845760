package server

import (
	"context"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/podpatterns/sidecar-injector/pkg/inject"
)

// namespaceCache serves namespace labels, LimitRanges and ResourceQuotas
// from watches. A namespace missing from the cache (created a moment ago)
// is fetched once directly, so a Pod created right after its namespace
// still gets the namespace's policy.
type namespaceCache struct {
	client      kubernetes.Interface
	lister      listersv1.NamespaceLister
	limitRanges listersv1.LimitRangeLister
	quotas      listersv1.ResourceQuotaLister
	synced      cache.InformerSynced
}

func newNamespaceCache(ctx context.Context, cfg *rest.Config) (*namespaceCache, error) {
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	core := factory.Core().V1()
	ns, lr, rq := core.Namespaces(), core.LimitRanges(), core.ResourceQuotas()
	nc := &namespaceCache{client: client, lister: ns.Lister(), limitRanges: lr.Lister(), quotas: rq.Lister()}
	watches := []cache.SharedIndexInformer{ns.Informer(), lr.Informer(), rq.Informer()}
	nc.synced = func() bool {
		for _, inf := range watches {
			if !inf.HasSynced() {
				return false
			}
		}
		return true
	}
	factory.Start(ctx.Done())
	return nc, nil
}

// Labels returns the namespace's labels. A namespace not in the cache is
// read from the API server within the request's context; any error is
// returned, never taken for "no labels".
func (n *namespaceCache) Labels(ctx context.Context, name string) (map[string]string, error) {
	ns, err := n.lister.Get(name)
	if err == nil {
		return ns.Labels, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	live, err := n.client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return live.Labels, nil
}

// ResourceRules returns the namespace's LimitRanges and ResourceQuotas as
// the caches hold them.
func (n *namespaceCache) ResourceRules(_ context.Context, namespace string) (inject.Rules, error) {
	ranges, err := n.limitRanges.LimitRanges(namespace).List(labels.Everything())
	if err != nil {
		return inject.Rules{}, err
	}
	quotas, err := n.quotas.ResourceQuotas(namespace).List(labels.Everything())
	if err != nil {
		return inject.Rules{}, err
	}
	var r inject.Rules
	for _, l := range ranges {
		r.LimitRanges = append(r.LimitRanges, *l)
	}
	for _, q := range quotas {
		r.Quotas = append(r.Quotas, *q)
	}
	return r, nil
}
