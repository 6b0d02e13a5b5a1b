package client

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/Jigsaw-Code/outline-sdk/transport/shadowsocks"
)

// Shadowsocks AEAD chunk sizes (shadowsocks.org/guide/aead.html): a chunk
// is a 2-byte length and its tag, then up to ssMaxPayload bytes and their
// tag; every cipher the client offers has a 16-byte tag.
const (
	ssMaxPayload = 0x3FFF
	ssChunkWire  = 2 + 16 + ssMaxPayload + 16
	// ssBatch is the plaintext a bulk upload reads from the application
	// with one read, and the most a download hands it with one write: 15
	// full chunks, whose ciphertext (and the salt) fits one tunnel write
	// (dataBatchMax) and one TLS batch (batchMax).
	ssBatch = 15 * ssMaxPayload
	// ssSmallRead is the read of a stream that is not (or no longer)
	// moving bulk data: an idle stream blocked in its read holds only this.
	ssSmallRead = 4 << 10
	// ssClientDataWait is how long the target address waits for the first
	// data before it goes out alone (outline-sdk's StreamDialer waits the
	// same).
	ssClientDataWait = 10 * time.Millisecond
)

// ssBufs holds the batch buffers of streams moving bulk data: plaintext
// (ssBatch) and the ciphertext gathered from it (ssGather). A stream takes
// one only while it has data in hand.
var ssBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, 256<<10)
	return &b
}}

// ssConn is one Shadowsocks stream over a Transport stream. outline-sdk's
// Writer encrypts and its Reader decrypts; ssConn chooses how they are fed:
//
//   - upload (ReadFrom, Write): what one read of the application returned
//     (up to ssBatch bytes) is chunked by the Writer into ssGather, which
//     hands the Transport stream all of its ciphertext with one Write (the
//     native tunnel sends it as one WebSocket message, one TLS write);
//   - download (WriteTo): on a Transport stream that tells how much it holds
//     (the native tunnel's), every chunk already received is decrypted into
//     one buffer and written to the application at once.
type ssConn struct {
	StreamConn // the Transport stream: ciphertext
	w          *shadowsocks.Writer
	r          shadowsocks.Reader
	g          *ssGather
	timer      *time.Timer

	wmu sync.Mutex // one upload at a time (Write, ReadFrom, CloseWrite)
}

// ssReadWaiter is a Transport stream that can wait for data without a
// buffer and tell how much it holds (tunStream).
type ssReadWaiter interface {
	readable() error
	buffered() int
}

func newSSConn(c StreamConn, key *shadowsocks.EncryptionKey, tgt []byte) (*ssConn, error) {
	g := &ssGather{w: c}
	s := &ssConn{StreamConn: c, g: g, w: shadowsocks.NewWriter(g, key), r: shadowsocks.NewReader(c, key)}
	if _, err := s.w.LazyWrite(tgt); err != nil {
		c.Close()
		return nil, fmt.Errorf("client: shadowsocks: %w", err)
	}
	// The address alone after the wait (Flush and send are safe beside a
	// writer: the Writer and ssGather serialise themselves).
	s.timer = time.AfterFunc(ssClientDataWait, func() {
		if s.w.Flush() == nil {
			s.g.send()
		}
	})
	return s, nil
}

// Write encrypts p and sends it (with the address, on the first write).
func (s *ssConn) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.writeLocked(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (s *ssConn) writeLocked(p []byte) error {
	if _, err := s.w.LazyWrite(p); err != nil {
		s.g.drop()
		return err
	}
	if err := s.w.Flush(); err != nil {
		s.g.drop()
		return err
	}
	return s.g.send()
}

// ReadFrom copies r's bytes to the stream until r's EOF. Reads start small;
// one that fills its buffer means bulk data, and the next reads take
// ssBatch bytes until one comes back short, when the batch buffer goes
// back to the pool (so a stream idle in a read holds ssSmallRead bytes).
func (s *ssConn) ReadFrom(r io.Reader) (int64, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	small := make([]byte, ssSmallRead)
	var big *[]byte
	defer func() {
		if big != nil {
			ssBufs.Put(big)
		}
	}()
	var total int64
	for {
		buf := small
		if big != nil {
			buf = (*big)[:ssBatch]
		}
		n, rerr := r.Read(buf)
		if n > 0 {
			if err := s.writeLocked(buf[:n]); err != nil {
				return total, err
			}
			total += int64(n)
		}
		switch {
		case big == nil && n == len(buf):
			big = ssBufs.Get().(*[]byte)
		case big != nil && n < len(buf):
			ssBufs.Put(big)
			big = nil
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

// CloseWrite sends what the Writer still holds (the address, if no data
// came: a FIN before it would end a stream the server never opened), then
// ends the Transport stream's write side.
func (s *ssConn) CloseWrite() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.w.Flush(); err != nil {
		return err
	}
	if err := s.g.send(); err != nil {
		return err
	}
	return s.StreamConn.CloseWrite()
}

func (s *ssConn) Close() error {
	s.timer.Stop()
	return s.StreamConn.Close()
}

func (s *ssConn) Read(p []byte) (int, error) { return s.r.Read(p) }

// WriteTo copies the stream's plaintext to w until the stream's EOF. On a
// Transport stream that can wait for data (the native tunnel's), it waits
// holding no buffer, then decrypts the first chunk and every further one
// already received whole (ssChunkWire bytes held: the next Read cannot
// block) into one batch, and writes it with one Write.
func (s *ssConn) WriteTo(w io.Writer) (int64, error) {
	src, ok := s.StreamConn.(ssReadWaiter)
	if !ok {
		return s.r.WriteTo(w)
	}
	var total int64
	for {
		if err := src.readable(); err != nil {
			return total, err
		}
		bp := ssBufs.Get().(*[]byte)
		buf := (*bp)[:ssBatch]
		n, rerr := s.r.Read(buf) // the first chunk: may wait for its end
		for rerr == nil && len(buf)-n >= ssMaxPayload && src.buffered() >= ssChunkWire {
			var k int
			k, rerr = s.r.Read(buf[n:])
			n += k
		}
		var werr error
		if n > 0 {
			var m int
			m, werr = w.Write(buf[:n])
			total += int64(m)
		}
		ssBufs.Put(bp)
		switch {
		case werr != nil:
			return total, werr
		case rerr == io.EOF:
			return total, nil
		case rerr != nil:
			return total, rerr
		}
	}
}

// ssGather collects the chunks the Writer emits for one batch and passes
// them on to the Transport stream with one Write. Its buffer comes from
// ssBufs and goes back after each send.
type ssGather struct {
	mu  sync.Mutex
	w   io.Writer
	buf *[]byte
}

// Write is the Writer's output: one encrypted chunk (the first with the
// salt) at a time.
func (g *ssGather) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.buf == nil {
		g.buf = ssBufs.Get().(*[]byte)
	}
	if len(*g.buf)+len(p) > cap(*g.buf) {
		if err := g.sendLocked(); err != nil {
			return 0, err
		}
		g.buf = ssBufs.Get().(*[]byte)
	}
	*g.buf = append(*g.buf, p...)
	return len(p), nil
}

// send writes what was gathered.
func (g *ssGather) send() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sendLocked()
}

func (g *ssGather) sendLocked() error {
	if g.buf == nil {
		return nil
	}
	var err error
	if len(*g.buf) > 0 {
		_, err = g.w.Write(*g.buf)
	}
	*g.buf = (*g.buf)[:0]
	ssBufs.Put(g.buf)
	g.buf = nil
	return err
}

// drop forgets what was gathered (the write failed: the stream is broken).
func (g *ssGather) drop() {
	g.mu.Lock()
	if g.buf != nil {
		*g.buf = (*g.buf)[:0]
		ssBufs.Put(g.buf)
		g.buf = nil
	}
	g.mu.Unlock()
}

// socksAddr encodes "host:port" as a SOCKS5 address (RFC 1928 section 5),
// the form Shadowsocks sends its target in: an IPv4 or IPv6 literal as
// such, anything else as a domain name of at most 255 bytes.
func socksAddr(addr string) ([]byte, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("client: target address %q: %w", addr, err)
	}
	pn, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("client: target address %q: bad port", addr)
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Zone() != "" {
		return nil, fmt.Errorf("client: target address %q: a zoned IP has no SOCKS5 form", addr)
	} else if err != nil && (len(host) == 0 || len(host) > 255) {
		return nil, errors.New("client: target host name empty or longer than 255 bytes")
	}
	return appendSOCKSAddr(nil, host, uint16(pn)), nil
}
