package admission

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"reflect"
	"strings"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/google/go-cmp/cmp"
)

// FuzzScan holds the scanner to jsonv2.Unmarshal over the same types: on
// any input both fail, or both succeed with equal results. So a review
// the scanner gives up on is one jsonv2 refuses too, and no good review
// goes the slow way. Run longer with
//
//	go test ./pkg/admission -run XXX -fuzz FuzzScan -fuzztime 60s -fuzzminimizetime 1x
func FuzzScan(f *testing.F) {
	typical := typicalReview(f)
	f.Add(typical)
	f.Add(hugeReview())
	for _, r := range []struct{ old, new string }{
		{`"containers":[`, `"containers":[null,`},
		{`"containers":[`, `"containers":[7,`},
		{`"containers":[`, `"initContainers":[],"ephemeralContainers":[{"name":"debug"},null],"containers":[`},
		{`"name":"checkout"`, `"name":"checkout","name":"checkout"`},
		{`"name":"checkout"`, `"Name":"other","name":"checkout"`},
		{`"name":"checkout"`, `"n\u0061me":"check\u006fut","restartPolicy":"Always","securityContext":{"runAsUser":1000}`},
		{`"restartPolicy":"Always"`, `"restartPolicy":null,"securityContext":{"fsGroup":2000},"imagePullSecrets":[{"name":"pull"}]`},
		{`"annotations":{`, `"annotations":{"a":null,"b\"c":"d",`},
		{`"annotations":{`, `"name":7,"annotations":{`},
		{`"dryRun":false`, `"dryRun":true`},
		{`"dryRun":false`, `"dryRun":"yes"`},
		{`"metadata":{`, `"metadata":null,"x":{`},
		{`"volumes":[`, `"volumes":null,"v":[`},
		{`"volumes":[`, `"volumes":[null,{"emptyDir":{}},{ "name" : "spaced" , "emptyDir" : { } },`},
		{`"volumes":[`, `"volumes":[{"name":7},`},
		{`"volumes":[`, `"volumes":[[],`},
		{`"defaultMode":420`, `"defaultMode":"420"`},
		{`"env":[`, `"env":[null,{},`},
		{`"containerPort":8080`, `"containerPort":8080.0`},
		{`"containerPort":8080`, `"containerPort":-0,"hostPort":2147483647,"protocol":"TCP","hostIP":null`},
		{`"containerPort":8080`, `"containerPort":2147483648`},
		{`"containerPort":8080`, `"containerPort":-2147483648`},
		{`"containerPort":8080`, `"containerPort":-2147483649`},
		{`"containerPort":8080`, `"containerPort":99999999999999999999999`},
		{`"containerPort":8080`, `"containerPort":1e3`},
		{`"containerPort":8080`, `"containerPort":"8080"`},
		{`"ports":[`, `"ports":[null,`},
		{`"readOnly":true`, `"readOnly":null,"mountPropagation":"HostToContainer","recursiveReadOnly":null,"subPath":"a","subPathExpr":"b"`},
		{`"readOnly":true`, `"readOnly":"true"`},
	} {
		seed := bytes.Replace(typical, []byte(r.old), []byte(r.new), 1)
		if bytes.Equal(seed, typical) {
			f.Fatalf("seed %s: the typical review has no %s", r.new, r.old)
		}
		f.Add(seed)
	}
	indented := jsontext.Value(bytes.Clone(typical))
	if err := indented.Indent(); err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(indented))
	f.Add(append(bytes.Clone(typical), " {}"...))
	f.Add(typical[:len(typical)-1])
	f.Add([]byte(`null`))
	f.Add([]byte(`{"request":null}`))
	f.Add([]byte(`[]`))
	for _, r := range []struct{ old, new string }{
		{`"generateName":"`, `"generateName":"\ud83d\ude00 \u00e9 \/ \n `},
		{`"generateName":"`, `"generateName":"\ud800 `},
		{`"generateName":"`, `"generateName":"\x `},
		{`"generateName":"`, "\"generateName\":\"\xff "},
		{`"generateName":"`, "\"generateName\":\"\t "},
		{`"generateName":"`, "\"generateName\":\"é "},
		{`"labels":{`, `"labels":{"n":1.5e-3,"m":-0,"z":[true,false,null,{}],"d":{"a":1,"\u0061":2},`},
		{`"labels":{`, `"labels":{"n":01,`},
		{`"labels":{`, `"labels":{"n":1.,`},
		{`"labels":{`, `"labels":{"n":-,`},
		{`"labels":{`, `"labels":{"n":1e,`},
		{`"labels":{`, `"labels":{"n":nul,`},
		{`"labels":{`, `"labels":{"n":[1,],`},
		{`"labels":{`, `"labels":{"n":{"a":1,},`},
		{`"labels":{`, `"labels":{"n":[1 2],`},
		{`"labels":{`, `"labels":{"n" 1,`},
		{`"labels":{`, `"labels":{n:1,`},
		{`"labels":{`, `"labels":{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"r":18,"s":19,"t":20,"u":21,"v":22,"w":23,"x":24,"y":25,"z":26,"A":27,"B":28,"C":29,"D":30,"E":31,"F":32,"G":{"a":1},"H":34,"a":35,`},
		{`"labels":{`, `"labels":{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"r":18,"s":19,"t":20,"u":21,"v":22,"w":23,"x":24,"y":25,"z":26,"A":27,"B":28,"C":29,"D":30,"E":31,"F":32,"G":{"a":1},"H":34,"I":35,`},
	} {
		seed := bytes.Replace(typical, []byte(r.old), []byte(r.new), 1)
		if bytes.Equal(seed, typical) {
			f.Fatalf("seed %s: the typical review has no %s", r.new, r.old)
		}
		f.Add(seed)
	}
	f.Add([]byte(strings.Repeat(`[`, 10001) + strings.Repeat(`]`, 10001)))
	f.Add([]byte(`{"request":{"object":` + strings.Repeat(`{"a":`, 9990) + `1` + strings.Repeat(`}`, 9990) + `}}`))
	f.Add([]byte(`{"request":{"object":` + strings.Repeat(`{"a":`, 9997) + `1` + strings.Repeat(`}`, 9997) + `}}`))
	f.Add([]byte(`{"kind":"AdmissionReview"}` + "\x00"))
	f.Add([]byte(" \t\r\n{} "))
	f.Fuzz(func(t *testing.T, body []byte) {
		var scanned, reflected podReview
		ok := scanReview(body, &scanned)
		err := jsonv2.Unmarshal(body, &reflected)
		if ok != (err == nil) {
			t.Fatalf("scanner ok %v, jsonv2 error %v\nbody: %s", ok, err, body)
		}
		if ok && !reflect.DeepEqual(scanned, reflected) {
			t.Fatalf("scanner and jsonv2 disagree (-scanner +jsonv2):\n%s", cmp.Diff(scanned, reflected))
		}
	})
}

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
		var r podReview
		err := unmarshalReview(bytes.Replace(typical, []byte(c.old), []byte(c.new), 1), &r)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got error %v, want %q", c.new, err, c.want)
		}
	}
	var r podReview
	if err := unmarshalReview([]byte(`[]`), &r); err == nil || !strings.Contains(err.Error(), "the review is an array, want an object") {
		t.Errorf("a top-level array: got %v", err)
	}
}

// special8 must agree with plain on every byte in every position, and
// its lowest mark must be the first byte that is not plain whatever
// follows it (a borrow from a marked byte must not move it).
func TestSpecial8(t *testing.T) {
	first := func(word []byte) int {
		if m := special8(binary.LittleEndian.Uint64(word)); m != 0 {
			return bits.TrailingZeros64(m) / 8
		}
		return 8
	}
	for c := 0; c < 256; c++ {
		for pos := 0; pos < 8; pos++ {
			word := bytes.Repeat([]byte("a"), 8)
			word[pos] = byte(c)
			want := 8
			if !plain[c] {
				want = pos
			}
			if got := first(word); got != want {
				t.Fatalf("byte %#x at %d in plain bytes: first mark at %d, want %d", c, pos, got, want)
			}
			for d := 0; d < 256 && pos < 7; d++ {
				word[pos+1] = byte(d) // anything after it
				if !plain[c] && first(word) != pos {
					t.Fatalf("byte %#x at %d followed by %#x: first mark at %d", c, pos, d, first(word))
				}
			}
		}
	}
}
