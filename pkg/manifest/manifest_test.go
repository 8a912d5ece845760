package manifest

import (
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
