package admission

import (
	"math"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	corev1 "k8s.io/api/core/v1"
)

// scanner is the fast path of unmarshalReview: it reads a review that
// jsontext has already found valid (RFC 7493: well-formed, UTF-8, unique
// names) straight from its bytes, with none of the bookkeeping a
// validating decoder carries per token. It fills the same podReview as
// the walker, and whenever a value is not what it expects (a wrong kind,
// a fraction, an integer out of range) it gives up; the walker then
// reads the review again and says where the problem is. Giving up is
// never an answer, so the two agree on every input the walker accepts,
// and FuzzWalk holds both to jsonv2.Unmarshal.
type scanner struct {
	b    []byte
	i    int
	name []byte // a member name that needed unescaping
}

// scanReview reads body into r; false means r is unusable and the walker
// must read body instead. body must be valid JSON.
func scanReview(body []byte, r *podReview) bool {
	s := scanner{b: body}
	return s.review(r)
}

func (s *scanner) review(r *podReview) bool {
	return s.object(func(name []byte) bool {
		switch string(name) {
		case "apiVersion":
			return s.str(&r.APIVersion)
		case "kind":
			return s.str(&r.Kind)
		case "request":
			return scanPtr(s, &r.Request, s.request)
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
			return scanPtr(s, &q.DryRun, s.boolean)
		case "object":
			return scanPtr(s, &q.Object, s.pod)
		}
		return s.skip()
	})
}

func (s *scanner) pod(p *podView) bool {
	return s.object(func(name []byte) bool {
		switch string(name) {
		case "metadata":
			return scanPtr(s, &p.Metadata, s.metadata)
		case "spec":
			return scanPtr(s, &p.Spec, s.spec)
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
				k, v := string(key), ""
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
			return scanPtr(s, &c.RestartPolicy, func(p *corev1.ContainerRestartPolicy) bool { return s.str((*string)(p)) })
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
			return scanPtr(s, &m.RecursiveReadOnly, func(p *corev1.RecursiveReadOnlyMode) bool { return s.str((*string)(p)) })
		case "mountPath":
			return s.str(&m.MountPath)
		case "subPath":
			return s.str(&m.SubPath)
		case "mountPropagation":
			return scanPtr(s, &m.MountPropagation, func(p *corev1.MountPropagationMode) bool { return s.str((*string)(p)) })
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

// unmarshal leaves the next value to jsonv2; any error sends the review
// to the walker, which reports it.
func (s *scanner) unmarshal(v any) bool {
	start := s.ws()
	if !s.skip() {
		return false
	}
	return jsonv2.Unmarshal(s.b[start:s.i], v) == nil
}

// object reads an object, calling member with each name to read its
// value; the name is valid only during the call. null reads as no
// members.
func (s *scanner) object(member func(name []byte) bool) bool {
	if s.null() {
		return true
	}
	if s.b[s.ws()] != '{' {
		return false
	}
	s.i++
	if s.b[s.ws()] == '}' {
		s.i++
		return true
	}
	for {
		s.ws()
		start := s.i
		escaped := s.skipString()
		name := s.b[start+1 : s.i-1]
		if escaped {
			s.name, _ = jsontext.AppendUnquote(s.name[:0], s.b[start:s.i])
			name = s.name
		}
		s.ws()
		s.i++ // ':'
		if !member(name) {
			return false
		}
		c := s.b[s.ws()]
		s.i++
		if c == '}' {
			return true
		}
	}
}

// scanArray reads an array into *a; null reads as a nil slice, [] as an
// empty one.
func scanArray[T any](s *scanner, a *[]T, read func() (T, bool)) bool {
	if s.null() {
		*a = nil
		return true
	}
	if s.b[s.ws()] != '[' {
		return false
	}
	s.i++
	var first [8]T
	out := first[:0]
	if s.b[s.ws()] == ']' {
		s.i++
	} else {
		for {
			v, ok := read()
			if !ok {
				return false
			}
			out = append(out, v)
			c := s.b[s.ws()]
			s.i++
			if c == ']' {
				break
			}
		}
	}
	*a = append(make([]T, 0, len(out)), out...)
	return true
}

// scanPtr reads a value into a new *p, or sets *p to nil on null.
func scanPtr[T any](s *scanner, p **T, read func(*T) bool) bool {
	if s.null() {
		*p = nil
		return true
	}
	if *p == nil {
		*p = new(T)
	}
	return read(*p)
}

// str reads a string; null reads as "".
func (s *scanner) str(v *string) bool {
	switch s.b[s.ws()] {
	case 'n':
		s.i += len("null")
		*v = ""
		return true
	case '"':
	default:
		return false
	}
	start := s.i
	if s.skipString() {
		u, err := jsontext.AppendUnquote(nil, s.b[start:s.i])
		*v = string(u)
		return err == nil
	}
	*v = string(s.b[start+1 : s.i-1])
	return true
}

// boolean reads true or false; null reads as false.
func (s *scanner) boolean(b *bool) bool {
	switch s.b[s.ws()] {
	case 'n':
		s.i += len("null")
		*b = false
	case 't':
		s.i += len("true")
		*b = true
	case 'f':
		s.i += len("false")
		*b = false
	default:
		return false
	}
	return true
}

// int32 reads an integer that fits in 32 bits, with no fraction or
// exponent; null reads as 0. Anything else goes to the walker.
func (s *scanner) int32(n *int32) bool {
	c := s.b[s.ws()]
	if c == 'n' {
		s.i += len("null")
		*n = 0
		return true
	}
	neg := c == '-'
	if neg {
		s.i++
	}
	var v int64
	start := s.i
	for ; s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9'; s.i++ {
		if v = v*10 + int64(s.b[s.i]-'0'); v > math.MaxInt32+1 {
			return false
		}
	}
	if s.i == start || s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		return false
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
	if s.b[s.ws()] != 'n' {
		return false
	}
	s.i += len("null")
	return true
}

// skip steps over the next value.
func (s *scanner) skip() bool {
	switch s.b[s.ws()] {
	case '"':
		s.skipString()
	case '{', '[':
		depth := 0
		for {
			switch s.b[s.i] {
			case '"':
				s.skipString()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					s.i++
					return true
				}
			}
			s.i++
		}
	default: // a number or a literal
		for s.i < len(s.b) && !delimiter[s.b[s.i]] {
			s.i++
		}
	}
	return true
}

// skipString steps over the string at s.i and says whether it has
// escapes.
func (s *scanner) skipString() (escaped bool) {
	for s.i++; ; s.i++ {
		switch s.b[s.i] {
		case '"':
			s.i++
			return escaped
		case '\\':
			escaped = true
			s.i++ // the escaped character
		}
	}
}

// ws skips whitespace and returns the index of what follows it.
func (s *scanner) ws() int {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
			continue
		}
		break
	}
	return s.i
}

var delimiter = [256]bool{',': true, '}': true, ']': true, ' ': true, '\t': true, '\n': true, '\r': true}
