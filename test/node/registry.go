package node

import (
	"fmt"
	"io"
	"log"
	"net/http/httptest"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// mirroredRegistries are the registries of the images the node holds,
// which containerd reaches through the node's own registry: with
// AlwaysPullImages every container's image is pulled, and no registry on
// the internet is reachable.
var mirroredRegistries = []string{"docker.io", "registry.k8s.io"}

// startRegistry serves the images from memory on 127.0.0.1 of the
// node's network namespace, each under its repository path, as a mirror
// of its registry serves it, and returns the server.
func startRegistry(images []Image) (*httptest.Server, error) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	for _, im := range images {
		img, err := im.build()
		if err != nil {
			srv.Close()
			return nil, fmt.Errorf("%s: %w", im.Ref, err)
		}
		ref, err := name.ParseReference(im.Ref)
		if err != nil {
			srv.Close()
			return nil, err
		}
		mirrored, err := name.ParseReference(srv.Listener.Addr().String()+"/"+ref.Context().RepositoryStr()+":"+ref.Identifier(), name.Insecure)
		if err != nil {
			srv.Close()
			return nil, err
		}
		if err := remote.Write(mirrored, img); err != nil {
			srv.Close()
			return nil, fmt.Errorf("pushing %s to the node's registry: %w", im.Ref, err)
		}
	}
	return srv, nil
}

// mirrorConfig is containerd's CRI configuration that sends every pull
// from the mirrored registries to the node's registry at addr.
func mirrorConfig(addr string) string {
	out := `  [plugins."io.containerd.grpc.v1.cri".registry]` + "\n"
	for _, r := range mirroredRegistries {
		out += fmt.Sprintf("    [plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.%q]\n      endpoint = [\"http://%s\"]\n", r, addr)
	}
	return out
}
