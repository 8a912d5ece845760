// Package admissionpolicy compiles a catalog into admission policies that inject
// without a webhook: one MutatingAdmissionPolicy that adds what the
// engine adds, and one ValidatingAdmissionPolicy that denies what the
// engine denies, both evaluated by kube-apiserver in process.
//
// Like the engine it is pure: a catalog in, objects out. It compiles a
// template exactly or refuses it with the reason, never approximately.
// The policies write the status annotation in the form CEL can produce,
// the held JSON the webhook signs (inject.Injected.Held), unsigned,
// so the engine, audit and the controller verify it as they verify the
// webhook's. Where a Pod needs what CEL cannot compute (a copy of data
// the Pod's author wrote, in JSON the engine would hash), the validating
// policy declines the Pod with the reason instead of storing a Pod the
// webhook would not have stored.
//
// The files follow the policies' own order: compile.go (the objects),
// refuse.go (what the compiler cannot express), select.go (which
// templates a Pod gets, and the denials of the request itself),
// conflicts.go (what the Pod holds, and the clashes with it),
// template.go (one template's parameters), patch.go (what it adds),
// held.go (the status it writes), cel.go (CEL text from Go values).
package admissionpolicy
