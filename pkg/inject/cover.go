package inject

import (
	"fmt"
	"reflect"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
)

// The admission chain adds to what the webhook injected after it has
// answered: kube-apiserver's defaults, LimitRanger's default resources,
// AlwaysPullImages' pull policy, other webhooks' env, mounts and
// security settings. So a Pod still carries what was injected when every
// field the webhook set is there with the webhook's value; what it did
// not set is open to the rest of the chain.
//
// Which additions fit a field follows from the field's own type, as the
// API server's merges decide it, not from a list of tolerated fields: a
// map may gain keys, a list with a merge key (env by name, volumeMounts
// by mountPath, ports by containerPort) may gain entries, a field left
// unset may be set. A list without one (command, args, capabilities) is
// atomic: it keeps its length and order, each entry covering the one set
// (a string the same string). A scalar that was set keeps its value.

// covers says where have lacks what want sets, or sets it to another
// value; "" when have covers want. want and have are of the same type.
func covers(want, have any) string {
	return coverValue(reflect.ValueOf(want), reflect.ValueOf(have), "", "", false)
}

var quantityType = reflect.TypeFor[resource.Quantity]()

// coverValue compares want with have at path at. mergeKey is the merge
// key of a list (from its field's patchMergeKey); set says a zero want
// was set all the same (it is behind a pointer, or a map's value).
func coverValue(want, have reflect.Value, at, mergeKey string, set bool) string {
	if want.Type() == quantityType {
		w, h := want.Interface().(resource.Quantity), have.Interface().(resource.Quantity)
		if w.Cmp(h) != 0 {
			return where(at)
		}
		return ""
	}
	switch want.Kind() {
	case reflect.Pointer:
		switch {
		case want.IsNil():
			return ""
		case have.IsNil():
			return where(at)
		}
		return coverValue(want.Elem(), have.Elem(), at, "", true)
	case reflect.Struct:
		return coverStruct(want, have, at)
	case reflect.Map:
		iter := want.MapRange()
		for iter.Next() {
			k := iter.Key()
			h := have.MapIndex(k)
			if !h.IsValid() {
				return fmt.Sprintf("%s.%v", at, k)
			}
			if diff := coverValue(iter.Value(), h, fmt.Sprintf("%s.%v", at, k), "", true); diff != "" {
				return diff
			}
		}
		return ""
	case reflect.Slice:
		if want.Len() == 0 {
			return ""
		}
		if mergeKey != "" {
			return coverKeyed(want, have, at, mergeKey)
		}
		if have.Len() != want.Len() {
			return where(at)
		}
		for i := range want.Len() {
			if diff := coverValue(want.Index(i), have.Index(i), fmt.Sprintf("%s[%d]", at, i), "", true); diff != "" {
				return diff
			}
		}
		return ""
	}
	if (!set && want.IsZero()) || want.Equal(have) {
		return ""
	}
	return where(at)
}

func coverStruct(want, have reflect.Value, at string) string {
	t := want.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() || want.Field(i).IsZero() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if diff := coverValue(want.Field(i), have.Field(i), at+"."+name, f.Tag.Get("patchMergeKey"), false); diff != "" {
			return diff
		}
	}
	return ""
}

// coverKeyed matches each entry of want with have's entry of the same
// key; have may hold more.
func coverKeyed(want, have reflect.Value, at, key string) string {
	field := keyField(want.Type().Elem(), key)
	for i := range want.Len() {
		w := want.Index(i)
		k := w.Field(field)
		found := false
		for j := range have.Len() {
			if h := have.Index(j); h.Field(field).Equal(k) {
				if diff := coverValue(w, h, fmt.Sprintf("%s[%s=%v]", at, key, k), "", false); diff != "" {
					return diff
				}
				found = true
				break
			}
		}
		if !found {
			return fmt.Sprintf("%s[%s=%v]", at, key, k)
		}
	}
	return ""
}

// keyField is the index of the struct field whose JSON name is key.
func keyField(t reflect.Type, key string) int {
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name == key {
			return i
		}
	}
	panic(fmt.Sprintf("%s has no field %q, its merge key", t, key)) // k8s.io/api's tags name fields of the type
}

func where(at string) string {
	if at == "" {
		return "the top"
	}
	return at
}
