// Package pintest serves an image registry in process for the tests of
// pinning: no test reaches the internet.
package pintest

import (
	"net/http/httptest"
	"strings"
	"testing"

	imagename "github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Registry serves an empty registry until the test ends and returns its
// host:port.
func Registry(t testing.TB) string {
	srv := httptest.NewServer(registry.New())
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// Push puts a new random image under ref and returns its digest.
func Push(t testing.TB, ref string) v1.Hash {
	t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	r, err := imagename.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Catalog is a catalog with a comment, a block-style and a flow-style
// template, both on image: what a pin must rewrite without losing any.
func Catalog(image string) string {
	return `# Our catalog; comments stay.
apiVersion: sidecars.podpatterns.io/v1alpha1
kind: Catalog
templates:
- name: shipper
  pattern: sidecar
  description: ships logs
  containers:
  - name: shipper
    image: "` + image + `"   # the shipper
- {name: flow, pattern: sidecar, description: flow style, containers: [{name: flow, image: ` + image + `}]}
`
}
