package testpeer

import (
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// ChunkMode says how a ChunkConn cuts what is written to it.
type ChunkMode int

const (
	// ChunkPass writes every Write through as it is.
	ChunkPass ChunkMode = iota
	// ChunkEveryBoundary writes each Write (one TLS record from crypto/tls)
	// in two pieces with a pause between them; the cut moves one byte further
	// on every Write, so a run of len-1 equal-size records is cut at every
	// boundary once.
	ChunkEveryBoundary
	// ChunkBytewise writes one byte at a time with a pause after each.
	ChunkBytewise
	// ChunkRandom cuts at random places (1 byte to 40 KiB), with a short
	// pause now and then.
	ChunkRandom
	// ChunkCoalesce holds writes and sends them in one write once
	// CoalesceRecords writes are held, or at Flush.
	ChunkCoalesce
)

// ChunkConn is a net.Conn that re-cuts the bytes written to it: put under a
// tls.Conn it controls where record boundaries fall in the TCP stream, and
// with pauses, in the receiver's reads.
type ChunkConn struct {
	net.Conn
	// Pause is the sleep between pieces (ChunkEveryBoundary, ChunkBytewise).
	// 0 means 1 ms.
	Pause time.Duration
	// CoalesceRecords is how many writes ChunkCoalesce holds. 0 means 64.
	CoalesceRecords int

	mu     sync.Mutex // guards what follows; serialises writes
	mode   ChunkMode
	cut    int
	held   []byte
	heldN  int
	rnd    *rand.Rand
	pieces int
}

// Pieces is the number of writes made on the underlying connection.
func (c *ChunkConn) Pieces() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pieces
}

// NewChunkConn wraps c; seed makes ChunkRandom's cuts reproducible.
func NewChunkConn(c net.Conn, seed uint64) *ChunkConn {
	return &ChunkConn{Conn: c, rnd: rand.New(rand.NewPCG(seed, 7))}
}

// SetMode flushes what is held and switches to m.
func (c *ChunkConn) SetMode(m ChunkMode) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.flushLocked()
	c.mode, c.cut = m, 0
	return err
}

// Flush sends what ChunkCoalesce holds.
func (c *ChunkConn) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flushLocked()
}

func (c *ChunkConn) flushLocked() error {
	if len(c.held) == 0 {
		return nil
	}
	b := c.held
	c.held, c.heldN = nil, 0
	return c.put(b)
}

func (c *ChunkConn) put(b []byte) error {
	c.pieces++
	_, err := c.Conn.Write(b)
	return err
}

func (c *ChunkConn) pause() {
	d := c.Pause
	if d == 0 {
		d = time.Millisecond
	}
	time.Sleep(d)
}

func (c *ChunkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var err error
	switch c.mode {
	case ChunkPass:
		err = c.put(p)
	case ChunkEveryBoundary:
		if len(p) < 2 {
			err = c.put(p)
			break
		}
		k := 1 + c.cut%(len(p)-1)
		c.cut++
		if err = c.put(p[:k]); err == nil {
			c.pause()
			err = c.put(p[k:])
		}
	case ChunkBytewise:
		for i := 0; i < len(p) && err == nil; i++ {
			err = c.put(p[i : i+1])
			c.pause()
		}
	case ChunkRandom:
		for q := p; len(q) > 0 && err == nil; {
			var k int
			switch c.rnd.IntN(4) {
			case 0:
				k = 1 + c.rnd.IntN(8)
			case 1:
				k = 1 + c.rnd.IntN(64)
			default:
				k = 1 + c.rnd.IntN(40<<10)
			}
			k = min(k, len(q))
			err = c.put(q[:k])
			q = q[k:]
			if c.rnd.IntN(16) == 0 {
				time.Sleep(100 * time.Microsecond)
			}
		}
	case ChunkCoalesce:
		c.held = append(c.held, p...)
		c.heldN++
		n := c.CoalesceRecords
		if n == 0 {
			n = 64
		}
		if c.heldN >= n {
			err = c.flushLocked()
		}
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}
