package admission

import (
	"bytes"
	"strings"
	"testing"
)

func TestDecodeErrorsSayWhere(t *testing.T) {
	typical := typicalReview(t)
	for _, c := range []struct{ old, new, want string }{
		{`"containers":[`, `"containers":[7,`, "decoding Pod: spec.containers[0]: a number, want an object"},
		{`"dryRun":false`, `"dryRun":"yes"`, "decoding AdmissionReview: request.dryRun: a string, want a boolean"},
		{`"annotations":{`, `"annotations":{"a":[],`, "decoding Pod: metadata.annotations.a: an array, want a string"},
		{`"containerPort":8080`, `"containerPort":2147483648`, "decoding Pod: spec.containers[0].ports[0].containerPort: a number, want an integer"},
		{`"containerPort":8080`, `"containerPort":80.5`, "decoding Pod: spec.containers[0].ports[0].containerPort: a number, want an integer"},
		{`"volumes":[`, `"volumes":[7,`, "decoding Pod: spec.volumes[0]: a number, want an object"},
		{`"containers":[`, `"restartPolicy":"Never","containers":[`, `duplicate object member name "restartPolicy"`},
		{`"containers":[`, `"containers":[}`, `invalid character '}'`},
	} {
		body := bytes.Replace(typical, []byte(c.old), []byte(c.new), 1)
		if bytes.Equal(body, typical) {
			t.Fatalf("%s: the typical review has no %s", c.new, c.old)
		}
		req, _, err := decode(body, &answer{})
		if err == nil {
			_, err = req.pod()
		}
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
	pod, err := req.pod()
	if err != nil {
		t.Fatal(err)
	}
	if got := pod.Annotations["sidecars.podpatterns.io/inject"]; got != "log-shipper" {
		t.Errorf("inject annotation %q, want the lower-case member's log-shipper", got)
	}
}
