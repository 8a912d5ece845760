// Package inject is the injection engine: given a Pod, its namespace's
// labels and a catalog, it decides what to add to the Pod, or denies it
// with a message a person can act on.
//
// The engine is pure: no I/O, no clock but the one Keys carries, no
// globals. The same inputs give the same Plan, byte for byte. The
// admission server and the offline tools both call Pod and turn the Plan
// into a JSON Patch with package patch.
//
// Start at engine.go: Pod is the whole flow, and calls on the rest. The
// files by what they hold:
//
//   - request.go: what the Pod asks for (the annotations, the namespace's
//     policies), and the Deny* texts the compiled policies share;
//   - builder.go: one Pod's injection in progress (what it holds, the plan
//     so far); add.go (a template's containers, volumes and ports),
//     apps.go (mounts and env for the app containers), users.go (the
//     app's user) and overrides.go (resource overrides) add to it, each
//     calling back on builder.go's lookups;
//   - render.go: a template rendered with the Pod's parameters;
//   - resources.go and rules.go: pod-level resources, LimitRange and quota;
//   - keys.go, held.go, cover.go, verify.go: the status annotation, what
//     each entry holds, its signature, and how a claim is checked against
//     the Pod;
//   - result.go (Plan, Status), names.go (annotations and labels).
package inject
