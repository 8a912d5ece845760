package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/conformance"
	"github.com/podpatterns/sidecar-injector/pkg/inject"
	"github.com/podpatterns/sidecar-injector/pkg/statuskey"
)

type auditFlags struct {
	file, catalogPath, output string
	keyDir                    string
	cluster                   kubeFlags
	namesp                    string
	allNamespaces, all        bool
	nsLabels                  map[string]string
}

func newAuditCommand() *cobra.Command {
	f := &auditFlags{output: "text"}
	cmd := &cobra.Command{
		Use:   "audit [-n NAMESPACE | -A] | audit -f FILE|-",
		Short: "Find the Pods that lack, or run a stale or tampered copy of, what they should carry",
		Long: `Classify every Pod against what it should carry: the templates it asks
for, or its namespace's policies default or require, injected as the
catalog renders them today. Each Pod is current, stale (the catalog now
renders something else), missing (not injected), tampered (the status
annotation and the containers disagree), not-wanted (injected, no longer
asked for) or none. Pods are grouped by the workload that owns them, with
the command that repairs it.

Live, it reads the catalog the cluster's injector serves (the ConfigMap
sidecar-injector/sidecar-injector-catalog) unless --catalog is given, and
looks at every namespace that opted in plus every namespace a policy with
required templates matches. With -f it reads manifests or the output of
kubectl get pods -A -o yaml.

The webhook signs each status entry with a key of the Secret
sidecar-injector/sidecar-injector-status-key. Live, audit reads that
Secret; offline, give its keys with --status-key-dir. Without them a
signed entry is unverified, never current: the content is still checked
against the entry, and a mismatch is tampered.

` + exitCodes("a Pod is missing, stale or tampered"),
		Example: `  sidecar-injector audit
  sidecar-injector audit -n shop --all
  kubectl get pods -A -o yaml | sidecar-injector audit -f - -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd.Context(), cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&f.file, "filename", "f", f.file, `manifests to audit offline, or "-" for standard input`)
	fs.StringVar(&f.catalogPath, "catalog", f.catalogPath, "catalog file or directory; live, the cluster's catalog ConfigMap if empty, offline the embedded default")
	fs.StringVarP(&f.output, "output", "o", f.output, "text or json")
	fs.StringVar(&f.keyDir, "status-key-dir", f.keyDir, "directory holding the status keys (current, previous) that verify the webhook's signed status entries; live, the Secret "+catalog.ConfigMapNamespace+"/"+statuskey.SecretName+" if empty; without keys those entries read unverified")
	fs.BoolVar(&f.all, "all", f.all, "also list workloads whose Pods are current or ask for nothing")
	fs.StringToStringVar(&f.nsLabels, "namespace-labels", f.nsLabels, "with -f: labels of the Pods' namespaces, for policies: k=v,k2=v2")
	fs.StringVar(&f.cluster.kubeconfig, "kubeconfig", "", "kubeconfig; $KUBECONFIG or ~/.kube/config if empty")
	fs.StringVar(&f.cluster.context, "context", "", "kubeconfig context")
	fs.StringVarP(&f.namesp, "namespace", "n", f.namesp, "audit this namespace only")
	fs.BoolVarP(&f.allNamespaces, "all-namespaces", "A", f.allNamespaces, "audit every namespace, opted in or not")
	return cmd
}

func (f *auditFlags) run(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	if f.output != "text" && f.output != "json" {
		return withCode(ExitBadInput, fmt.Errorf("--output %q not supported; use text or json", f.output))
	}
	if f.namesp != "" && f.allNamespaces {
		return withCode(ExitBadInput, errors.New("-n and -A go apart"))
	}
	var rep *conformance.Report
	var err error
	if f.file != "" {
		rep, err = f.offline(stdin)
	} else {
		rep, err = f.live(ctx)
	}
	if err != nil {
		return withCode(ExitBadInput, err)
	}
	if f.output == "json" {
		err = writeJSON(stdout, rep)
	} else {
		err = rep.WriteText(stdout, f.all)
	}
	if err != nil {
		return err
	}
	if n := rep.NeedRepair(); n > 0 {
		return found("%d of %d Pods need repair", n, len(rep.Pods))
	}
	return nil
}

func (f *auditFlags) offline(stdin io.Reader) (*conformance.Report, error) {
	cat, err := catalog.LoadOrDefault(f.catalogPath)
	if err != nil {
		return nil, err
	}
	input, err := readInput(f.file, stdin)
	if err != nil {
		return nil, err
	}
	var keys *inject.Keys
	if f.keyDir != "" {
		if keys, err = statuskey.Read(f.keyDir); err != nil {
			return nil, err
		}
	}
	return conformance.AuditManifests(input, f.nsLabels, cat, keys, catalog.Describe(f.catalogPath))
}

func (f *auditFlags) live(ctx context.Context) (*conformance.Report, error) {
	client, _, err := f.cluster.client()
	if err != nil {
		return nil, fmt.Errorf("no cluster to audit (use -f for files): %w", err)
	}
	cat, source, err := conformance.ClusterCatalog(ctx, client, f.catalogPath)
	if err != nil {
		return nil, err
	}
	var keys *inject.Keys
	if f.keyDir != "" {
		keys, err = statuskey.Read(f.keyDir)
	} else {
		keys, err = conformance.ClusterKeys(ctx, client)
	}
	if err != nil {
		return nil, err
	}
	return conformance.Audit(ctx, client, cat, keys, source, conformance.Scope{Namespace: f.namesp, All: f.allNamespaces})
}
