package admission

import (
	"bytes"
	"strings"
	"testing"
)

func TestDecodeErrorsSayWhere(t *testing.T) {
	typical := typicalReview(t)
	for _, c := range []struct{ old, new, want string }{
		{`"containers":[`, `"containers":[7,`, "/request/object/spec/containers/0 is a number, want an object"},
		{`"dryRun":false`, `"dryRun":"yes"`, "/request/dryRun is a string, want a boolean"},
		{`"annotations":{`, `"annotations":{"a":[],`, "/request/object/metadata/annotations/a is an array, want a string"},
		{`"containerPort":8080`, `"containerPort":2147483648`, "/request/object/spec/containers/0/ports/0/containerPort is a number, want an integer"},
		{`"containerPort":8080`, `"containerPort":80.5`, "/request/object/spec/containers/0/ports/0/containerPort is a number, want an integer"},
		{`"volumes":[`, `"volumes":[7,`, "/request/object/spec/volumes/0 is a number, want an object"},
		{`"containers":[`, `"restartPolicy":"Never","containers":[`, `duplicate object member name "restartPolicy"`},
		{`"containers":[`, `"containers":[}`, `invalid character '}'`},
	} {
		body := bytes.Replace(typical, []byte(c.old), []byte(c.new), 1)
		if bytes.Equal(body, typical) {
			t.Fatalf("%s: the typical review has no %s", c.new, c.old)
		}
		_, _, err := decode(body, &answer{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got error %v, want %q", c.new, err, c.want)
		}
	}
}

// Member names are case-sensitive, as the API server's decoder has them:
// "Containers" is not "containers", so a capitalised field can neither
// hide the Pod's containers nor add any.
func TestMemberNamesAreCaseSensitive(t *testing.T) {
	typical := typicalReview(t)
	body := bytes.Replace(typical, []byte(`"annotations":{`), []byte(`"Annotations":{"sidecars.podpatterns.io/inject":"ambassador"},"annotations":{`), 1)
	req, _, err := decode(body, &answer{})
	if err != nil {
		t.Fatal(err)
	}
	pod, err := req.Object.pod()
	if err != nil {
		t.Fatal(err)
	}
	if got := pod.Annotations["sidecars.podpatterns.io/inject"]; got != "log-shipper" {
		t.Errorf("inject annotation %q, want the lower-case member's log-shipper", got)
	}
}
