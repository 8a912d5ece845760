package admission

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"reflect"
	"sync"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	corev1 "k8s.io/api/core/v1"
)

// unmarshalReview decodes body into r, with the semantics of
// jsonv2.Unmarshal into the view types (see podReview). The scanner reads
// every good review; whatever it gives up on, jsonv2 reads again, for its
// error, which describe words for the user.
func unmarshalReview(body []byte, r *podReview) error {
	if scanReview(body, r) {
		return nil
	}
	*r = podReview{}
	return describe(jsonv2.Unmarshal(body, r))
}

// describe says where in the review a value of the wrong kind is, as a
// JSON pointer, what it is and what was wanted; jsontext's syntax errors
// say where already.
func describe(err error) error {
	var se *jsonv2.SemanticError
	if !errors.As(err, &se) || se.JSONKind == 0 || se.GoType == nil {
		return err
	}
	where := string(se.JSONPointer)
	if where == "" {
		where = "the review"
	}
	msg := fmt.Sprintf("%s is %s, want %s", where, kinds[se.JSONKind], wants(se.GoType))
	var inner *jsonv2.SemanticError
	if se.Err != nil && !errors.As(se.Err, &inner) {
		msg += ": " + se.Err.Error()
	}
	return errors.New(msg)
}

var kinds = map[jsontext.Kind]string{'n': "null", 't': "a boolean", 'f': "a boolean", '"': "a string", '0': "a number", '{': "an object", '[': "an array"}

// wants names the JSON a Go type is read from.
func wants(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	}
	return t.String()
}

// scanner is the fast path of unmarshalReview: it reads the review
// straight from its bytes, checking the JSON as it goes (RFC 7493 as
// jsontext does: the grammar, UTF-8, escapes, unique names, nesting
// depth) without the bookkeeping a general tokenizer carries per token.
// Whenever anything is not as expected, invalid JSON or a value of the
// wrong kind, it gives up, and jsonv2 reads the review again. Giving up
// is never an answer, so the scanner's results are jsonv2's; FuzzScan
// holds it to jsonv2.Unmarshal on any input.
type scanner struct {
	b     []byte
	i     int
	depth int
	names [][]byte // member names of the objects being read, innermost last
	unq   []byte   // the last string that had escapes, unquoted

	// strs holds short strings read before, kept across reviews: kinds,
	// versions, names and protocols repeat from one review to the next,
	// and a string found here costs no allocation. Each hash has two
	// slots, so two hot strings that share a hash both stay (in the
	// typical review, the inject annotation's key and its value do).
	strs [256][2]string

	// parts is where the review's request, Pod, metadata and spec go:
	// one allocation for the four, each used once, since a name appears
	// once in an object.
	parts *reviewParts
}

type reviewParts struct {
	request podRequest
	pod     podView
	meta    podMeta
	spec    podSpec
}

// scanReview reads body into r; false means r is unusable and body must
// be read by jsonv2.
func scanReview(body []byte, r *podReview) bool {
	s := scanners.Get().(*scanner)
	s.b, s.i, s.depth, s.names, s.unq = body, 0, 0, s.names[:0], s.unq[:0]
	s.parts = new(reviewParts)
	defer func() {
		// Keep no references into the body, and no buffer a huge review
		// grew.
		clear(s.names[:cap(s.names)])
		if cap(s.names) > 1024 {
			s.names = nil
		}
		if cap(s.unq) > 64<<10 {
			s.unq = nil
		}
		s.b, s.parts = nil, nil
		scanners.Put(s)
	}()
	return s.review(r) && s.peek() == 0 && s.i == len(s.b)
}

// Scanners are pooled for the buffers they grow and the strings they keep.
var scanners = sync.Pool{New: func() any { return new(scanner) }}

func (s *scanner) review(r *podReview) bool {
	return s.object(func(name []byte) bool {
		switch string(name) {
		case "apiVersion":
			return s.str(&r.APIVersion)
		case "kind":
			return s.str(&r.Kind)
		case "request":
			return scanPtr(s, &r.Request, &s.parts.request, s.request)
		}
		return s.skip()
	})
}

func (s *scanner) request(q *podRequest) bool {
	return s.object(func(name []byte) bool {
		switch string(name) {
		case "uid":
			return s.str((*string)(&q.UID))
		case "kind":
			return s.object(func(name []byte) bool {
				switch string(name) {
				case "group":
					return s.str(&q.Kind.Group)
				case "version":
					return s.str(&q.Kind.Version)
				case "kind":
					return s.str(&q.Kind.Kind)
				}
				return s.skip()
			})
		case "subResource":
			return s.str(&q.SubResource)
		case "namespace":
			return s.str(&q.Namespace)
		case "operation":
			return s.str((*string)(&q.Operation))
		case "userInfo":
			return s.object(func(name []byte) bool {
				if string(name) == "username" {
					return s.str(&q.UserInfo.Username)
				}
				return s.skip()
			})
		case "dryRun":
			return scanPtr(s, &q.DryRun, nil, s.boolean)
		case "object":
			return scanPtr(s, &q.Object, &s.parts.pod, s.pod)
		}
		return s.skip()
	})
}

func (s *scanner) pod(p *podView) bool {
	return s.object(func(name []byte) bool {
		switch string(name) {
		case "metadata":
			return scanPtr(s, &p.Metadata, &s.parts.meta, s.metadata)
		case "spec":
			return scanPtr(s, &p.Spec, &s.parts.spec, s.spec)
		}
		return s.skip()
	})
}

func (s *scanner) metadata(m *podMeta) bool {
	return s.object(func(name []byte) bool {
		switch string(name) {
		case "name":
			return s.str(&m.Name)
		case "generateName":
			return s.str(&m.GenerateName)
		case "annotations":
			if s.null() {
				m.Annotations = nil
				return true
			}
			if m.Annotations == nil {
				m.Annotations = map[string]string{}
			}
			return s.object(func(key []byte) bool {
				k, v := s.intern(key), ""
				ok := s.str(&v)
				m.Annotations[k] = v
				return ok
			})
		}
		return s.skip()
	})
}

func (s *scanner) spec(p *podSpec) bool {
	return s.object(func(name []byte) bool {
		switch string(name) {
		case "containers":
			return scanArray(s, &p.Containers, s.container)
		case "initContainers":
			return scanArray(s, &p.InitContainers, s.container)
		case "ephemeralContainers":
			return scanArray(s, &p.EphemeralContainers, s.named)
		case "volumes":
			return scanArray(s, &p.Volumes, s.volume)
		case "imagePullSecrets":
			return s.unmarshal(&p.ImagePullSecrets)
		case "restartPolicy":
			return s.str((*string)(&p.RestartPolicy))
		case "securityContext":
			return s.unmarshal(&p.SecurityContext)
		}
		return s.skip()
	})
}

func (s *scanner) container() (*containerView, bool) {
	if s.null() {
		return nil, true
	}
	c := &containerView{}
	return c, s.object(func(name []byte) bool {
		switch string(name) {
		case "name":
			return s.str(&c.Name)
		case "ports":
			return scanArray(s, &c.Ports, s.port)
		case "volumeMounts":
			return scanArray(s, &c.VolumeMounts, s.mount)
		case "env":
			return scanArray(s, &c.Env, s.named)
		case "securityContext":
			return s.unmarshal(&c.SecurityContext)
		case "restartPolicy":
			return scanPtr(s, &c.RestartPolicy, nil, func(p *corev1.ContainerRestartPolicy) bool { return s.str((*string)(p)) })
		}
		return s.skip()
	})
}

func (s *scanner) port() (corev1.ContainerPort, bool) {
	var p corev1.ContainerPort
	return p, s.object(func(name []byte) bool {
		switch string(name) {
		case "name":
			return s.str(&p.Name)
		case "hostPort":
			return s.int32(&p.HostPort)
		case "containerPort":
			return s.int32(&p.ContainerPort)
		case "protocol":
			return s.str((*string)(&p.Protocol))
		case "hostIP":
			return s.str(&p.HostIP)
		}
		return s.skip()
	})
}

func (s *scanner) mount() (corev1.VolumeMount, bool) {
	var m corev1.VolumeMount
	return m, s.object(func(name []byte) bool {
		switch string(name) {
		case "name":
			return s.str(&m.Name)
		case "readOnly":
			return s.boolean(&m.ReadOnly)
		case "recursiveReadOnly":
			return scanPtr(s, &m.RecursiveReadOnly, nil, func(p *corev1.RecursiveReadOnlyMode) bool { return s.str((*string)(p)) })
		case "mountPath":
			return s.str(&m.MountPath)
		case "subPath":
			return s.str(&m.SubPath)
		case "mountPropagation":
			return scanPtr(s, &m.MountPropagation, nil, func(p *corev1.MountPropagationMode) bool { return s.str((*string)(p)) })
		case "subPathExpr":
			return s.str(&m.SubPathExpr)
		}
		return s.skip()
	})
}

func (s *scanner) volume() (volumeView, bool) {
	var v volumeView
	start := s.ws()
	ok := s.object(func(name []byte) bool {
		if string(name) == "name" {
			return s.str(&v.Name)
		}
		return s.skip()
	})
	v.JSON = s.b[start:s.i]
	return v, ok
}

func (s *scanner) named() (named, bool) {
	var n named
	return n, s.object(func(name []byte) bool {
		if string(name) == "name" {
			return s.str(&n.Name)
		}
		return s.skip()
	})
}

// unmarshal leaves the next value to jsonv2; on any error the whole
// review goes to jsonv2, which reports it.
func (s *scanner) unmarshal(v any) bool {
	start := s.ws()
	if !s.skip() {
		return false
	}
	return jsonv2.Unmarshal(s.b[start:s.i], v) == nil
}

// object reads an object, calling member with each name to read its
// value; the name is valid only during the call. null reads as no
// members. A name seen twice in one object fails, as in jsonv2.
func (s *scanner) object(member func(name []byte) bool) bool {
	switch s.peek() {
	case 'n':
		return s.literal("null")
	case '{':
	default:
		return false
	}
	if !s.enter() {
		return false
	}
	s.i++
	base := len(s.names)
	var seen map[string]struct{} // the names, once there are many
	defer func() { s.names = s.names[:base] }()
	if s.peek() == '}' {
		s.i++
		s.depth--
		return true
	}
	for {
		if s.peek() != '"' {
			return false
		}
		name, copied, ok := s.string()
		if !ok {
			return false
		}
		if name, ok = s.unique(base, name, copied, &seen); !ok || s.peek() != ':' {
			return false
		}
		s.i++
		if !member(name) {
			return false
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			s.depth--
			return true
		default:
			return false
		}
	}
}

// unique adds name to the names of the object whose names start at
// s.names[base], failing if it is there already, and returns the name as
// kept. Small objects are searched; past 32 names *seen is built, so a
// large object costs no more than it does jsontext.
func (s *scanner) unique(base int, name []byte, copied bool, seen *map[string]struct{}) ([]byte, bool) {
	if copied {
		name = bytes.Clone(name) // s.unq is reused by the next string
	}
	names := s.names[base:]
	if *seen == nil && len(names) >= 32 {
		*seen = make(map[string]struct{}, 2*len(names))
		for _, n := range names {
			(*seen)[string(n)] = struct{}{}
		}
	}
	if *seen != nil {
		if _, dup := (*seen)[string(name)]; dup {
			return nil, false
		}
		(*seen)[string(name)] = struct{}{}
	} else {
		for _, n := range names {
			if bytes.Equal(n, name) {
				return nil, false
			}
		}
	}
	s.names = append(s.names, name)
	return name, true
}

// scanArray reads an array into *a; null reads as a nil slice, [] as an
// empty one.
func scanArray[T any](s *scanner, a *[]T, read func() (T, bool)) bool {
	switch s.peek() {
	case 'n':
		*a = nil
		return s.literal("null")
	case '[':
	default:
		return false
	}
	if !s.enter() {
		return false
	}
	s.i++
	// Elements gather on the stack, then move to a slice of their exact
	// length: one allocation per array instead of one per doubling.
	var first [8]T
	out := first[:0]
	if s.peek() == ']' {
		s.i++
	} else {
		for {
			v, ok := read()
			if !ok {
				return false
			}
			out = append(out, v)
			c := s.peek()
			s.i++
			if c == ']' {
				break
			}
			if c != ',' {
				return false
			}
		}
	}
	s.depth--
	*a = append(make([]T, 0, len(out)), out...)
	return true
}

// scanPtr reads a value into *p, or sets *p to nil on null. The value
// goes to spare, unused until now, or to a new T if spare is nil.
func scanPtr[T any](s *scanner, p **T, spare *T, read func(*T) bool) bool {
	if s.peek() == 'n' {
		*p = nil
		return s.literal("null")
	}
	if *p == nil {
		if spare == nil {
			spare = new(T)
		}
		*p = spare
	}
	return read(*p)
}

// str reads a string; null reads as "".
func (s *scanner) str(v *string) bool {
	switch s.peek() {
	case 'n':
		*v = ""
		return s.literal("null")
	case '"':
		b, _, ok := s.string()
		*v = s.intern(b)
		return ok
	}
	return false
}

// intern returns b as a string, from s.strs when it is short.
func (s *scanner) intern(b []byte) string {
	if len(b) == 0 || len(b) > 32 {
		return string(b)
	}
	h := uint32(2166136261) // FNV-1a
	for _, c := range b {
		h = (h ^ uint32(c)) * 16777619
	}
	set := &s.strs[h%uint32(len(s.strs))]
	if string(b) == set[0] {
		return set[0]
	}
	if string(b) == set[1] {
		return set[1]
	}
	set[1], set[0] = set[0], string(b) // the older one goes
	return set[0]
}

// boolean reads true or false; null reads as false.
func (s *scanner) boolean(b *bool) bool {
	switch s.peek() {
	case 'n':
		*b = false
		return s.literal("null")
	case 't':
		*b = true
		return s.literal("true")
	case 'f':
		*b = false
		return s.literal("false")
	}
	return false
}

// int32 reads an integer that fits in 32 bits, with no fraction or
// exponent; null reads as 0. Anything else goes to jsonv2.
func (s *scanner) int32(n *int32) bool {
	switch c := s.peek(); {
	case c == 'n':
		*n = 0
		return s.literal("null")
	case c != '-' && (c < '0' || c > '9'):
		return false
	}
	start := s.i
	if !s.number() {
		return false
	}
	digits := s.b[start:s.i]
	neg := digits[0] == '-'
	if neg {
		digits = digits[1:]
	}
	var v int64
	for _, c := range digits {
		if c < '0' || c > '9' { // a fraction or an exponent
			return false
		}
		if v = v*10 + int64(c-'0'); v > math.MaxInt32+1 {
			return false
		}
	}
	if neg {
		v = -v
	}
	if v > math.MaxInt32 {
		return false
	}
	*n = int32(v)
	return true
}

// null reads a null if one comes next.
func (s *scanner) null() bool {
	return s.peek() == 'n' && s.literal("null")
}

// skip steps over the next value, checking it.
func (s *scanner) skip() bool {
	switch c := s.peek(); {
	case c == '"':
		_, _, ok := s.string()
		return ok
	case c == '{':
		return s.object(func([]byte) bool { return s.skip() })
	case c == '[':
		var none []struct{}
		return scanArray(s, &none, func() (struct{}, bool) { return struct{}{}, s.skip() })
	case c == 'n':
		return s.literal("null")
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == '-' || '0' <= c && c <= '9':
		return s.number()
	}
	return false
}

// string reads the string at s.i and returns what it holds: a slice of
// the body when it has no escapes, else (copied) of s.unq, valid until
// the next string is read.
func (s *scanner) string() (v []byte, copied, ok bool) {
	b, start := s.b, s.i
	escaped, ascii := false, true
	for i := start + 1; i < len(b); i++ {
		// Eight bytes at a time while they are plain; the first byte
		// that is not is found from the mask, not by stepping to it.
		for i+8 <= len(b) {
			m := special8(binary.LittleEndian.Uint64(b[i:]))
			if m != 0 {
				i += bits.TrailingZeros64(m) / 8
				break
			}
			i += 8
		}
		for i < len(b) && plain[b[i]] {
			i++
		}
		if i == len(b) {
			break // no closing quote
		}
		switch c := b[i]; {
		case c == '"':
			s.i = i + 1
			if escaped {
				var err error
				s.unq, err = jsontext.AppendUnquote(s.unq[:0], b[start:s.i])
				return s.unq, true, err == nil
			}
			v = b[start+1 : i]
			return v, false, ascii || utf8.Valid(v)
		case c == '\\':
			escaped = true
			i++ // the escaped character, which AppendUnquote checks
		case c < ' ':
			return nil, false, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false, false
}

// plain marks the bytes a string holds as they are: not a quote, a
// backslash, a control character or part of a multi-byte character.
var plain = func() (t [256]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// special8 marks, with its high bit, each of the eight bytes of x that is
// not plain (the tests from Bit Twiddling Hacks: a byte equal to '"' or
// '\\', a byte under ' ', a byte with the high bit set). A borrow can
// mark a byte above one that is marked rightly, never below, so the
// lowest mark is exact.
func special8(x uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	quote, backslash := x^(ones*'"'), x^(ones*'\\')
	return ((quote-ones)&^quote | (backslash-ones)&^backslash | (x-ones*' ')&^x | x) & highs
}

// number steps over a number, checking its grammar.
func (s *scanner) number() bool {
	b, i := s.b, s.i
	digits := func() bool {
		start := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		return i > start
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case !digits():
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return false
		}
	}
	s.i = i
	return true
}

// literal steps over lit, which must come next.
func (s *scanner) literal(lit string) bool {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}

// enter counts one more level of nesting, within jsontext's limit.
func (s *scanner) enter() bool {
	s.depth++
	return s.depth <= maxDepth
}

// maxDepth is jsontext's limit on nesting.
const maxDepth = 10000

// peek skips whitespace and returns the byte that follows, or 0 at the
// end of the body.
func (s *scanner) peek() byte {
	if s.i < len(s.b) && s.b[s.i] > ' ' { // compact JSON: no whitespace
		return s.b[s.i]
	}
	for ; s.i < len(s.b); s.i++ {
		switch c := s.b[s.i]; c {
		case ' ', '\t', '\n', '\r':
		default:
			return c
		}
	}
	return 0
}

// ws skips whitespace and returns the index of what follows it.
func (s *scanner) ws() int {
	s.peek()
	return s.i
}
