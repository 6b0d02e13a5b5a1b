package bench

import (
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"sync"
)

// patternSize is deliberately not a power of two, so a relay that drops,
// repeats or reorders aligned chunks changes the stream's hash.
const patternSize = 1<<20 + 13

var pattern = sync.OnceValue(func() []byte {
	b := make([]byte, patternSize)
	r := rand.NewChaCha8([32]byte{'h', 't', 't', 'v', 'p', 's'})
	_, _ = r.Read(b)
	return b
})

// patternAt returns the bytes of the deterministic stream from offset off,
// at most n of them, as a slice of the shared pattern (read-only).
func patternAt(off int64, n int) []byte {
	p := pattern()
	i := int(off % patternSize)
	if n > patternSize-i {
		n = patternSize - i
	}
	return p[i : i+n]
}

// writePattern writes n bytes of the stream to w in pieces of at most chunk.
func writePattern(w io.Writer, n int64, chunk int) error {
	for off := int64(0); off < n; {
		c := chunk
		if rem := n - off; rem < int64(c) {
			c = int(rem)
		}
		m, err := w.Write(patternAt(off, c))
		off += int64(m)
		if err != nil {
			return err
		}
	}
	return nil
}

var (
	hashMu    sync.Mutex
	hashCache = map[int64][32]byte{}
)

// patternHash is the SHA-256 of the first n bytes of the stream.
func patternHash(n int64) [32]byte {
	hashMu.Lock()
	defer hashMu.Unlock()
	if h, ok := hashCache[n]; ok {
		return h
	}
	d := sha256.New()
	_ = writePattern(d, n, patternSize)
	var h [32]byte
	d.Sum(h[:0])
	hashCache[n] = h
	return h
}

// patternEqual reports whether b equals the stream at offset off.
func patternEqual(off int64, b []byte) bool {
	for len(b) > 0 {
		p := patternAt(off, len(b))
		if string(p) != string(b[:len(p)]) {
			return false
		}
		b = b[len(p):]
		off += int64(len(p))
	}
	return true
}
