package inject

// Domain prefixes every label and annotation the project reads or writes.
const Domain = "sidecars.podpatterns.io"

// The labels and annotations users write into manifests. Their values are
// part of the project's contract and never change.
const (
	// InjectionLabel on a namespace ("enabled") opts it in; on a Pod
	// ("disabled") keeps the Pod away from the webhook.
	InjectionLabel = Domain + "/injection"
	// InjectAnnotation lists the templates to inject, comma-separated, in
	// order; "none" opts out of the namespace's defaults.
	InjectAnnotation = Domain + "/inject"
	// TargetContainersAnnotation names the app containers that get the
	// templates' mounts and env; by default every app container does.
	TargetContainersAnnotation = Domain + "/target-containers"
	// StatusAnnotation is written by the webhook: what it injected.
	StatusAnnotation = Domain + "/status"
	// None opts a Pod out of namespace defaults.
	None = "none"
)

// DefaultContainerAnnotation is kubectl's: the container `kubectl logs`
// and `kubectl exec` pick when none is named.
const DefaultContainerAnnotation = "kubectl.kubernetes.io/default-container"

// ParameterAnnotation is the annotation key that sets a template parameter.
func ParameterAnnotation(template, parameter string) string {
	return template + "." + Domain + "/" + parameter
}
