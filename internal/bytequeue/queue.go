// Package bytequeue is a byte FIFO in pooled chunks, for a stream's
// received, unread bytes (the reference client's and the bench's tunnel
// streams).
package bytequeue

import "sync"

// Chunk is the size of a Queue's pooled chunks.
const Chunk = 32 << 10

var chunkPool = sync.Pool{New: func() any { return new([Chunk]byte) }}

// Queue holds bytes in pooled chunks: appending never moves what is queued
// (a growing slice copied it again on every growth: a quarter of httvps
// connect's CPU on a native download), and a drained queue holds no
// memory. The zero value is empty and ready. Not safe for concurrent use.
type Queue struct {
	chunks   []*[Chunk]byte
	off, end int // the first chunk's read offset, the last chunk's fill
	n        int // bytes queued
}

// Len is the bytes queued.
func (q *Queue) Len() int { return q.n }

// Write queues a copy of p.
func (q *Queue) Write(p []byte) {
	for len(p) > 0 {
		if len(q.chunks) == 0 || q.end == Chunk {
			q.chunks = append(q.chunks, chunkPool.Get().(*[Chunk]byte))
			q.end = 0
		}
		k := copy(q.chunks[len(q.chunks)-1][q.end:], p)
		q.end += k
		q.n += k
		p = p[k:]
	}
}

// Read moves up to len(p) queued bytes into p and returns how many.
func (q *Queue) Read(p []byte) int {
	done := 0
	for done < len(p) && q.n > 0 {
		c := q.chunks[0]
		lim := Chunk
		if len(q.chunks) == 1 {
			lim = q.end
		}
		k := copy(p[done:], c[q.off:lim])
		done += k
		q.off += k
		q.n -= k
		if q.off == lim {
			q.drop()
		}
	}
	return done
}

// drop returns the first chunk to the pool.
func (q *Queue) drop() {
	chunkPool.Put(q.chunks[0])
	q.chunks[0] = nil
	q.chunks = q.chunks[1:]
	q.off = 0
	if len(q.chunks) == 0 {
		q.chunks, q.end = nil, 0
	}
}

// Reset drops everything queued and returns how many bytes that was.
func (q *Queue) Reset() int {
	n := q.n
	for len(q.chunks) > 0 {
		q.drop()
	}
	q.n = 0
	return n
}
