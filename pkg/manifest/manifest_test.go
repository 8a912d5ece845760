package manifest

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

func TestSplitCountsEveryDocument(t *testing.T) {
	docs, err := Split(strings.NewReader("# only a comment\n---\nkind: Pod\nmetadata: {name: a}\n---\n---\n{\"kind\": \"Service\", \"spec\": {\"port\": 8080}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 2 || docs[0].Index != 2 || docs[1].Index != 3 {
		t.Fatalf("got %+v, want documents 2 and 3", docs)
	}
	if got := string(docs[1].JSON); got != `{"kind":"Service","spec":{"port":8080}}` {
		t.Errorf("second document %s", got)
	}
	if _, err := Split(strings.NewReader("kind: Pod\n---\n- a list\n")); err == nil || err.Error() != "document 2 is not an object" {
		t.Errorf("a list document: %v", err)
	}
	if _, err := Split(strings.NewReader("kind: [\n")); err == nil || !strings.HasPrefix(err.Error(), "document 1: ") {
		t.Errorf("broken YAML: %v", err)
	}
}

func TestReadHeadIsCaseSensitive(t *testing.T) {
	h, err := ReadHead([]byte(`{"Kind":"Deployment","kind":"Pod","metadata":{"generateName":"web-"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if h.Kind != "Pod" || h.Name() != "Pod web-" {
		t.Errorf("head %+v, name %q", h, h.Name())
	}
	if _, err := ReadHead([]byte(`{"kind":"Pod","kind":"Deployment"}`)); err == nil {
		t.Error("a duplicate kind was accepted")
	}
}

// Aliases may repeat a node, not multiply a document: 990 aliases to a
// 100 KB string (a 103 KB document, 100 MB expanded) are refused before
// anything is expanded; a few anchors as people use them are read.
func TestAliasExpansionIsBounded(t *testing.T) {
	big := strings.Repeat("x", 100_000)
	var aliases strings.Builder
	for i := range 990 {
		fmt.Fprintf(&aliases, "  k%d: *big\n", i)
	}
	for name, c := range map[string]struct {
		doc  string
		want string // "" when it is read
	}{
		"990 aliases to 100 KB": {"a: &big " + big + "\nb:\n" + aliases.String(), "aliases expand it to over"},
		"a few anchors":         {"defaults: &d {cpu: 10m}\none: *d\ntwo: *d\nglob: /var/log/*.log\n", ""},
	} {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			docs, err := Split(strings.NewReader(c.doc))
			runtime.ReadMemStats(&after)
			switch {
			case c.want == "" && (err != nil || len(docs) != 1):
				t.Errorf("got %v, %d documents; want one", err, len(docs))
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("got %v; want an error holding %q", err, c.want)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32<<20 {
				t.Errorf("reading it allocated %d MiB", alloc>>20)
			}
		})
	}
}
