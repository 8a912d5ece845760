// Package inject is the injection engine: given a Pod, its namespace's
// labels and a catalog, it decides what to add to the Pod, or denies it
// with a message a person can act on.
//
// The engine is pure: no I/O, no clock, no globals. The same inputs give the
// same Plan, byte for byte. The admission server and the offline tools both
// call Pod and turn the Plan into a JSON Patch with package patch.
package inject
