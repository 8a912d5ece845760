package conformance

import (
	"bytes"
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/pkg/manifest"
	"github.com/podpatterns/sidecar-injector/pkg/statuskey"
	"github.com/podpatterns/sidecar-injector/pkg/workload"
)

// Scope is which namespaces a live audit reads.
type Scope struct {
	// Namespace, when set, is the only one.
	Namespace string
	// All is every namespace; otherwise those that opted in and those a
	// policy with required templates matches.
	All bool
}

// Audit classifies every Pod of the namespaces in scope against cat,
// each with its namespace's labels, verifying signed status entries with
// keys. A Job's Pods count under the CronJob that owns the Job.
func Audit(ctx context.Context, client kubernetes.Interface, cat *catalog.Catalog, keys *inject.Keys, source string, scope Scope) (*Report, error) {
	rep := NewReport(source)
	namespaces, err := client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	cronJobs := cronJobOf(ctx, client)
	for _, ns := range namespaces.Items {
		switch {
		case scope.Namespace != "" && ns.Name != scope.Namespace:
			continue
		case scope.Namespace == "" && !scope.All && !InScope(ns.Labels, cat):
			continue
		}
		if Unlabelled(ns.Labels, cat) {
			rep.Unlabelled = append(rep.Unlabelled, ns.Name)
		}
		pods, err := client.CoreV1().Pods(ns.Name).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for i := range pods.Items {
			pod := &pods.Items[i]
			owner := OwnerOf(pod)
			if cron := cronJobs(pod.Namespace, owner); cron != "" {
				owner = Owner{Kind: "CronJob", Name: cron}
			}
			rep.Add(pod, ns.Labels, cat, keys, owner)
		}
	}
	return rep, nil
}

// AuditManifests classifies the running Pods of manifests (Pods, the
// output of kubectl get pods -o yaml, Lists) in namespaces with nsLabels.
func AuditManifests(input []byte, nsLabels map[string]string, cat *catalog.Catalog, keys *inject.Keys, source string) (*Report, error) {
	docs, err := manifest.Split(bytes.NewReader(input))
	if err != nil {
		return nil, err
	}
	rep := NewReport(source)
	for _, doc := range docs {
		pods, err := workload.RunningPods(doc.JSON)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc.Index, err)
		}
		for _, p := range pods {
			rep.Add(p, nsLabels, cat, keys, OwnerOf(p))
		}
	}
	return rep, nil
}

// ClusterCatalog is the catalog at path, or else the one the cluster's
// injector serves, and a name for it.
func ClusterCatalog(ctx context.Context, client kubernetes.Interface, path string) (*catalog.Catalog, string, error) {
	if path != "" {
		cat, err := catalog.Load(path)
		return cat, path, err
	}
	source := fmt.Sprintf("configmap %s/%s", catalog.ConfigMapNamespace, catalog.ConfigMapName)
	cm, err := client.CoreV1().ConfigMaps(catalog.ConfigMapNamespace).Get(ctx, catalog.ConfigMapName, metav1.GetOptions{})
	if err != nil {
		return nil, "", fmt.Errorf("reading the cluster's catalog (or give --catalog): %w", err)
	}
	cat, err := catalog.ParseConfigMap(cm.Data)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", source, err)
	}
	return cat, source, nil
}

// ClusterKeys are the status keys of the Secret the cluster's webhook
// signs with; none, with no error, when it cannot be read (no right to,
// or no webhook), which leaves signed entries unverified.
func ClusterKeys(ctx context.Context, client kubernetes.Interface) (*inject.Keys, error) {
	s, err := client.CoreV1().Secrets(catalog.ConfigMapNamespace).Get(ctx, statuskey.SecretName, metav1.GetOptions{})
	if err != nil {
		return nil, nil
	}
	return statuskey.FromSecret(s.Data)
}

// cronJobOf names the CronJob that owns a Job owner, looked up once per
// Job; "" for other owners, or when it cannot tell.
func cronJobOf(ctx context.Context, client kubernetes.Interface) func(ns string, o Owner) string {
	seen := map[string]string{}
	return func(ns string, o Owner) string {
		if o.Kind != "Job" {
			return ""
		}
		key := ns + "/" + o.Name
		if cron, ok := seen[key]; ok {
			return cron
		}
		if j, err := client.BatchV1().Jobs(ns).Get(ctx, o.Name, metav1.GetOptions{}); err == nil {
			if ref := metav1.GetControllerOf(j); ref != nil && ref.Kind == "CronJob" {
				seen[key] = ref.Name
			}
		}
		return seen[key]
	}
}
