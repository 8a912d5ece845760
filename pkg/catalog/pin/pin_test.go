package pin_test

import (
	"strings"
	"testing"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/catalog/pin"
	"github.com/podpatterns/sidecar-injector/pkg/catalog/pin/pintest"
)

// Without the internet: an in-process registry, a catalog resolved and
// rewritten against it (comments and flow style kept), then a retag that
// the pinned catalog's Problem names.
func TestResolveRewriteAndARetag(t *testing.T) {
	image := pintest.Registry(t) + "/sidecars/shipper:1.0"
	first := pintest.Push(t, image)
	text := pintest.Catalog(image)
	src := catalog.Source{Name: "catalog.yaml", Data: []byte(text)}
	resolved := resolve(t, src)
	if len(resolved) != 1 || resolved[0].Now != first.String() || !strings.Contains(resolved[0].Problem(), "is not pinned by digest") || len(resolved[0].Where) != 2 {
		t.Fatalf("resolved %+v; want one image, in two places, unpinned, at %s", resolved, first)
	}
	pinned, err := pin.Rewrite(src, resolved)
	if err != nil {
		t.Fatal(err)
	}
	want := `    image: "` + image + "@" + first.String() + `"   # the shipper`
	flow := `image: ` + image + "@" + first.String() + `}]}`
	if !strings.Contains(string(pinned), want) || !strings.Contains(string(pinned), flow) || !strings.HasPrefix(string(pinned), "# Our catalog; comments stay.") {
		t.Fatalf("pinned catalog:\n%s\nwant a line %q and the comments kept", pinned, want)
	}
	again := resolve(t, catalog.Source{Name: "catalog.yaml", Data: pinned})
	if p := again[0].Problem(); p != "" {
		t.Errorf("a freshly pinned catalog: %s", p)
	}
	moved := pintest.Push(t, image) // the tag now names another image
	if p := resolve(t, catalog.Source{Name: "catalog.yaml", Data: pinned})[0].Problem(); !strings.Contains(p, "now points to "+moved.String()) {
		t.Errorf("after a retag: %q; want it named", p)
	}
}

func resolve(t *testing.T, src catalog.Source) []pin.Image {
	t.Helper()
	cat, err := catalog.Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	images, err := pin.Resolve(cat, pin.Registry())
	if err != nil {
		t.Fatal(err)
	}
	return images
}
