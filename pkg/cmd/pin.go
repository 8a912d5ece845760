package cmd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/podpatterns/sidecar-injector/pkg/catalog"
	"github.com/podpatterns/sidecar-injector/pkg/catalog/pin"
)

type pinFlags struct {
	file, out string
	inPlace   bool
	check     bool
	// resolve finds where a tag points; tests resolve through an
	// in-process registry
	resolve pin.Resolver
}

func newPinCommand() *cobra.Command {
	f := &pinFlags{resolve: pin.Registry()}
	cmd := &cobra.Command{
		Use:   "pin --catalog FILE [-o FILE | --in-place] | pin --catalog FILE --check",
		Short: "Pin every image of a catalog by digest, resolved from its registry",
		Long: `Resolve each image:tag of the catalog to image:tag@sha256:... in its
registry (anonymously, or with the credentials of the Docker config), and
write the catalog with the digests added, keeping its comments and order.
Each change is printed on stderr. With --check nothing is written.

Set requireDigests: true in the catalog to make the webhook refuse any
image not pinned by digest.

` + exitCodes("with --check, an image is not pinned by digest or its tag now points elsewhere"),
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
	src := catalog.Source{Name: f.file, Data: text}
	cat, err := catalog.Parse(src)
	if err != nil {
		return withCode(ExitBadInput, err)
	}
	images, err := pin.Resolve(cat, f.resolve)
	if err != nil {
		return withCode(ExitBadInput, err)
	}
	if f.check {
		return f.report(stdout, stderr, images)
	}
	pinned, err := pin.Rewrite(src, images)
	if err != nil {
		return err
	}
	for _, img := range images {
		if img.Problem() != "" {
			fmt.Fprintf(stderr, "%s: %s -> %s\n", strings.Join(img.Where, ", "), img.Ref, img.Pinned())
		}
	}
	switch {
	case f.inPlace:
		return os.WriteFile(f.file, pinned, 0o644)
	case f.out != "":
		return os.WriteFile(f.out, pinned, 0o644)
	}
	_, err = stdout.Write(pinned)
	return err
}

// report prints each image not pinned where its tag points now.
func (f *pinFlags) report(stdout, stderr io.Writer, images []pin.Image) error {
	problems := 0
	for _, img := range images {
		if p := img.Problem(); p != "" {
			fmt.Fprintln(stderr, p)
			problems++
		}
	}
	if problems > 0 {
		return found("%d of %d images are not pinned where their tags point", problems, len(images))
	}
	_, err := fmt.Fprintf(stdout, "%s: every image is pinned by digest and its tag still points there\n", f.file)
	return err
}
