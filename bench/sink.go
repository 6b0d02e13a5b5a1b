package bench

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Sink modes: the first byte of each stream.
const (
	ModeUpload   byte = 'U'
	ModeDownload byte = 'D'
	ModeEcho     byte = 'E'
	ModeIdle     byte = 'I'

	// idleAck is the one byte the sink sends for ModeIdle, so the client knows
	// the session reaches the upstream end to end.
	idleAck byte = 'K'

	modeHeaderSize = 9
)

// sinkDrainTimeout bounds how long the sink waits for the client's end of
// stream after its reply, and how long an upload may stall.
const sinkDrainTimeout = 30 * time.Second

var errBadMode = errors.New("bench: unknown sink mode")

// modeHeader encodes the 9-byte stream header.
func modeHeader(mode byte, n uint64) []byte {
	b := make([]byte, modeHeaderSize)
	b[0] = mode
	binary.BigEndian.PutUint64(b[1:], n)
	return b
}

// Sink is the upstream server of every scenario.
type Sink struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// Serve accepts on ln until it is closed, one goroutine per connection.
func (s *Sink) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.conns == nil {
		s.conns = map[net.Conn]struct{}{}
	}
	s.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// EMFILE and similar: back off rather than spin.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return nil
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			_ = serveSinkConn(c)
			c.Close()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// Close closes every open connection and waits for their goroutines. The
// listener is the caller's to close.
func (s *Sink) Close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func serveSinkConn(c net.Conn) error {
	var hdr [modeHeaderSize]byte
	c.SetReadDeadline(time.Now().Add(sinkDrainTimeout))
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return err
	}
	c.SetReadDeadline(time.Time{})
	n := int64(binary.BigEndian.Uint64(hdr[1:]))
	switch hdr[0] {
	case ModeUpload:
		d := sha256.New()
		buf := make([]byte, 64<<10)
		for got := int64(0); got < n; {
			c.SetReadDeadline(time.Now().Add(sinkDrainTimeout))
			m := len(buf)
			if rem := n - got; rem < int64(m) {
				m = int(rem)
			}
			k, err := c.Read(buf[:m])
			d.Write(buf[:k])
			got += int64(k)
			if err != nil {
				return fmt.Errorf("upload after %d of %d bytes: %w", got, n, err)
			}
		}
		if _, err := c.Write(d.Sum(nil)); err != nil {
			return err
		}
	case ModeDownload:
		if err := writePattern(c, n, 256<<10); err != nil {
			return err
		}
	case ModeEcho:
		_, err := io.Copy(c, c)
		return err
	case ModeIdle:
		if _, err := c.Write([]byte{idleAck}); err != nil {
			return err
		}
		// Hold until the client goes away; no deadline, the harness closes us.
		_, err := io.Copy(io.Discard, c)
		return err
	default:
		return fmt.Errorf("%w: %q", errBadMode, hdr[0])
	}
	closeWrite(c)
	c.SetReadDeadline(time.Now().Add(sinkDrainTimeout))
	_, err := io.Copy(io.Discard, c)
	return err
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}
