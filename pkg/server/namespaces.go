package server

import (
	"context"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// namespaceCache serves namespace labels from a watch. A namespace missing
// from the cache (created a moment ago) is fetched once directly, so a Pod
// created right after its namespace still gets the namespace's policy.
type namespaceCache struct {
	client kubernetes.Interface
	lister listersv1.NamespaceLister
	synced cache.InformerSynced
}

func newNamespaceCache(ctx context.Context, cfg *rest.Config) (*namespaceCache, error) {
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	inf := factory.Core().V1().Namespaces()
	nc := &namespaceCache{client: client, lister: inf.Lister(), synced: inf.Informer().HasSynced}
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
