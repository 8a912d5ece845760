package cmd

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/podpatterns/sidecar-injector/pkg/certs"
	"github.com/podpatterns/sidecar-injector/pkg/statuskey"
)

func newCertsCommand() *cobra.Command {
	o := certs.Options{Service: "sidecar-injector", Namespace: "sidecar-injector", Validity: 365 * 24 * time.Hour}
	var outDir, webhookConfig string
	var printCA bool
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Write a development CA and serving certificate for the webhook Service",
		Long: `Write a development CA and serving certificate for the webhook Service.

Writes ca.crt, ca.key, tls.crt and tls.key to --out-dir, and status-key,
the key the webhook signs status entries with, unless it is there. The certificate
names <service>.<namespace>.svc and <service>.<namespace>.svc.cluster.local
plus --hosts. Rerunning reissues the serving certificate from the same CA
(while the CA outlives it), so the webhook's caBundle stays valid and a
running server picks up the new pair without failing a request.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := certs.Write(outDir, o)
			if err != nil {
				return withCode(ExitBadInput, err)
			}
			ca := "new CA"
			if res.CAReused {
				ca = "existing CA"
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s/tls.crt for %v, valid until %s, signed by the %s\n", outDir, res.DNSNames, res.NotAfter.Format(time.RFC3339), ca)
			keyFile := filepath.Join(outDir, "status-key")
			switch made, err := statuskey.WriteFile(keyFile); {
			case err != nil:
				return err
			case made:
				fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s, the key status entries are signed with (the Secret %s)\n", keyFile, statuskey.SecretName)
			}
			if webhookConfig != "" {
				if err := setCABundle(webhookConfig, res.CAPEM); err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "set caBundle in %s\n", webhookConfig)
			}
			if printCA {
				fmt.Fprintln(cmd.OutOrStdout(), base64.StdEncoding.EncodeToString(res.CAPEM))
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&outDir, "out-dir", "certs", "directory for ca.crt, ca.key, tls.crt, tls.key and status-key")
	fs.StringVar(&o.Service, "service", o.Service, "name of the webhook Service")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "namespace of the webhook Service")
	fs.StringSliceVar(&o.Hosts, "hosts", o.Hosts, "extra DNS names or IPs, e.g. localhost,127.0.0.1")
	fs.DurationVar(&o.Validity, "validity", o.Validity, "lifetime of the serving certificate (the CA gets ten times as long)")
	fs.StringVar(&webhookConfig, "webhook-config", "", "MutatingWebhookConfiguration YAML file to write the caBundle into")
	fs.BoolVar(&printCA, "print-ca-bundle", false, "print the base64 caBundle on stdout")
	return cmd
}

// setCABundle writes caPEM into the MutatingWebhookConfiguration file.
func setCABundle(file string, caPEM []byte) error {
	in, err := os.ReadFile(file)
	if err != nil {
		return withCode(ExitBadInput, err)
	}
	out, err := certs.SetCABundle(in, caPEM)
	if err != nil {
		return withCode(ExitBadInput, fmt.Errorf("%s: %w", file, err))
	}
	return os.WriteFile(file, out, 0o644)
}
