package tokend

// Header segments a Verifier has accepted, remembered per key set: a signer
// uses one header per key, so most tokens repeat a header already decoded and
// checked, and only their payload and signature need checking.

import (
	"maps"
	"strings"
	"sync/atomic"
)

// maxRememberedHeaders bounds the memory: a few headers cover every key of a
// signer (the Python and Node verifiers keep as many).
const maxRememberedHeaders = 32

// rememberedHeaders maps header segments to the key they selected in keys.
// It is never changed once published; remember publishes a copy.
type rememberedHeaders struct {
	keys    *KeySet
	headers map[string]*PublicKey
}

// headerMemory is read on every Verify without a lock: one atomic load.
type headerMemory struct {
	current atomic.Pointer[rememberedHeaders]
}

// lookup returns the key that header selected with keys, or nil when header
// was not accepted with this very key set (a changed set forgets everything).
func (m *headerMemory) lookup(keys *KeySet, header string) *PublicKey {
	remembered := m.current.Load()
	if keys == nil || remembered == nil || remembered.keys != keys {
		return nil
	}
	return remembered.headers[header]
}

// remember records that header passed every header rule with keys and
// selected key. Call it only after the whole token verified up to its claims.
func (m *headerMemory) remember(keys *KeySet, header string, key *PublicKey) {
	// A few tries: losing a race only costs a header decode later.
	for range 4 {
		old := m.current.Load()
		var headers map[string]*PublicKey
		switch {
		case old == nil || old.keys != keys:
			headers = map[string]*PublicKey{}
		case old.headers[header] != nil || len(old.headers) >= maxRememberedHeaders:
			return
		default:
			headers = maps.Clone(old.headers)
		}
		// A copy: the segment would otherwise keep the whole token alive.
		headers[strings.Clone(header)] = key
		if m.current.CompareAndSwap(old, &rememberedHeaders{keys: keys, headers: headers}) {
			return
		}
	}
}

// size is the number of headers remembered for keys (for tests).
func (m *headerMemory) size(keys *KeySet) int {
	remembered := m.current.Load()
	if remembered == nil || remembered.keys != keys {
		return 0
	}
	return len(remembered.headers)
}
