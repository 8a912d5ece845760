package cmd

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// TestEveryDocumentedCommandRuns reads every command of the binary that
// README.md and docs/*.md show, in code blocks and inline, and holds the
// docs to the code: one that reads only files of this repository runs,
// and must not fail for bad input or flags (exit 2); one that needs a
// cluster, a file of the reader's or a placeholder must name a command
// that exists, with flags it has.
func TestEveryDocumentedCommandRuns(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	docs, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	docs = append(docs, filepath.Join(root, "README.md"))
	ran, parsed := 0, 0
	t.Chdir(root)
	for _, doc := range docs {
		text, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range documentedCommands(string(text)) {
			args, ok := splitCommand(line)
			if !ok {
				t.Errorf("%s: cannot read %q as a command", filepath.Base(doc), line)
				continue
			}
			if offline(args) {
				ran++
				var stdout, stderr bytes.Buffer
				if code := Execute(context.Background(), args, strings.NewReader(""), &stdout, &stderr); code == ExitBadInput {
					t.Errorf("%s: `%s` exits %d: %s", filepath.Base(doc), line, code, stderr.String())
				}
				continue
			}
			parsed++
			cmd, rest, err := NewRootCommand(Runners{}).Find(args)
			if err != nil || !cmd.Runnable() && !cmd.HasSubCommands() {
				t.Errorf("%s: `%s` names no command: %v", filepath.Base(doc), line, err)
				continue
			}
			if err := cmd.ParseFlags(rest); err != nil && !errors.Is(err, pflag.ErrHelp) {
				t.Errorf("%s: `%s`: %v", filepath.Base(doc), line, err)
			}
		}
	}
	t.Logf("%d documented commands run, %d parsed", ran, parsed)
	if ran < 10 || parsed < 10 {
		t.Errorf("found %d commands to run and %d to parse; the extraction is broken", ran, parsed)
	}
}

var (
	fence      = regexp.MustCompile("(?s)```[a-z]*\n(.*?)```")
	inlineCode = regexp.MustCompile("`(sidecar-injector [^`]+)`")
)

// documentedCommands are the sidecar-injector command lines of a Markdown
// text: lines of code blocks (a "$ " prompt dropped) and inline code that
// start with the binary's name, without a trailing comment, a pipe or a
// redirect.
func documentedCommands(text string) []string {
	var out []string
	add := func(line string) {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "$ "))
		line = strings.TrimPrefix(line, "bin/")
		if !strings.HasPrefix(line, "sidecar-injector ") {
			return
		}
		for _, cut := range []string{"  #", " | ", " < ", " > ", " && "} {
			line, _, _ = strings.Cut(line, cut)
		}
		out = append(out, strings.TrimSpace(line))
	}
	for _, m := range fence.FindAllStringSubmatch(text, -1) {
		for _, line := range strings.Split(m[1], "\n") {
			add(line)
		}
	}
	for _, m := range inlineCode.FindAllStringSubmatch(fence.ReplaceAllString(text, ""), -1) {
		add(m[1])
	}
	return out
}

// splitCommand splits a command line as a shell would, for the quoting
// the docs use; the binary's name is dropped.
func splitCommand(line string) ([]string, bool) {
	var args []string
	var cur strings.Builder
	quote, in := byte(0), false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			cur.WriteByte(c)
		case c == '\'' || c == '"':
			quote, in = c, true
		case c == ' ':
			if in {
				args = append(args, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if quote != 0 {
		return nil, false
	}
	if in {
		args = append(args, cur.String())
	}
	return args[1:], len(args) > 1
}

// offline reports whether a command runs with no cluster, on files of
// this repository only: the working directory is its root.
func offline(args []string) bool {
	switch {
	case args[0] == "inject", args[0] == "catalog" && len(args) > 1 && args[1] != "pin",
		args[0] == "diagnose" && len(args) > 1 && args[1] == "-f", args[0] == "version":
	default:
		return false
	}
	for i, a := range args {
		if strings.ToUpper(a) == a && strings.ContainsAny(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
			return false // a placeholder: PATH, FILE, NS
		}
		if i > 0 && (args[i-1] == "-f" || args[i-1] == "--catalog") || strings.HasSuffix(a, ".yaml") || strings.HasSuffix(a, "/") {
			if a == "-" {
				return false
			}
			if _, err := os.Stat(a); err != nil {
				return false // the reader's own file
			}
		}
	}
	return true
}
