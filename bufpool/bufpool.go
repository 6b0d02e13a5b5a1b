// Package bufpool lends size-classed byte buffers (2, 16, 64 and 256 KiB)
// backed by one sync.Pool per class.
//
// A buffer is lent for one burst of work: take it when a socket is readable
// or a batch is ready to write, and Put it back before waiting again, so an
// idle session holds none. After Put the slice is no longer the caller's:
// any copy of it, or any subslice such as a Payload parsed from it, stops
// being valid at that moment, since the memory goes to the next Get.
//
// Debug mode (SetDebug, for tests) tracks every lent buffer and panics on a
// double Put or a Put of a buffer that did not come from Get.
package bufpool

import (
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"
)

// classes are the buffer sizes Get hands out, smallest first.
var classes = [...]int{2 << 10, 16 << 10, 64 << 10, 256 << 10}

// MaxClass is the largest class; Get of more allocates a buffer that is
// not pooled.
const MaxClass = 256 << 10

var pools [len(classes)]sync.Pool

func init() {
	for i, size := range classes {
		pools[i].New = func() any {
			b := make([]byte, size)
			return &b
		}
	}
}

// classOf returns the index of the smallest class >= n, or -1 past MaxClass.
func classOf(n int) int {
	for i, size := range classes {
		if n <= size {
			return i
		}
	}
	return -1
}

// Get returns a buffer with len == cap == the smallest class >= n (n <= 0
// gives the smallest class). For n > MaxClass it returns a fresh buffer of
// exactly n bytes; Put accepts it back but drops it rather than pool it.
// The contents are not zeroed.
func Get(n int) *[]byte {
	var b *[]byte
	if i := classOf(n); i >= 0 {
		b = pools[i].Get().(*[]byte)
	} else {
		s := make([]byte, n)
		b = &s
	}
	if debug.Load() {
		track(b)
	}
	return b
}

// Put returns b, which must come from Get, to its pool. The caller must not
// touch b or any slice of its memory afterwards. Put(nil) does nothing.
// Buffers whose capacity is not a class (those from Get(n > MaxClass)) are
// dropped.
func Put(b *[]byte) {
	if b == nil {
		return
	}
	if debug.Load() {
		untrack(b)
	}
	c := cap(*b)
	i := classOf(c)
	if i < 0 || classes[i] != c {
		return
	}
	*b = (*b)[:c]
	pools[i].Put(b)
}

var (
	debug atomic.Bool
	mu    sync.Mutex
	// lent maps each lent buffer's first byte to itself; keyed by memory
	// rather than by the *[]byte so that a re-wrapped slice is still caught.
	lent = map[*byte]struct{}{}
)

// poison fills returned buffers in debug mode so that a use after Put reads
// obvious garbage.
const poison = 0xdb

// SetDebug turns tracking on or off, forgetting buffers lent so far; call it
// before any Get, for example in TestMain. It is global to the process.
func SetDebug(on bool) {
	mu.Lock()
	defer mu.Unlock()
	debug.Store(on)
	clear(lent)
}

// Outstanding returns, in debug mode, how many buffers are lent and not yet
// returned, across the whole process; 0 when debug is off. Tests in other
// packages check it is back to zero once their sessions have ended.
func Outstanding() int {
	mu.Lock()
	defer mu.Unlock()
	return len(lent)
}

func key(b *[]byte) *byte {
	return unsafe.SliceData((*b)[:cap(*b)])
}

func track(b *[]byte) {
	mu.Lock()
	defer mu.Unlock()
	lent[key(b)] = struct{}{}
}

func untrack(b *[]byte) {
	k := key(b)
	mu.Lock()
	_, ok := lent[k]
	delete(lent, k)
	mu.Unlock()
	if !ok {
		panic(fmt.Sprintf("bufpool: Put of a buffer not lent by Get (cap %d): double Put or foreign buffer", cap(*b)))
	}
	full := (*b)[:cap(*b)]
	for i := range full {
		full[i] = poison
	}
}
