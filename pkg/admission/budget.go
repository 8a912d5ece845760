package admission

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
	"k8s.io/apimachinery/pkg/types"
)

// The in-flight body budget: a Content-Length over MaxRequestBytes is
// refused before reading, and the bytes of bodies larger than smallBody
// being read at once are capped by MaxBytesInFlight across requests, so
// a flood of large bodies cannot take the memory or crowd out the
// ordinary reviews (docs/performance.md measures it).

// DefaultMaxRequestBytes caps a request body. The API server refuses
// objects over 3 MiB, so a review is well within 6 MiB.
const DefaultMaxRequestBytes = 6 << 20

// DefaultMaxBytesInFlight caps, across requests, the bytes of large
// bodies being read and what decoding them may cost. Bodies up to
// smallBody bytes and freeValues objects and arrays, which every
// ordinary review is, do not count against it, so a flood of large
// bodies cannot crowd them out.
const DefaultMaxBytesInFlight = 16 << 20

// smallBody is the largest body read without the in-flight budget.
const smallBody = 64 << 10

// Decoding costs memory by the JSON objects and arrays a body holds, not
// by its bytes: `[{},{},...]` decodes three bytes into a kilobyte-sized
// container. Before a body is decoded its values are counted, and what
// they may cost, valueCost each, is charged to the in-flight budget past
// the first freeValues, which every ordinary review stays within. A body
// with more than MaxValues never fits and is refused.
//
// The fieldsV1 of the managedFields kube-apiserver sends with the object
// are not counted: they hold about five values per env var of the Pod,
// yet each decodes into one byte slice (metav1.FieldsV1 keeps its JSON
// raw), so their bytes, charged with the body's, are what they cost. The
// managedFields entries themselves count as any object does.
const (
	valueCost  = 1 << 10
	freeValues = 512
	// MaxValues is the most objects and arrays a review may hold. The
	// compiled admission policies deny a Pod over it too (see
	// TooManyValues), for the same cause.
	MaxValues = 16 << 10
)

// tooLargeError is a body over MaxRequestBytes.
type tooLargeError struct{ limit int64 }

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("the Pod's review is over the injector's limit of %d bytes", e.limit)
}

// errBusy is the answer to a large body while others use the budget.
var errBusy = errors.New("too many large request bodies in flight; retry later")

// read reads the body. A Content-Length over the limit is refused before
// reading; a large body is read only while the in-flight budget has room
// for it: all of it up front when its length is known, else as it
// arrives. What it charges stays charged until the answer is written.
func (h *Handler) read(r *http.Request, body *budgetReader) error {
	limit := cmp.Or(h.MaxRequestBytes, DefaultMaxRequestBytes)
	n := r.ContentLength
	if n > limit {
		// Only the start is read: the review's UID, which the answer
		// must carry to be taken as a denial, comes first.
		_, _ = body.buf.ReadFrom(io.LimitReader(r.Body, uidPrefix))
		return &tooLargeError{limit}
	}
	body.r, body.free = io.LimitReader(r.Body, limit+1), smallBody
	if n > smallBody {
		if !body.charge(n - smallBody) {
			return errBusy
		}
		body.buf.Grow(int(n) + bytes.MinRead) // ReadFrom wants MinRead free at the end
	}
	if _, err := body.buf.ReadFrom(body); err != nil {
		return err
	}
	if int64(body.buf.Len()) > limit {
		return &tooLargeError{limit}
	}
	values, err := countValues(body.buf.Bytes())
	switch {
	case err != nil:
		return nil // decode says what is wrong
	case values > MaxValues:
		return &tooManyValuesError{values}
	case values > freeValues && !body.charge(int64(values-freeValues)*valueCost):
		return errBusy
	}
	return nil
}

// tooManyValuesError is a body with more than MaxValues.
type tooManyValuesError struct{ values int }

func (e *tooManyValuesError) Error() string {
	size := fmt.Sprintf("%d", e.values)
	if e.values > countLimit {
		size = fmt.Sprintf("more than %d", countLimit)
	}
	return fmt.Sprintf(TooManyValues, size+" JSON objects and arrays (the fieldsV1 of its managedFields not counted)")
}

// TooManyValues is the denial of a Pod over MaxValues, for fmt.Sprintf
// with how many it holds.
var TooManyValues = "the Pod is too large for the sidecar injector: it holds %s, over the limit of " + fmt.Sprint(MaxValues) + "; a Pod of 50 containers with 200 env vars each holds about 10,500"

// CheckValues returns the webhook's denial of a review body that holds
// more than MaxValues objects and arrays, or nil.
func CheckValues(body []byte) error {
	if n, err := countValues(body); err == nil && n > MaxValues {
		return &tooManyValuesError{n}
	}
	return nil
}

// countLimit stops countValues on a hostile body: the count is exact up
// to it, which is far past any limit a denial names.
const countLimit = 16 * MaxValues

// countValues counts the objects and arrays of a JSON text, leaving out
// the fieldsV1 of the object's managedFields, up to one past countLimit.
func countValues(data []byte) (int, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(data), jsontext.AllowDuplicateNames(true))
	n := 0
	for n <= countLimit {
		tok, err := dec.ReadToken()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		switch tok.Kind() {
		case '{', '[':
			n++
		case '"':
			if isFieldsV1(dec, tok) {
				if err := dec.SkipValue(); err != nil {
					return n, err
				}
			}
		}
	}
	return n, nil
}

// fieldsV1Depth is the depth of the name fieldsV1 in a review: the
// review, its request, the object, its metadata, managedFields, an entry.
const fieldsV1Depth = 6

// isFieldsV1 reports whether tok, just read, is the name fieldsV1 of an
// entry of request.object.metadata.managedFields.
func isFieldsV1(dec *jsontext.Decoder, tok jsontext.Token) bool {
	if dec.StackDepth() != fieldsV1Depth {
		return false
	}
	if kind, length := dec.StackIndex(fieldsV1Depth); kind != '{' || length%2 == 0 { // a value, not a name
		return false
	}
	if tok.String() != "fieldsV1" {
		return false
	}
	at := string(dec.StackPointer())
	entry, ok := strings.CutPrefix(at, "/request/object/metadata/managedFields/")
	return ok && strings.HasSuffix(entry, "/fieldsV1") && strings.Count(entry, "/") == 1
}

// uidPrefix is how much of an oversized body is read to find its UID.
const uidPrefix = 4 << 10

// peekUID returns request.uid of a review, reading only the review's
// top-level members and its request's up to the uid; "" if it has none
// or it is not a review. A body cut short is fine: the uid comes first.
func peekUID(data []byte) types.UID {
	dec := jsontext.NewDecoder(bytes.NewReader(data), jsontext.AllowDuplicateNames(true))
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return ""
	}
	for {
		name, err := dec.ReadToken()
		if err != nil || name.Kind() != '"' {
			return ""
		}
		if name.String() != "request" || dec.PeekKind() != '{' {
			if dec.SkipValue() != nil {
				return ""
			}
			continue
		}
		_, _ = dec.ReadToken()
		for {
			name, err := dec.ReadToken()
			if err != nil || name.Kind() != '"' {
				return ""
			}
			if name.String() == "uid" {
				uid, err := dec.ReadToken()
				if err != nil || uid.Kind() != '"' || len(uid.String()) > maxUIDBytes {
					return ""
				}
				return types.UID(uid.String())
			}
			if dec.SkipValue() != nil {
				return ""
			}
		}
	}
}

// budgetReader reads a request body into buf, charging the
// handler's in-flight budget for what it reads past its free bytes, a
// chunk at a time; it fails once the budget is spent.
type budgetReader struct {
	r       io.Reader
	h       *Handler
	buf     bytes.Buffer
	free    int64 // read without a charge
	read    int64
	charged int64
}

// budgetChunk is what a body of unknown length is charged at a time.
const budgetChunk = 256 << 10

func (b *budgetReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.read += int64(n)
	for b.read > b.free+b.charged {
		if !b.charge(budgetChunk) {
			return n, errBusy
		}
	}
	return n, err
}

func (b *budgetReader) charge(n int64) bool {
	if b.h.inFlight.Add(n) > cmp.Or(b.h.MaxBytesInFlight, DefaultMaxBytesInFlight) {
		b.h.inFlight.Add(-n)
		return false
	}
	b.charged += n
	return true
}

// release returns the charge.
func (b *budgetReader) release() {
	b.h.inFlight.Add(-b.charged)
	b.charged = 0
}
