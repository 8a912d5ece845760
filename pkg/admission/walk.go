package admission

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	corev1 "k8s.io/api/core/v1"
)

// walker decodes a review into a podReview by walking its jsontext
// tokens, member by member. It is the slow path: the scanner (scan.go)
// reads every good review, and the walker reads again what the scanner
// gave up on, for its errors, which say what is wrong and where (a JSON
// pointer into the review).
//
// It keeps the semantics of jsonv2.Unmarshal into the same types, and
// FuzzWalk holds it to them: names are case-sensitive, a duplicate name
// is an error, unknown members are skipped but still checked, null
// leaves the zero value, and a value of the wrong kind is an error.
// Security contexts, image pull secrets and volumes (volumeView) are left
// to jsonv2 on the same token stream.
type walker struct {
	src  bytes.Buffer
	dec  jsontext.Decoder
	name []byte // a member name that needed unescaping
}

var walkers = sync.Pool{New: func() any { return new(walker) }}

// unmarshalReview decodes body, one JSON object, into r: the scanner
// (scan.go) reads it, and what the scanner gives up on the walker reads
// again, to say what is wrong and where.
func unmarshalReview(body []byte, r *podReview) error {
	if scanReview(body, r) {
		return nil
	}
	*r = podReview{}
	return walkReview(body, r)
}

// walkReview decodes body into r with the walker.
func walkReview(body []byte, r *podReview) error {
	w := walkers.Get().(*walker)
	defer walkers.Put(w)
	// A bytes.Buffer is read in place, without a copy.
	w.src = *bytes.NewBuffer(body)
	w.dec.Reset(&w.src)
	defer w.src.Reset()
	if err := w.review(r); err != nil {
		return err
	}
	switch _, err := w.dec.ReadToken(); {
	case err == io.EOF:
		return nil
	case err == nil:
		return errors.New("data after the review")
	default:
		return err
	}
}

func (w *walker) review(r *podReview) error {
	return w.object(func(name []byte) error {
		switch string(name) {
		case "apiVersion":
			return w.str(&r.APIVersion)
		case "kind":
			return w.str(&r.Kind)
		case "request":
			return ptr(w, &r.Request, w.request)
		}
		return w.dec.SkipValue()
	})
}

func (w *walker) request(q *podRequest) error {
	return w.object(func(name []byte) error {
		switch string(name) {
		case "uid":
			return w.str((*string)(&q.UID))
		case "kind":
			return w.object(func(name []byte) error {
				switch string(name) {
				case "group":
					return w.str(&q.Kind.Group)
				case "version":
					return w.str(&q.Kind.Version)
				case "kind":
					return w.str(&q.Kind.Kind)
				}
				return w.dec.SkipValue()
			})
		case "subResource":
			return w.str(&q.SubResource)
		case "namespace":
			return w.str(&q.Namespace)
		case "operation":
			return w.str((*string)(&q.Operation))
		case "userInfo":
			return w.object(func(name []byte) error {
				if string(name) == "username" {
					return w.str(&q.UserInfo.Username)
				}
				return w.dec.SkipValue()
			})
		case "dryRun":
			return ptr(w, &q.DryRun, w.boolean)
		case "object":
			return ptr(w, &q.Object, w.pod)
		}
		return w.dec.SkipValue()
	})
}

func (w *walker) pod(p *podView) error {
	return w.object(func(name []byte) error {
		switch string(name) {
		case "metadata":
			return ptr(w, &p.Metadata, w.metadata)
		case "spec":
			return ptr(w, &p.Spec, w.spec)
		}
		return w.dec.SkipValue()
	})
}

func (w *walker) metadata(m *podMeta) error {
	return w.object(func(name []byte) error {
		switch string(name) {
		case "name":
			return w.str(&m.Name)
		case "generateName":
			return w.str(&m.GenerateName)
		case "annotations":
			if null, err := w.null(); null || err != nil {
				m.Annotations = nil
				return err
			}
			if m.Annotations == nil {
				m.Annotations = map[string]string{}
			}
			return w.object(func(key []byte) error {
				k, v := string(key), "" // key is valid only until the next read
				err := w.str(&v)
				m.Annotations[k] = v
				return err
			})
		}
		return w.dec.SkipValue()
	})
}

func (w *walker) spec(s *podSpec) error {
	return w.object(func(name []byte) error {
		switch string(name) {
		case "containers":
			return array(w, &s.Containers, w.container)
		case "initContainers":
			return array(w, &s.InitContainers, w.container)
		case "ephemeralContainers":
			return array(w, &s.EphemeralContainers, w.named)
		case "volumes":
			return jsonv2.UnmarshalDecode(&w.dec, &s.Volumes)
		case "imagePullSecrets":
			return jsonv2.UnmarshalDecode(&w.dec, &s.ImagePullSecrets)
		case "restartPolicy":
			return w.str((*string)(&s.RestartPolicy))
		case "securityContext":
			return jsonv2.UnmarshalDecode(&w.dec, &s.SecurityContext)
		}
		return w.dec.SkipValue()
	})
}

// container reads a container; null is a nil container, which pod()
// refuses.
func (w *walker) container() (*containerView, error) {
	if null, err := w.null(); null || err != nil {
		return nil, err
	}
	c := &containerView{}
	return c, w.object(func(name []byte) error {
		switch string(name) {
		case "name":
			return w.str(&c.Name)
		case "ports":
			return array(w, &c.Ports, w.port)
		case "volumeMounts":
			return array(w, &c.VolumeMounts, w.mount)
		case "env":
			return array(w, &c.Env, w.named)
		case "securityContext":
			return jsonv2.UnmarshalDecode(&w.dec, &c.SecurityContext)
		case "restartPolicy":
			return ptr(w, &c.RestartPolicy, func(p *corev1.ContainerRestartPolicy) error { return w.str((*string)(p)) })
		}
		return w.dec.SkipValue()
	})
}

// port and mount are walked rather than left to jsonv2: each
// UnmarshalDecode call costs about 3 us however small the value.
func (w *walker) port() (corev1.ContainerPort, error) {
	var p corev1.ContainerPort
	return p, w.object(func(name []byte) error {
		switch string(name) {
		case "name":
			return w.str(&p.Name)
		case "hostPort":
			return w.int32(&p.HostPort)
		case "containerPort":
			return w.int32(&p.ContainerPort)
		case "protocol":
			return w.str((*string)(&p.Protocol))
		case "hostIP":
			return w.str(&p.HostIP)
		}
		return w.dec.SkipValue()
	})
}

func (w *walker) mount() (corev1.VolumeMount, error) {
	var m corev1.VolumeMount
	return m, w.object(func(name []byte) error {
		switch string(name) {
		case "name":
			return w.str(&m.Name)
		case "readOnly":
			return w.boolean(&m.ReadOnly)
		case "recursiveReadOnly":
			return ptr(w, &m.RecursiveReadOnly, func(p *corev1.RecursiveReadOnlyMode) error { return w.str((*string)(p)) })
		case "mountPath":
			return w.str(&m.MountPath)
		case "subPath":
			return w.str(&m.SubPath)
		case "mountPropagation":
			return ptr(w, &m.MountPropagation, func(p *corev1.MountPropagationMode) error { return w.str((*string)(p)) })
		case "subPathExpr":
			return w.str(&m.SubPathExpr)
		}
		return w.dec.SkipValue()
	})
}

func (w *walker) named() (named, error) {
	var n named
	return n, w.object(func(name []byte) error {
		if string(name) == "name" {
			return w.str(&n.Name)
		}
		return w.dec.SkipValue()
	})
}

// object reads an object, calling member with each name to read its
// value; the name is valid only during the call. null reads as no
// members.
func (w *walker) object(member func(name []byte) error) error {
	if null, err := w.null(); null || err != nil {
		return err
	}
	if err := w.open('{', "an object"); err != nil {
		return err
	}
	for w.dec.PeekKind() == '"' {
		raw, err := w.dec.ReadValue()
		if err != nil {
			return err
		}
		name := raw[1 : len(raw)-1]
		if bytes.IndexByte(name, '\\') >= 0 {
			// Names are already validated; unquoting cannot fail.
			w.name, _ = jsontext.AppendUnquote(w.name[:0], raw)
			name = w.name
		}
		if err := member(name); err != nil {
			return err
		}
	}
	_, err := w.dec.ReadToken() // '}', or the syntax error that stopped the loop
	return err
}

// array reads an array into *s, one read per element; null reads as a
// nil slice, [] as an empty one.
func array[T any](w *walker, s *[]T, read func() (T, error)) error {
	if null, err := w.null(); null || err != nil {
		*s = nil
		return err
	}
	if err := w.open('[', "an array"); err != nil {
		return err
	}
	// Elements gather on the stack, then move to a slice of their exact
	// length: one allocation per array instead of one per doubling.
	var first [8]T
	out := first[:0]
	for k := w.dec.PeekKind(); k != ']'; k = w.dec.PeekKind() {
		if k == 0 { // a syntax error or the end of the input
			_, err := w.dec.ReadToken()
			return err
		}
		v, err := read()
		if err != nil {
			return err
		}
		out = append(out, v)
	}
	*s = append(make([]T, 0, len(out)), out...)
	_, err := w.dec.ReadToken()
	return err
}

// ptr reads a value into a new *p, or sets *p to nil on null.
func ptr[T any](w *walker, p **T, read func(*T) error) error {
	if null, err := w.null(); null || err != nil {
		*p = nil
		return err
	}
	if *p == nil {
		*p = new(T)
	}
	return read(*p)
}

// str reads a string; null reads as "".
func (w *walker) str(s *string) error {
	tok, err := w.dec.ReadToken()
	if err != nil {
		return err
	}
	switch tok.Kind() {
	case 'n':
		*s = ""
	case '"':
		*s = tok.String()
	default:
		return w.mismatch(tok.Kind(), "a string")
	}
	return nil
}

// boolean reads true or false; null reads as false.
func (w *walker) boolean(b *bool) error {
	tok, err := w.dec.ReadToken()
	if err != nil {
		return err
	}
	switch tok.Kind() {
	case 'n':
		*b = false
	case 't', 'f':
		*b = tok.Bool()
	default:
		return w.mismatch(tok.Kind(), "a boolean")
	}
	return nil
}

// int32 reads an integer as jsonv2 does: digits only, no fraction or
// exponent, within range; null reads as 0.
func (w *walker) int32(n *int32) error {
	raw, err := w.dec.ReadValue()
	if err != nil {
		return err
	}
	switch k := raw.Kind(); k {
	case 'n':
		*n = 0
		return nil
	case '0':
	default:
		return w.mismatch(k, "an integer")
	}
	digits, neg := raw, raw[0] == '-'
	if neg {
		digits = digits[1:]
	}
	var v int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return fmt.Errorf("%s is %s, want an integer", w.dec.StackPointer(), raw)
		}
		if v = v*10 + int64(c-'0'); v > math.MaxInt32+1 {
			break
		}
	}
	if neg {
		v = -v
	}
	if v < math.MinInt32 || v > math.MaxInt32 {
		return fmt.Errorf("%s is %s, out of range for a 32-bit integer", w.dec.StackPointer(), raw)
	}
	*n = int32(v)
	return nil
}

// null reads a null if one comes next.
func (w *walker) null() (bool, error) {
	if w.dec.PeekKind() != 'n' {
		return false, nil
	}
	_, err := w.dec.ReadToken()
	return true, err
}

// open reads the start of an object or array.
func (w *walker) open(delim jsontext.Kind, want string) error {
	if k := w.dec.PeekKind(); k != delim && k != 0 {
		tok, err := w.dec.ReadToken()
		if err != nil {
			return err
		}
		return w.mismatch(tok.Kind(), want)
	}
	_, err := w.dec.ReadToken()
	return err
}

// mismatch says where a value of the wrong kind is, as a JSON pointer
// into the review.
func (w *walker) mismatch(got jsontext.Kind, want string) error {
	where := string(w.dec.StackPointer())
	if where == "" {
		where = "the review"
	}
	return fmt.Errorf("%s is %s, want %s", where, kinds[got], want)
}

var kinds = map[jsontext.Kind]string{'n': "null", 't': "a boolean", 'f': "a boolean", '"': "a string", '0': "a number", '{': "an object", '[': "an array"}
