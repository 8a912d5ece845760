package certs

import (
	"encoding/base64"
	"fmt"

	"sigs.k8s.io/yaml"
)

// SetCABundle returns the MutatingWebhookConfiguration YAML (a whole one,
// or a kustomize patch of one) with caBundle set on every webhook. Fields
// it does not touch are kept as they are.
func SetCABundle(configYAML, caPEM []byte) ([]byte, error) {
	var obj map[string]any
	if err := yaml.Unmarshal(configYAML, &obj); err != nil {
		return nil, fmt.Errorf("decoding MutatingWebhookConfiguration: %w", err)
	}
	webhooks, _ := obj["webhooks"].([]any)
	if obj["kind"] != "MutatingWebhookConfiguration" || len(webhooks) == 0 {
		return nil, fmt.Errorf("not a MutatingWebhookConfiguration with webhooks (kind %v, %d webhooks)", obj["kind"], len(webhooks))
	}
	for i, w := range webhooks {
		hook, ok := w.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("webhooks[%d] is not an object", i)
		}
		cc, _ := hook["clientConfig"].(map[string]any)
		if cc == nil {
			cc = map[string]any{}
			hook["clientConfig"] = cc
		}
		cc["caBundle"] = base64.StdEncoding.EncodeToString(caPEM)
	}
	return yaml.Marshal(obj)
}
