package admission

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/go-json-experiment/json/jsontext"
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
// with more than maxValues never fits and is refused.
const (
	valueCost  = 1 << 10
	freeValues = 512
	maxValues  = 16 << 10
)

// tooLargeError is a body over MaxRequestBytes.
type tooLargeError struct{ limit int64 }

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("request body over the limit of %d bytes", e.limit)
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
	case values > maxValues:
		return &tooManyValuesError{values}
	case values > freeValues && !body.charge(int64(values-freeValues)*valueCost):
		return errBusy
	}
	return nil
}

// tooManyValuesError is a body with more than maxValues.
type tooManyValuesError struct{ values int }

func (e *tooManyValuesError) Error() string {
	return fmt.Sprintf("request body holds more than %d JSON objects and arrays; a Pod review holds a few hundred", maxValues)
}

// countValues counts the objects and arrays of a JSON text, up to one
// past maxValues.
func countValues(data []byte) (int, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(data), jsontext.AllowDuplicateNames(true))
	n := 0
	for n <= maxValues {
		tok, err := dec.ReadToken()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if k := tok.Kind(); k == '{' || k == '[' {
			n++
		}
	}
	return n, nil
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
