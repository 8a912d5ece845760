package server

import (
	"context"
	"time"

	"github.com/go-logr/logr"
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
	log    logr.Logger
}

func newNamespaceCache(ctx context.Context, cfg *rest.Config, log logr.Logger) (*namespaceCache, error) {
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	inf := factory.Core().V1().Namespaces()
	nc := &namespaceCache{client: client, lister: inf.Lister(), synced: inf.Informer().HasSynced, log: log}
	factory.Start(ctx.Done())
	return nc, nil
}

// Labels returns the namespace's labels, or nil when it cannot be found.
func (n *namespaceCache) Labels(name string) map[string]string {
	ns, err := n.lister.Get(name)
	if err == nil {
		return ns.Labels
	}
	if !apierrors.IsNotFound(err) {
		n.log.Error(err, "Reading namespace from cache", "namespace", name)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	live, err := n.client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		n.log.Error(err, "Namespace not in cache and not readable; using no labels", "namespace", name)
		return nil
	}
	return live.Labels
}
