// Package catalog loads, validates and renders the admin-owned catalog of
// sidecar, ambassador and adapter templates.
//
// A catalog is YAML with apiVersion sidecars.podpatterns.io/v1alpha1 and kind
// Catalog. It can come from one file, from a directory of *.yaml files (as a
// mounted ConfigMap presents it), or from the embedded default. Loading
// reports every problem at once, each with its path.
package catalog
