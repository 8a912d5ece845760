package inject

import (
	"slices"
	"testing"
)

// appendShared hands out the catalog's own lists; nothing appended later
// may land in them.
func TestAppendSharedNeverWritesTheList(t *testing.T) {
	list := []string{"a", "b", "c"}
	var all []string
	for j := range list {
		all = appendShared(all, list, j)
	}
	if &all[0] != &list[0] || cap(all) != len(list) {
		t.Errorf("every item added: got a copy (cap %d), want the list itself", cap(all))
	}
	all = append(all, "d")

	var some []string
	some = appendShared(some, list, 0)
	some = appendShared(some, list, 2) // b was not added
	some = append(some, "e")

	other := appendShared([]string{"z"}, list, 1) // one item, not from list
	if !slices.Equal(list, []string{"a", "b", "c"}) {
		t.Fatalf("list written: %q", list)
	}
	for _, c := range []struct{ got, want []string }{
		{all, []string{"a", "b", "c", "d"}},
		{some, []string{"a", "c", "e"}},
		{other, []string{"z", "b"}},
	} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
