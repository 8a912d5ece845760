// Package pin pins a catalog's images by digest: it resolves each
// image's tag in its registry and rewrites the catalog's YAML text so
// each image names the digest too, keeping the text's comments and order.
package pin

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	imagename "github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
)

// Resolver returns the digest a tagged image reference points to now.
type Resolver func(tagged string) (string, error)

// Registry resolves through the image's registry, anonymously or with
// the credentials of the Docker config; options come after those.
func Registry(options ...remote.Option) Resolver {
	options = append([]remote.Option{remote.WithAuthFromKeychain(authn.DefaultKeychain)}, options...)
	return func(tagged string) (string, error) {
		ref, err := imagename.ParseReference(tagged)
		if err != nil {
			return "", err
		}
		desc, err := remote.Head(ref, options...)
		if err != nil {
			return "", err
		}
		return desc.Digest.String(), nil
	}
}

// Image is one image reference of a catalog and where its tag points now.
type Image struct {
	// Ref is the reference as the catalog writes it.
	Ref string
	// Where lists the catalog paths that use it.
	Where []string
	// Now is the digest its tag points to now.
	Now string
}

// Tagged is the reference without its digest.
func (i Image) Tagged() string { t, _, _ := strings.Cut(i.Ref, "@"); return t }

// Digest is the digest the catalog pins, or "".
func (i Image) Digest() string { _, d, _ := strings.Cut(i.Ref, "@"); return d }

// Pinned is the reference pinned to where its tag points now.
func (i Image) Pinned() string { return i.Tagged() + "@" + i.Now }

// Problem says why the image is not pinned where its tag points now; ""
// when it is.
func (i Image) Problem() string {
	switch i.Digest() {
	case i.Now:
		return ""
	case "":
		return fmt.Sprintf("%s: %s is not pinned by digest (%s now)", strings.Join(i.Where, ", "), i.Ref, i.Now)
	}
	return fmt.Sprintf("%s: %s now points to %s", strings.Join(i.Where, ", "), i.Ref, i.Now)
}

// Resolve resolves each distinct image of the catalog, in the catalog's
// order.
func Resolve(cat *catalog.Catalog, resolve Resolver) ([]Image, error) {
	var images []Image
	at := map[string]int{}
	for _, img := range cat.Images() {
		i, seen := at[img.Ref]
		if !seen {
			i = len(images)
			at[img.Ref] = i
			images = append(images, Image{Ref: img.Ref})
		}
		images[i].Where = append(images[i].Where, img.Path)
	}
	for i := range images {
		img := &images[i]
		digest, err := resolve(img.Tagged())
		if err != nil {
			return nil, fmt.Errorf("%s: resolving %s: %w", strings.Join(img.Where, ", "), img.Tagged(), err)
		}
		img.Now = digest
	}
	return images, nil
}

// Rewrite returns the catalog text with every image that has a Problem
// pinned where its tag points now. The result is parsed again: an image
// the rewrite could not reach (an unusual YAML form) is an error, never
// left unpinned silently.
func Rewrite(src catalog.Source, images []Image) ([]byte, error) {
	text := src.Data
	for _, img := range images {
		if img.Problem() != "" {
			text = replaceImage(text, img.Ref, img.Pinned())
		}
	}
	after, err := catalog.Parse(catalog.Source{Name: src.Name, Data: text})
	if err != nil {
		return nil, fmt.Errorf("the pinned catalog does not load (a defect): %w", err)
	}
	for _, img := range after.Images() {
		if !img.Pinned() {
			return nil, fmt.Errorf("%s: %s could not be rewritten in the file (an unusual YAML form); pin it by hand", img.Path, img.Ref)
		}
	}
	return text, nil
}

// replaceImage rewrites every `image: OLD` of the YAML text, quoted or
// not, in block or flow style, to NEW; nothing else of the text changes.
func replaceImage(text []byte, old, new string) []byte {
	re := regexp.MustCompile(`(?m)(\bimage:\s*["']?)` + regexp.QuoteMeta(old) + `(["']?\s*(?:[,}\]#]|$))`)
	return re.ReplaceAll(text, []byte("${1}"+strings.ReplaceAll(new, "$", "$$")+"${2}"))
}
