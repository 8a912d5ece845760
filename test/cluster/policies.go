package cluster

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/podpatterns/sidecar-injector/pkg/admissionpolicy"
)

// InstallPolicies creates the compiled admission policies and their
// bindings, the mutating binding before the validating one, and returns
// what deletes them.
func InstallPolicies(ctx context.Context, c kubernetes.Interface, compiled *admissionpolicy.Compiled) (remove func(), err error) {
	api := c.AdmissionregistrationV1()
	if _, err := api.MutatingAdmissionPolicies().Create(ctx, compiled.Mutating, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	if _, err := api.ValidatingAdmissionPolicies().Create(ctx, compiled.Validating, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	if _, err := api.MutatingAdmissionPolicyBindings().Create(ctx, compiled.MutatingBinding, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	if _, err := api.ValidatingAdmissionPolicyBindings().Create(ctx, compiled.ValidatingBinding, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	return func() {
		ctx := context.Background()
		_ = api.MutatingAdmissionPolicyBindings().Delete(ctx, compiled.MutatingBinding.Name, metav1.DeleteOptions{})
		_ = api.ValidatingAdmissionPolicyBindings().Delete(ctx, compiled.ValidatingBinding.Name, metav1.DeleteOptions{})
		_ = api.MutatingAdmissionPolicies().Delete(ctx, compiled.Mutating.Name, metav1.DeleteOptions{})
		_ = api.ValidatingAdmissionPolicies().Delete(ctx, compiled.Validating.Name, metav1.DeleteOptions{})
	}, nil
}
