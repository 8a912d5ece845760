// Package inject is the injection engine: given a Pod, its namespace's
// labels and a catalog, it decides what to add to the Pod, or denies it
// with a message a person can act on.
//
// The engine is pure: no I/O, no clock, no globals. The same inputs give the
// same Plan, byte for byte. The admission server and the offline tools both
// call Pod and turn the Plan into a JSON Patch with package patch.
//
// A Pod goes through the files in one direction: engine.go (Pod, the
// whole flow), request.go (what the Pod asks for and what its status
// claims), builder.go (its containers, ports and target app containers),
// verify.go (the claims checked against what it holds), render.go (a
// template rendered for it), add.go, apps.go and users.go (what a
// template adds), held.go (the status hash of what it then holds).
package inject
