package certs

import (
	"fmt"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/yaml"
)

// SetCABundle returns the MutatingWebhookConfiguration YAML with caBundle
// set on every webhook.
func SetCABundle(configYAML, caPEM []byte) ([]byte, error) {
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := yaml.UnmarshalStrict(configYAML, cfg); err != nil {
		return nil, fmt.Errorf("decoding MutatingWebhookConfiguration: %w", err)
	}
	if cfg.Kind != "MutatingWebhookConfiguration" || len(cfg.Webhooks) == 0 {
		return nil, fmt.Errorf("not a MutatingWebhookConfiguration with webhooks (kind %q, %d webhooks)", cfg.Kind, len(cfg.Webhooks))
	}
	for i := range cfg.Webhooks {
		cfg.Webhooks[i].ClientConfig.CABundle = caPEM
	}
	return yaml.Marshal(cfg)
}
