package bytequeue

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestQueue: random pushes (slices of reader Bufs, as a tunnel's reader
// queues them), writes and reads of random sizes return the bytes queued,
// in order; every reader Buf is released once the reader and the queue are
// done with it; a queue never holds slices of more than MaxShared Bufs; a drained
// or reset queue holds nothing.
func TestQueue(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	pool := NewPool(64 << 10)
	var bufs []*Buf
	newBuf := func() *Buf {
		b := pool.Get()
		bufs = append(bufs, b)
		return b
	}
	var q Queue
	var want, got []byte
	rb, pos := newBuf(), 0
	for i := range 5000 {
		switch r.IntN(3) {
		case 0: // the reader: a payload in its current Buf
			if len(rb.B)-pos < 16<<10 {
				rb.Release()
				rb, pos = newBuf(), 0
			}
			p := rb.B[pos : pos+r.IntN(16<<10)]
			for j := range p {
				p[j] = byte(i + j)
			}
			pos += len(p)
			q.Push(rb, p)
			want = append(want, p...)
		case 1:
			p := make([]byte, r.IntN(3*Chunk))
			for j := range p {
				p[j] = byte(i * j)
			}
			q.Write(p)
			want = append(want, p...)
		default:
			if r.IntN(4) == 0 {
				p, b := q.Take()
				got = append(got, p...)
				if b != nil {
					b.Release()
				}
				break
			}
			p := make([]byte, r.IntN(3*Chunk))
			n := q.Read(p)
			got = append(got, p[:n]...)
		}
		if q.Len() != len(want)-len(got) {
			t.Fatalf("step %d: Len %d, want %d", i, q.Len(), len(want)-len(got))
		}
		// Runs of slices of one shared Buf: each counts (a Buf in two runs
		// twice), so the Bufs pinned are at most the count.
		runs := 0
		for j, s := range q.segs {
			if !s.own && (j == 0 || q.segs[j-1].b != s.b) {
				runs++
			}
		}
		if q.shared != runs || q.shared > MaxShared {
			t.Fatalf("step %d: %d runs of shared slices queued, counted %d, limit %d", i, runs, q.shared, MaxShared)
		}
	}
	rest := make([]byte, q.Len())
	got = append(got, rest[:q.Read(rest)]...)
	if !bytes.Equal(got, want) {
		t.Fatal("bytes read differ from bytes queued")
	}
	if q.Len() != 0 || q.segs != nil || q.shared != 0 {
		t.Fatalf("drained queue holds %d bytes, %d segments, %d shared", q.Len(), len(q.segs), q.shared)
	}
	rb.Release()
	for i, b := range bufs {
		if n := b.refs.Load(); n != 0 {
			t.Fatalf("reader Buf %d of %d still has %d references", i, len(bufs), n)
		}
	}
	q.Write(make([]byte, 100000))
	b := pool.Get()
	q.Push(b, b.B[:MinShared])
	b.Release()
	if n := q.Reset(); n != 100000+MinShared || q.segs != nil || q.Len() != 0 || b.refs.Load() != 0 {
		t.Fatalf("Reset: %d, %d segments left, Buf refs %d", n, len(q.segs), b.refs.Load())
	}
}

// TestQueueCopiesSmall: a payload below MinShared is copied, so the
// reader's Buf is free once the reader lets go of it.
func TestQueueCopiesSmall(t *testing.T) {
	pool := NewPool(64 << 10)
	b := pool.Get()
	copy(b.B, "hello")
	var q Queue
	q.Push(b, b.B[:5])
	if n := b.refs.Load(); n != 1 {
		t.Fatalf("a 5-byte payload took a reference: refs %d", n)
	}
	b.Release()
	copy(b.B, "XXXXX") // the Buf reused
	p := make([]byte, 8)
	if n := q.Read(p); string(p[:n]) != "hello" {
		t.Fatalf("read %q", p[:n])
	}
}
