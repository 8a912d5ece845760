package cmd

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podpatterns/sidecar-injector/pkg/catalog/pin"
	"github.com/podpatterns/sidecar-injector/pkg/catalog/pin/pintest"
)

// The command's wiring, against an in-process registry: --in-place
// rewrites the file and says what changed, --check passes on it and fails
// on an unpinned catalog. What pinning does, retags included, is tested
// beside it, in pkg/catalog/pin.
func TestPinCommand(t *testing.T) {
	host := pintest.Registry(t)
	image := host + "/sidecars/shipper:1.0"
	first := pintest.Push(t, image)

	file := filepath.Join(t.TempDir(), "catalog.yaml")
	text := pintest.Catalog(image)
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if err := (&pinFlags{file: file, inPlace: true, resolve: pin.Registry()}).run(&stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	pinned, _ := os.ReadFile(file)
	want := `    image: "` + image + "@" + first.String() + `"   # the shipper`
	flow := `image: ` + image + "@" + first.String() + `}]}`
	if !strings.Contains(string(pinned), want) || !strings.Contains(string(pinned), flow) || !strings.HasPrefix(string(pinned), "# Our catalog; comments stay.") {
		t.Fatalf("pinned catalog:\n%s\nwant a line %q and the comments kept", pinned, want)
	}
	if !strings.Contains(stderr.String(), "templates[flow].containers[0].image, templates[shipper].containers[0].image: "+image+" -> ") {
		t.Errorf("the change was not printed: %q", stderr.String())
	}
	stderr.Reset()
	if err := (&pinFlags{file: file, check: true, resolve: pin.Registry()}).run(&stdout, &stderr); err != nil {
		t.Fatalf("--check on a freshly pinned catalog: %v %s", err, stderr.String())
	}

	stderr.Reset()
	unpinned := filepath.Join(t.TempDir(), "catalog.yaml")
	_ = os.WriteFile(unpinned, []byte(text), 0o644)
	if err := (&pinFlags{file: unpinned, check: true, resolve: pin.Registry()}).run(&stdout, &stderr); code(err) != ExitFound || !strings.Contains(stderr.String(), "is not pinned by digest") {
		t.Errorf("--check on an unpinned catalog: exit %d, %q", code(err), stderr.String())
	}
}

// code is the exit code an error of a command maps to.
func code(err error) int { return exitCode(err) }
