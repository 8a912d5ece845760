// Package patch turns an injection Plan into an RFC 6902 JSON Patch.
//
// The patch holds additions only and touches nothing it does not add, so
// fields from newer Kubernetes versions survive. Paths are RFC 6901
// escaped; arrays are appended to with "/-" and created whole where the
// Pod has none, and the annotations map likewise.
package patch
