package inject

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Keys sign the status entries the webhook writes, so that an entry
// proves the injector wrote it: an app team, which cannot read the key,
// cannot make one for content of its own. The first key signs; every key
// verifies, so that during a rotation the Pods signed with the previous
// key still verify.
//
// An entry is signed with the time it was signed at. At admission the
// additions the rest of the chain made to what an entry lists count as
// ours only while the entry is fresh (see Fresh): the reinvocation that
// sees them comes within the same request. A status copied from another
// Pod later on must be matched exactly, as any Pod arriving with a
// status is.
//
// A nil *Keys signs nothing (the offline tools without the key), and a
// signed entry cannot be verified with it: it is never current.
type Keys struct {
	keys [][]byte
	// Now is the clock entries are signed and judged fresh by; time.Now
	// if nil.
	Now func() time.Time
}

// Fresh is how long a signed entry stays fresh: longer than one Pod
// create takes through every webhook (each has at most 30 seconds),
// with room for the clocks of two replicas to differ.
const Fresh = 2 * time.Minute

// MinKeyBytes is the shortest key taken: HMAC-SHA256's block-sized keys
// are 64 bytes, and a key shorter than its 32-byte output is weaker than
// the MAC.
const MinKeyBytes = 32

// NewKeys takes the signing key first, then the keys that still verify.
func NewKeys(keys ...[]byte) (*Keys, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("no status key; want at least one of %d bytes or more", MinKeyBytes)
	}
	k := &Keys{}
	for i, key := range keys {
		if len(key) < MinKeyBytes {
			return nil, fmt.Errorf("status key %d has %d bytes; want %d or more", i+1, len(key), MinKeyBytes)
		}
		k.keys = append(k.keys, append([]byte(nil), key...))
	}
	return k, nil
}

// mac is the MAC of an entry: of the template's name, the time it was
// signed and the held JSON, which hold no newline.
func mac(key []byte, in Injected) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(in.Name + "\n" + in.Signed + "\n" + in.Held))
	return m.Sum(nil)
}

func (k *Keys) now() time.Time {
	if k.Now == nil {
		return time.Now()
	}
	return k.Now()
}

// sign returns in signed now with the signing key, or as it is with no
// keys.
func (k *Keys) sign(in Injected) Injected {
	if k == nil {
		return in
	}
	in.Signed = k.now().UTC().Format(time.RFC3339)
	in.MAC = hex.EncodeToString(mac(k.keys[0], in))
	return in
}

// verify reports whether in's MAC is its MAC under one of the keys.
func (k *Keys) verify(in Injected) bool {
	got, err := hex.DecodeString(in.MAC)
	if k == nil || err != nil {
		return false
	}
	for _, key := range k.keys {
		if hmac.Equal(got, mac(key, in)) {
			return true
		}
	}
	return false
}

// fresh reports whether in was signed less than Fresh ago (or ahead by
// less, a replica's clock being ahead).
func (k *Keys) fresh(in Injected) bool {
	signed, err := time.Parse(time.RFC3339, in.Signed)
	if k == nil || err != nil {
		return false
	}
	age := k.now().Sub(signed)
	return age < Fresh && age > -Fresh
}

// unverifiable is a MAC that never verifies: not hex.
const unverifiable = "-"

// Vouch rewrites a status annotation for a cache that keeps one copy of
// the Pods that hold the same (the controller's): entries signed at
// different times would make each Pod of a workload a copy of its own.
// Each signed entry keys verify is signed anew with vouched, without a
// time; each they cannot verify gets a MAC that never verifies. Unsigned
// entries are kept as they are. The copy is then classified with vouched
// in place of keys (nil with no keys), as the Pod is with keys. An
// annotation that is not a status is returned as it is.
func Vouch(value string, keys, vouched *Keys) string {
	var s Status
	if json.Unmarshal([]byte(value), &s) != nil {
		return value
	}
	for i, in := range s.Templates {
		switch {
		case in.MAC == "":
		case keys != nil && vouched != nil && keys.verify(in):
			in.Signed = ""
			in.MAC = hex.EncodeToString(mac(vouched.keys[0], in))
		default:
			in.Signed, in.MAC = "", unverifiable
		}
		s.Templates[i] = in
	}
	return s.String()
}
