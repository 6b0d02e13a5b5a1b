// Package bytequeue is a byte FIFO for a stream's received, unread bytes
// (the reference client's and the bench's tunnel streams), holding them
// where the tunnel's reader read them when it can.
//
// A tunnel's reader reads the WebSocket into a pooled Buf and queues each
// DATA payload on its stream as a slice of that Buf (Push): the kernel's
// copy into the Buf is the only one until the application reads, as for a
// stream with a socket of its own. A Buf goes back to its pool when the
// reader and every slice of it are done with it. So that a slow stream
// cannot pin many Bufs with a few bytes each, a queue holds slices of at
// most MaxShared Bufs and copies the rest into chunks of its own (Write),
// which hold only its bytes.
package bytequeue

import (
	"sync"
	"sync/atomic"
)

const (
	// Chunk is the size of the chunks a Queue copies bytes into.
	Chunk = 32 << 10
	// MaxShared is the most shared Bufs one queue holds slices of: with
	// the client's 64 KiB read Bufs a stream pins at most 1 MiB of them
	// (one stream window) beyond the chunks of its own.
	MaxShared = 16
	// MinShared is the smallest payload queued as a slice: a smaller one
	// is copied, so a Buf is never pinned by a few bytes.
	MinShared = 2 << 10
)

// Pool hands out Bufs of one size.
type Pool struct {
	size int
	p    sync.Pool
}

// NewPool returns a pool of Bufs of size bytes.
func NewPool(size int) *Pool { return &Pool{size: size} }

// Get returns a Buf with one reference, the caller's.
func (p *Pool) Get() *Buf {
	b, _ := p.p.Get().(*Buf)
	if b == nil {
		b = &Buf{B: make([]byte, p.size), pool: p}
	}
	b.refs.Store(1)
	return b
}

// Buf is a pooled buffer whose bytes slices in queues share. refs counts
// its holders (the reader while it reads into it, and every queued slice);
// the last Release returns it to its pool.
type Buf struct {
	B    []byte
	refs atomic.Int32
	pool *Pool
}

// Release drops one reference.
func (b *Buf) Release() {
	if b.refs.Add(-1) == 0 {
		b.pool.p.Put(b)
	}
}

var chunks = NewPool(Chunk)

// seg is a queued slice p of b; own: b is a chunk of this queue's (only p
// refers to it, and p may grow to b's end); pin: p is the first queued
// slice of a shared b (the one that counts b in Queue.shared).
type seg struct {
	b   *Buf
	p   []byte
	own bool
	pin bool
}

// Queue holds a stream's bytes in order: appending never moves what is
// queued, and a drained queue holds no memory. The zero value is empty and
// ready. Not safe for concurrent use.
type Queue struct {
	segs   []seg
	n      int // bytes queued
	shared int // shared Bufs the segs are slices of (segs with pin)
}

// Len is the bytes queued.
func (q *Queue) Len() int { return q.n }

// Push queues p, a slice of b: as a slice (taking a reference to b) if p
// is at least MinShared long and b is the Buf of the last queued slice or
// the queue holds slices of fewer than MaxShared Bufs; else as a copy. A
// reader fills its Bufs in order, so the slices of one Buf queued on a
// stream follow each other.
func (q *Queue) Push(b *Buf, p []byte) {
	last := len(q.segs) - 1
	again := last >= 0 && q.segs[last].b == b
	if len(p) < MinShared || !again && q.shared >= MaxShared {
		q.Write(p)
		return
	}
	b.refs.Add(1)
	q.segs = append(q.segs, seg{b: b, p: p, pin: !again})
	if !again {
		q.shared++
	}
	q.n += len(p)
}

// Write queues a copy of p, in chunks of the queue's own.
func (q *Queue) Write(p []byte) {
	q.n += len(p)
	for len(p) > 0 {
		if i := len(q.segs) - 1; i >= 0 && q.segs[i].own && len(q.segs[i].p) < cap(q.segs[i].p) {
			s := &q.segs[i]
			l := len(s.p)
			k := copy(s.p[l:cap(s.p)], p)
			s.p = s.p[:l+k]
			p = p[k:]
			continue
		}
		c := chunks.Get()
		q.segs = append(q.segs, seg{b: c, p: c.B[:0], own: true})
	}
}

// Read moves up to len(p) queued bytes into p and returns how many.
func (q *Queue) Read(p []byte) int {
	done := 0
	for done < len(p) && len(q.segs) > 0 {
		s := &q.segs[0]
		k := copy(p[done:], s.p)
		done += k
		s.p = s.p[k:]
		if len(s.p) == 0 {
			q.pop().Release()
		}
	}
	q.n -= done
	return done
}

// Take removes the first queued slice and returns it with its Buf, which
// the caller releases once done with the bytes; nil if the queue is empty.
func (q *Queue) Take() ([]byte, *Buf) {
	if len(q.segs) == 0 {
		return nil, nil
	}
	p := q.segs[0].p
	q.n -= len(p)
	return p, q.pop()
}

// pop removes the first segment and returns its Buf (the queue's
// reference to it).
func (q *Queue) pop() *Buf {
	s := q.segs[0]
	q.segs[0] = seg{}
	q.segs = q.segs[1:]
	if s.pin {
		if len(q.segs) > 0 && q.segs[0].b == s.b {
			q.segs[0].pin = true // the next slice of b counts it now
		} else {
			q.shared--
		}
	}
	if len(q.segs) == 0 {
		q.segs = nil
	}
	return s.b
}

// Reset drops everything queued and returns how many bytes that was.
func (q *Queue) Reset() int {
	n := q.n
	for len(q.segs) > 0 {
		q.pop().Release()
	}
	q.n = 0
	return n
}
