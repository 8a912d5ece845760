package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// lit is s as a CEL string literal. Go's quoting is valid CEL: both take
// \a \b \f \n \r \t \v \\ \" \xHH \uHHHH and \UHHHHHHHH.
func lit(s string) string { return strconv.Quote(s) }

// lits is a CEL list of string literals.
func lits(list []string) string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = lit(s)
	}
	return "[" + strings.Join(out, ", ") + "]"
}

// sentinel stands for parameter j in a template rendered for the
// compiler: plain letters and digits, so JSON leaves it as it is, and
// ended by a letter, so that parameter 1 is not the start of parameter 10.
func sentinel(j int) string { return fmt.Sprintf("sipzq%dqz", j) }

var sentinelRE = regexp.MustCompile(`sipzq([0-9]+)qz`)

// splice turns s, which may hold sentinels, into a CEL string expression:
// the text between them as literals, each sentinel as value(j).
func splice(s string, value func(j int) string) string {
	var parts []string
	last := 0
	for _, m := range sentinelRE.FindAllStringSubmatchIndex(s, -1) {
		if m[0] > last {
			parts = append(parts, lit(s[last:m[0]]))
		}
		j, _ := strconv.Atoi(s[m[2]:m[3]])
		parts = append(parts, value(j))
		last = m[1]
	}
	if last < len(s) || len(parts) == 0 {
		parts = append(parts, lit(s[last:]))
	}
	return strings.Join(parts, " + ")
}

// hasSentinel reports whether s holds a parameter.
func hasSentinel(s string) bool { return sentinelRE.MatchString(s) }

// jsonText is v's JSON as the engine writes it (encoding/json, HTML
// characters escaped).
func jsonText(v any) string {
	data, _ := json.Marshal(v) // API types always marshal
	return string(data)
}

// typed writes v, a value of an API type, as a CEL expression that builds
// it: Object.<path>{field: ...} for structs (the typed construction a
// JSONPatch mutation takes), map literals for maps. Strings may hold
// sentinels, turned into value(j).
func typed(v any, path string, value func(j int) string) string {
	var doc any
	dec := json.NewDecoder(bytes.NewReader([]byte(jsonText(v))))
	dec.UseNumber()
	_ = dec.Decode(&doc) // it was just encoded
	return typedValue(doc, reflect.TypeOf(v), path, value)
}

var (
	quantityType = reflect.TypeOf(resource.Quantity{})
	intOrString  = reflect.TypeOf(intstr.IntOrString{})
)

func typedValue(doc any, t reflect.Type, path string, value func(j int) string) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch d := doc.(type) {
	case string:
		return splice(d, value)
	case json.Number:
		return d.String()
	case bool:
		return strconv.FormatBool(d)
	case []any:
		items := make([]string, len(d))
		for i, item := range d {
			items[i] = typedValue(item, t.Elem(), path, value)
		}
		return "[" + strings.Join(items, ", ") + "]"
	case map[string]any:
		keys := slices.Sorted(maps.Keys(d))
		var fields []string
		if t.Kind() == reflect.Map {
			for _, k := range keys {
				fields = append(fields, lit(k)+": "+typedValue(d[k], t.Elem(), path, value))
			}
			return "{" + strings.Join(fields, ", ") + "}"
		}
		for _, k := range keys {
			f := jsonField(t, k)
			if f == nil {
				f = reflect.TypeOf("")
			}
			fields = append(fields, k+": "+typedValue(d[k], f, path+"."+k, value))
		}
		return path + "{" + strings.Join(fields, ", ") + "}"
	}
	return "null"
}

// jsonField is the type of the field of struct t that JSON names key.
func jsonField(t reflect.Type, key string) reflect.Type {
	if t == quantityType || t == intOrString || t.Kind() != reflect.Struct {
		return t
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && name == "" { // inline, as Probe's ProbeHandler
			if ft := jsonField(f.Type, key); ft != nil {
				return ft
			}
			continue
		}
		if name == key {
			return f.Type
		}
	}
	return nil
}

func contains(list []string, s string) bool { return slices.Contains(list, s) }

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

func pathClean(p string) string { return path.Clean(p) }
