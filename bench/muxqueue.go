package bench

import (
	"sync"
	"sync/atomic"
)

// The tunnel client's receive side copies nothing in user space: its reader
// reads the WebSocket into an rxChunk, and each DATA payload in it is queued
// on its stream as a slice of the chunk; a download hashes the slices where
// they lie (readChunks). The kernel's copy into the chunk is the only one,
// as for a stream with a socket of its own, so the client costs the tunnel
// no more per byte than separate connections (on a 2-core machine the
// client's CPU decides the MB/s of every peer).
const (
	rxChunkSize = 256 << 10
	// rxMinRead: a chunk with less room than this is left to its slices
	// and the reader starts a new one.
	rxMinRead = 64 << 10
)

// rxChunk is one read buffer of the tunnel's reader. refs counts the
// reader's hold and every queued slice of it; the last release returns it
// to the pool. A slow stream pins the chunks its unread slices are in; the
// streams' windows bound what they hold unread.
type rxChunk struct {
	b    [rxChunkSize]byte
	refs atomic.Int32
}

var rxPool = sync.Pool{New: func() any { return new(rxChunk) }}

func newRxChunk() *rxChunk {
	c := rxPool.Get().(*rxChunk)
	c.refs.Store(1)
	return c
}

func (c *rxChunk) release() {
	if c.refs.Add(-1) == 0 {
		rxPool.Put(c)
	}
}

// rxSeg is a queued slice of a chunk.
type rxSeg struct {
	c *rxChunk
	b []byte
}

// rxQueue is a stream's received, unread bytes. Guarded by the tunnel's mu.
type rxQueue struct {
	segs []rxSeg
	n    int
}

func (q *rxQueue) Len() int { return q.n }

// push queues b, a slice of c, taking a reference to c.
func (q *rxQueue) push(c *rxChunk, b []byte) {
	c.refs.Add(1)
	q.segs = append(q.segs, rxSeg{c, b})
	q.n += len(b)
}

// Read moves up to len(p) queued bytes into p.
func (q *rxQueue) Read(p []byte) int {
	done := 0
	for done < len(p) && len(q.segs) > 0 {
		s := &q.segs[0]
		k := copy(p[done:], s.b)
		done += k
		s.b = s.b[k:]
		if len(s.b) == 0 {
			q.pop().c.release()
		}
	}
	q.n -= done
	return done
}

// take removes the first slice; the caller releases its chunk once done
// with it.
func (q *rxQueue) take() rxSeg {
	s := q.pop()
	q.n -= len(s.b)
	return s
}

func (q *rxQueue) pop() rxSeg {
	s := q.segs[0]
	q.segs[0] = rxSeg{}
	q.segs = q.segs[1:]
	if len(q.segs) == 0 {
		q.segs = nil
	}
	return s
}

// Reset drops everything queued and returns how many bytes that was.
func (q *rxQueue) Reset() int {
	n := q.n
	for len(q.segs) > 0 {
		q.pop().c.release()
	}
	q.n = 0
	return n
}
