// Package lazyaead holds one direction's record-protection AEAD together
// with its key, so that the AEAD's expanded state (an AES key schedule and
// GHASH table, about 700 bytes) can be dropped while a connection is idle
// and rebuilt before the next record. codec/tls13 and codec/tls12 use it.
package lazyaead

import (
	"crypto/cipher"
	"errors"
)

// MaxKey is the longest key kept (AES-256, ChaCha20-Poly1305).
const MaxKey = 32

// New builds an AEAD from a key (the suite's constructor).
type New func(key []byte) (cipher.AEAD, error)

var errKeyLength = errors.New("lazyaead: key longer than MaxKey")

// AEAD is live (the AEAD exists), parked (only the key is kept) or closed
// (the zero value, and after Wipe). It is not safe for concurrent use.
type AEAD struct {
	live   cipher.AEAD
	newFn  New
	parked bool
	keyLen uint8
	key    [MaxKey]byte
}

// Set builds the AEAD for key with newFn and keeps a copy of key (and newFn)
// for rebuilds. The AEAD is live afterwards.
func (a *AEAD) Set(newFn New, key []byte) error {
	if len(key) > MaxKey {
		return errKeyLength
	}
	live, err := newFn(key)
	if err != nil {
		return err
	}
	a.live, a.newFn, a.parked = live, newFn, false
	clear(a.key[:])
	a.keyLen = uint8(copy(a.key[:], key))
	return nil
}

// Park drops a live AEAD until the next Ready. It reports whether there was
// one to drop (false when already parked or closed).
func (a *AEAD) Park() bool {
	if a.live == nil {
		return false
	}
	a.live, a.parked = nil, true
	return true
}

// Ready makes the AEAD live, rebuilding it from the kept key after Park (one
// key expansion and one allocation). It returns closed (the caller's
// sentinel) when the AEAD is closed.
func (a *AEAD) Ready(closed error) error {
	if a.live != nil {
		return nil
	}
	if !a.parked {
		return closed
	}
	live, err := a.newFn(a.key[:a.keyLen])
	if err != nil {
		return err
	}
	a.live, a.parked = live, false
	return nil
}

// Live is the AEAD after a successful Ready; nil while parked or closed.
func (a *AEAD) Live() cipher.AEAD { return a.live }

// Closed reports whether the AEAD is neither live nor parked.
func (a *AEAD) Closed() bool { return a.live == nil && !a.parked }

// Parked reports whether the AEAD is parked.
func (a *AEAD) Parked() bool { return a.parked }

// Wipe zeroes the kept key and closes. The dropped AEAD's own copy of the
// key schedule is unreachable and left to the garbage collector.
func (a *AEAD) Wipe() {
	clear(a.key[:])
	a.live, a.newFn, a.parked, a.keyLen = nil, nil, false, 0
}

// Wiped reports whether the kept key is all zeros and the AEAD closed.
func (a *AEAD) Wiped() bool { return a.Closed() && a.key == [MaxKey]byte{} }
