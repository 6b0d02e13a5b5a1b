package bytequeue

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestQueue: random writes and reads of random sizes return the bytes
// written, in order; a drained or reset queue holds no chunk.
func TestQueue(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var q Queue
	var want, got []byte
	for i := range 5000 {
		if r.IntN(2) == 0 {
			p := make([]byte, r.IntN(3*Chunk))
			for j := range p {
				p[j] = byte(i + j)
			}
			q.Write(p)
			want = append(want, p...)
		} else {
			p := make([]byte, r.IntN(3*Chunk))
			n := q.Read(p)
			got = append(got, p[:n]...)
		}
		if q.Len() != len(want)-len(got) {
			t.Fatalf("step %d: Len %d, want %d", i, q.Len(), len(want)-len(got))
		}
	}
	rest := make([]byte, q.Len())
	got = append(got, rest[:q.Read(rest)]...)
	if !bytes.Equal(got, want) {
		t.Fatal("bytes read differ from bytes written")
	}
	if q.Len() != 0 || q.chunks != nil {
		t.Fatalf("drained queue holds %d bytes, %d chunks", q.Len(), len(q.chunks))
	}
	q.Write(make([]byte, 100000))
	if n := q.Reset(); n != 100000 || q.chunks != nil || q.Len() != 0 {
		t.Fatalf("Reset: %d, %d chunks left", n, len(q.chunks))
	}
}
