package admissionpolicy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
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

// resourcesSentinel stands for the resources of container k, whose
// requests and limits a Pod may override.
func resourcesSentinel(k int) string { return fmt.Sprintf("sipzqres%dqz", k) }

// numSentinel stands for number k, an int the Pod decides (the user a
// container runs as).
func numSentinel(k int) int64 { return 135792400 + int64(k) }

// Sentinels are told apart in splice's value by their index: a
// parameter's own, numbers from 1000, resources from 2000.
const (
	numIndex       = 1000
	resourcesIndex = 2000
)

var sentinelRE = regexp.MustCompile(`sipzq([0-9]+)qz|sipzqres([0-9]+)qz|\b1357924([0-9]{2})\b`)

// splice turns s, which may hold sentinels, into a CEL string expression:
// the text between them as literals, each sentinel as value(j).
func splice(s string, value func(j int) string) string {
	var parts []string
	last := 0
	for _, m := range sentinelRE.FindAllStringSubmatchIndex(s, -1) {
		if m[0] > last {
			parts = append(parts, lit(s[last:m[0]]))
		}
		var j int
		switch {
		case m[2] >= 0:
			j, _ = strconv.Atoi(s[m[2]:m[3]])
		case m[4] >= 0:
			j, _ = strconv.Atoi(s[m[4]:m[5]])
			j += resourcesIndex
		default:
			j, _ = strconv.Atoi(s[m[6]:m[7]])
			j += numIndex
		}
		parts = append(parts, value(j))
		last = m[1]
	}
	if last < len(s) || len(parts) == 0 {
		parts = append(parts, lit(s[last:]))
	}
	if m := sentinelRE.FindStringIndex(s); len(parts) == 1 && m != nil && m[0] == 0 && m[1] == len(s) {
		// A value alone: typed string, so that a list or map holding it
		// and string literals type-checks (dyn beside string does not).
		return "string(" + parts[0] + ")"
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
// sentinels, turned into c's parameters; numeric and resources sentinels
// become c's numbers and resources.
func typed(v any, path string, c *compiled) string {
	var doc any
	dec := json.NewDecoder(bytes.NewReader([]byte(jsonText(v))))
	dec.UseNumber()
	_ = dec.Decode(&doc) // it was just encoded
	return typedValue(doc, reflect.TypeOf(v), path, c)
}

var (
	quantityType = reflect.TypeOf(resource.Quantity{})
	intOrString  = reflect.TypeOf(intstr.IntOrString{})
)

func typedValue(doc any, t reflect.Type, path string, c *compiled) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch d := doc.(type) {
	case string:
		return splice(d, c.param)
	case json.Number:
		if m := sentinelRE.FindStringSubmatch(d.String()); m != nil && m[0] == d.String() && m[3] != "" {
			k, _ := strconv.Atoi(m[3])
			return fmt.Sprintf("variables.%snum%d", c.prefix, k)
		}
		return d.String()
	case bool:
		return strconv.FormatBool(d)
	case []any:
		items := make([]string, len(d))
		for i, item := range d {
			items[i] = typedValue(item, t.Elem(), path, c)
		}
		return "[" + strings.Join(items, ", ") + "]"
	case map[string]any:
		keys := slices.Sorted(maps.Keys(d))
		var fields []string
		if t.Kind() == reflect.Map {
			for _, k := range keys {
				fields = append(fields, lit(k)+": "+typedValue(d[k], t.Elem(), path, c))
			}
			return "{" + strings.Join(fields, ", ") + "}"
		}
		for _, k := range keys {
			f := jsonField(t, k)
			if f == nil {
				f = reflect.TypeOf("")
			}
			if k == "resources" {
				if res := c.resourcesOf(d[k]); res >= 0 {
					fields = append(fields, k+": "+c.resourcesTyped(res, path+"."+k))
					continue
				}
			}
			fields = append(fields, k+": "+typedValue(d[k], f, path+"."+k, c))
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

// expr is a CEL string expression, as an argument of celf.
type expr string

// celf is the CEL string expression of fmt.Sprintf(format, args...), for
// the engine's denial formats: an argument of type expr is evaluated at
// admission (as text, %d of a CEL int made string() first), any other is
// formatted now with its verb. format holds only plain verbs (%s, %d,
// %q, %v) and %%.
func celf(format string, args ...any) string {
	var parts []string
	var text strings.Builder
	flush := func() {
		if text.Len() > 0 {
			parts = append(parts, lit(text.String()))
			text.Reset()
		}
	}
	n := 0
	for i := 0; i < len(format); i++ {
		if format[i] != '%' || i+1 == len(format) {
			text.WriteByte(format[i])
			continue
		}
		i++
		verb := format[i]
		if verb == '%' {
			text.WriteByte('%')
			continue
		}
		if n == len(args) {
			panic(fmt.Sprintf("celf %q: too few arguments", format))
		}
		if e, ok := args[n].(expr); ok {
			flush()
			parts = append(parts, string(e))
		} else {
			text.WriteString(fmt.Sprintf("%"+string(verb), args[n]))
		}
		n++
	}
	if n != len(args) {
		panic(fmt.Sprintf("celf %q: %d arguments, %d verbs", format, len(args), n))
	}
	flush()
	if len(parts) == 0 {
		return "''"
	}
	return strings.Join(parts, " + ")
}
