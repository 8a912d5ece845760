package patch

import "testing"

func TestMarshalEscapesPathsAndValues(t *testing.T) {
	doc := []byte(`{"metadata":{"annotations":{"keep":"me"}}}`)
	key := `odd/"key"\with~all`
	ops := SetAnnotation(nil, map[string]string{"keep": "me"}, key, `{"v":"\"quoted\""}`)
	out, err := Apply(doc, ops)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"metadata":{"annotations":{"keep":"me","odd/\"key\"\\with~all":"{\"v\":\"\\\"quoted\\\"\"}"}}}`
	if string(out) != want {
		t.Errorf("got  %s\nwant %s", out, want)
	}
}

func TestSetAnnotationCreatesTheMap(t *testing.T) {
	out, err := Apply([]byte(`{"metadata":{"name":"x"}}`), SetAnnotation(nil, nil, "a/b", "c"))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"metadata":{"annotations":{"a/b":"c"},"name":"x"}}`; string(out) != want {
		t.Errorf("got %s, want %s", out, want)
	}
}

func TestMarshalEmpty(t *testing.T) {
	data, err := Marshal(nil)
	if err != nil || string(data) != "[]" {
		t.Errorf("got %q, %v", data, err)
	}
}
