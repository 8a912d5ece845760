package node

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Image is an image built from files on this machine, under the
// reference Pods name it by.
type Image struct {
	Ref        string
	Files      map[string]file // path in the image -> content
	Entrypoint []string
	User       string
}

type file struct {
	data []byte
	mode int64
	link string // a symlink's target
}

// hostFile is a file of this machine, at its own path in the image.
func hostFile(p string) (file, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return file{}, err
	}
	info, err := os.Stat(p)
	if err != nil {
		return file{}, err
	}
	return file{data: data, mode: int64(info.Mode().Perm())}, nil
}

// PauseImage is the sandbox image: test/node/pause, built static.
func PauseImage(ref, dir string) (Image, error) {
	bin := filepath.Join(dir, "pause")
	build := exec.Command("go", "build", "-o", bin, "./pause")
	build.Dir = sourceDir()
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return Image{}, fmt.Errorf("building pause: %v: %s", err, out)
	}
	f, err := hostFile(bin)
	if err != nil {
		return Image{}, err
	}
	return Image{Ref: ref, Files: map[string]file{"/pause": f}, Entrypoint: []string{"/pause"}}, nil
}

// BusyboxImage is Debian's busybox-static with a link for each applet.
func BusyboxImage(ref string) (Image, error) {
	bb, err := hostFile("/bin/busybox")
	if err != nil {
		return Image{}, fmt.Errorf("busybox-static: %w", err)
	}
	out, err := exec.Command("/bin/busybox", "--list-full").Output()
	if err != nil {
		return Image{}, err
	}
	// /etc/image names the reference, so each tag is an image of its own
	// (its own ID), as a release is.
	files := map[string]file{"/bin/busybox": bb, "/tmp/.keep": {mode: 0o644}, "/etc/image": {data: []byte(ref + "\n"), mode: 0o644}}
	for _, applet := range strings.Fields(string(out)) {
		p := "/" + applet
		if p != "/bin/busybox" {
			files[p] = file{link: "/bin/busybox"}
		}
	}
	return Image{Ref: ref, Files: files, Entrypoint: []string{"/bin/sh"}}, nil
}

// Write writes the images into one docker-format archive, as `ctr
// images import` takes it.
func Write(archive string, images ...Image) error {
	refs := map[name.Reference]v1.Image{}
	for _, im := range images {
		img, err := im.build()
		if err != nil {
			return fmt.Errorf("%s: %w", im.Ref, err)
		}
		ref, err := name.ParseReference(im.Ref)
		if err != nil {
			return err
		}
		refs[ref] = img
	}
	f, err := os.Create(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	return tarball.MultiRefWrite(refs, f)
}

func (im Image) build() (v1.Image, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	var mkdir func(d string) error
	mkdir = func(d string) error {
		if d == "/" || d == "." || dirs[d] {
			return nil
		}
		if err := mkdir(path.Dir(d)); err != nil {
			return err
		}
		dirs[d] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755})
	}
	for _, p := range sortedKeys(im.Files) {
		f := im.Files[p]
		if err := mkdir(path.Dir(p)); err != nil {
			return nil, err
		}
		hdr := &tar.Header{Name: strings.TrimPrefix(p, "/"), Mode: f.mode, Size: int64(len(f.data)), Typeflag: tar.TypeReg}
		if f.link != "" {
			hdr = &tar.Header{Name: strings.TrimPrefix(p, "/"), Linkname: f.link, Typeflag: tar.TypeSymlink, Mode: 0o777}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if f.link == "" {
			if _, err := tw.Write(f.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.Architecture, cfg.OS = "amd64", "linux"
	cfg.Config.Entrypoint, cfg.Config.User = im.Entrypoint, im.User
	cfg.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	return mutate.ConfigFile(img, cfg)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// sourceDir is this package's directory.
func sourceDir() string {
	_, here, _, _ := runtime.Caller(0)
	return filepath.Dir(here)
}

// ProgramImage is a program of this machine with the shared libraries
// ldd lists for it, at their own paths, run as its entrypoint.
func ProgramImage(ref, program string) (Image, error) {
	files := map[string]file{}
	paths := []string{program}
	out, err := exec.Command("ldd", program).Output()
	if err != nil {
		return Image{}, fmt.Errorf("ldd %s: %w", program, err)
	}
	for line := range strings.SplitSeq(string(out), "\n") {
		// "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
		// "/lib64/ld-linux-x86-64.so.2 (0x...)"
		for _, f := range strings.Fields(line) {
			if strings.HasPrefix(f, "/") {
				paths = append(paths, f)
			}
		}
	}
	for _, p := range paths {
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			return Image{}, err
		}
		f, err := hostFile(real)
		if err != nil {
			return Image{}, err
		}
		files[p] = f
	}
	files["/tmp/.keep"] = file{mode: 0o644}
	return Image{Ref: ref, Files: files, Entrypoint: []string{program}}, nil
}
