package cmd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	imagename "github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
)

type pinFlags struct {
	file, out string
	inPlace   bool
	check     bool
	// remote options; tests add a transport for an in-process registry
	options []remote.Option
}

func newPinCommand() *cobra.Command {
	f := &pinFlags{}
	cmd := &cobra.Command{
		Use:   "pin --catalog FILE [-o FILE | --in-place] | pin --catalog FILE --check",
		Short: "Pin every image of a catalog by digest, resolved from its registry",
		Long: `Resolve each image:tag of the catalog to image:tag@sha256:... in its
registry (anonymously, or with the credentials of the Docker config), and
write the catalog with the digests added, keeping its comments and order.
Each change is printed on stderr. With --check nothing is written: exit 1
when an image is not pinned by digest or its tag now points elsewhere.

Set requireDigests: true in the catalog to make the webhook refuse any
image not pinned by digest.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.file, "catalog", f.file, "catalog file")
	fs.StringVarP(&f.out, "output", "o", f.out, "write the pinned catalog here; standard output if empty")
	fs.BoolVar(&f.inPlace, "in-place", f.inPlace, "rewrite the catalog file itself")
	fs.BoolVar(&f.check, "check", f.check, "write nothing; exit 1 when an image is unpinned or its tag moved")
	_ = cmd.MarkFlagRequired("catalog")
	return cmd
}

func (f *pinFlags) run(stdout, stderr io.Writer) error {
	if f.inPlace && f.out != "" {
		return withCode(ExitBadInput, errors.New("-o and --in-place go apart"))
	}
	text, err := os.ReadFile(f.file)
	if err != nil {
		return withCode(ExitBadInput, err)
	}
	cat, err := catalog.Parse(catalog.Source{Name: f.file, Data: text})
	if err != nil {
		return withCode(ExitBadInput, err)
	}
	options := append([]remote.Option{remote.WithAuthFromKeychain(authn.DefaultKeychain)}, f.options...)
	var problems, refs []string
	paths := map[string][]string{} // image -> where the catalog uses it
	for _, img := range cat.Images() {
		if paths[img.Ref] == nil {
			refs = append(refs, img.Ref)
		}
		paths[img.Ref] = append(paths[img.Ref], img.Path)
	}
	for _, image := range refs {
		where := strings.Join(paths[image], ", ")
		tagged, digest, _ := strings.Cut(image, "@")
		ref, err := imagename.ParseReference(tagged)
		if err != nil {
			return withCode(ExitBadInput, fmt.Errorf("%s: %q: %w", where, image, err))
		}
		desc, err := remote.Head(ref, options...)
		if err != nil {
			return fmt.Errorf("%s: resolving %s: %w", where, tagged, err)
		}
		now := desc.Digest.String()
		switch {
		case digest == now:
			continue
		case f.check && digest == "":
			problems = append(problems, fmt.Sprintf("%s: %s is not pinned by digest (%s now)", where, image, now))
		case f.check:
			problems = append(problems, fmt.Sprintf("%s: %s now points to %s", where, image, now))
		default:
			pinned := tagged + "@" + now
			text = replaceImage(text, image, pinned)
			fmt.Fprintf(stderr, "%s: %s -> %s\n", where, image, pinned)
		}
	}
	if f.check {
		for _, p := range problems {
			fmt.Fprintln(stderr, p)
		}
		if len(problems) > 0 {
			return withCode(ExitDenied, errors.New(""))
		}
		_, err := fmt.Fprintf(stdout, "%s: every image is pinned by digest and its tag still points there\n", f.file)
		return err
	}
	after, err := catalog.Parse(catalog.Source{Name: f.file, Data: text})
	if err != nil {
		return fmt.Errorf("the pinned catalog does not load (a defect): %w", err)
	}
	for _, img := range after.Images() {
		if !img.Pinned() {
			return fmt.Errorf("%s: %s could not be rewritten in the file (an unusual YAML form); pin it by hand", img.Path, img.Ref)
		}
	}
	switch {
	case f.inPlace:
		return os.WriteFile(f.file, text, 0o644)
	case f.out != "":
		return os.WriteFile(f.out, text, 0o644)
	}
	_, err = stdout.Write(text)
	return err
}

// replaceImage rewrites every `image: OLD` of the YAML text, quoted or
// not, in block or flow style, to NEW; nothing else of the text changes.
func replaceImage(text []byte, old, new string) []byte {
	re := regexp.MustCompile(`(?m)(\bimage:\s*["']?)` + regexp.QuoteMeta(old) + `(["']?\s*(?:[,}\]#]|$))`)
	return re.ReplaceAll(text, []byte("${1}"+strings.ReplaceAll(new, "$", "$$")+"${2}"))
}
