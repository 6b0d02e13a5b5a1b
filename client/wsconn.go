package client

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// wsHeaderRoom is the most bytes a masked client frame header takes
// (2 + 8 length + 4 mask): writeReserved callers leave this much room.
const wsHeaderRoom = 14

// wsMaskChunk is how much of a caller's payload is masked per write when it
// cannot be masked in place.
const wsMaskChunk = 32 << 10

// WSConn is the client end of a WebSocket to a gateway.
//
// Reads (Read, ReadMessage) are for one goroutine at a time; writes may
// come from several goroutines and are serialised (one frame at a time).
// Pings from the gateway are answered with pongs (the latest ping's, sent
// from a goroutine of their own: a blocked writer never stalls reading). A close
// frame from the gateway ends reading — with io.EOF for 1000 or no code, a
// *CloseError otherwise — and is not echoed at once: on the Outline paths
// the client may still send, and its own close goes out with WriteClose
// (or Close). When both closes have passed, the TCP connection is closed.
type WSConn struct {
	conn net.Conn
	// batch, under a TLS conn, gathers the TLS records of one frame into
	// one write (tlsbatch.go); nil without TLS.
	batch      *batchConn
	maxMessage int64
	writeChunk int

	rmu sync.Mutex // guards the fields below: owned by the current reader
	br  *bufio.Reader
	// remain is the payload left in the current data frame; fin says
	// whether that frame ends its message; inMsg whether a message is
	// open; msgLen the payload of the open message so far.
	remain int64
	fin    bool
	inMsg  bool
	msgLen int64
	rerr   error // sticky: the read side's end
	ctl    [125]byte

	wmu  sync.Mutex // guards the fields below and every write to conn
	wbuf []byte     // masking scratch, allocated at the first unreserved write
	rng  *mrand.ChaCha8
	werr error // sticky: a write that failed may have left a frame half-sent
	pong [wsHeaderRoom + 125]byte
	// sentClose: a close frame went out (set under wmu; read anywhere, so
	// the reader never waits on wmu for it).
	sentClose atomic.Bool

	// The latest ping's payload, waiting for its pong. The reader never
	// writes (it would wait behind a blocked writer): it leaves the payload
	// here and one goroutine at a time (ponging) sends it.
	pmu     sync.Mutex
	pongP   [125]byte
	pongN   int
	pongDue bool
	ponging atomic.Bool

	gotClose atomic.Bool // a close frame arrived
	closed   atomic.Bool // Close was called
}

func newWSConn(conn net.Conn, br *bufio.Reader, o WSOptions) *WSConn {
	var seed [32]byte
	rand.Read(seed[:])
	c := &WSConn{
		conn:       conn,
		br:         wsReader(conn, br),
		maxMessage: int64(o.MaxMessage),
		writeChunk: o.WriteChunk,
		rng:        mrand.NewChaCha8(seed),
	}
	if c.maxMessage <= 0 {
		c.maxMessage = DefaultWSMaxMessage
	}
	if c.writeChunk <= 0 {
		c.writeChunk = DefaultWSWriteChunk
	}
	return c
}

// Read reads the payload of the gateway's binary messages, concatenated
// (message boundaries are dropped). It returns io.EOF after a close 1000,
// a *CloseError after another close, io.ErrUnexpectedEOF if the TCP
// connection ends without a close frame.
func (c *WSConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if len(p) == 0 {
		return 0, nil
	}
	for c.remain == 0 {
		if c.rerr != nil {
			return 0, c.rerr
		}
		if err := c.nextFrame(); err != nil {
			return 0, err
		}
	}
	n, err := c.br.Read(p[:min(int64(len(p)), c.remain)])
	c.remain -= int64(n)
	if err != nil {
		if isDeadline(err) {
			return n, err // nothing half-read: the next Read goes on
		}
		return n, c.readFailed(err)
	}
	return n, nil
}

// isDeadline reports a read deadline: not an end of the connection, as long
// as no frame was left half-read.
func isDeadline(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// ReadMessage reads the next whole binary message into p and returns its
// length. A message longer than p is cut to len(p), the rest dropped (as a
// UDP socket does with a datagram).
func (c *WSConn) ReadMessage(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	// Drop what is left of a message a Read left unfinished.
	for c.remain > 0 || c.inMsg {
		if err := c.skipFrame(); err != nil {
			return 0, err
		}
	}
	n := 0
	for started := false; ; started = true {
		if c.rerr != nil {
			return 0, c.rerr
		}
		if err := c.nextFrame(); err != nil {
			if started && isDeadline(err) {
				c.rerr = err // a message half-read cannot be resumed
			}
			return 0, err
		}
		k, err := io.ReadFull(c.br, p[n:min(int64(len(p)), int64(n)+c.remain)])
		n += k
		c.remain -= int64(k)
		if err != nil {
			return 0, c.readFailed(err)
		}
		if c.remain > 0 {
			if _, err := c.br.Discard(int(c.remain)); err != nil {
				return 0, c.readFailed(err)
			}
			c.remain = 0
		}
		if c.fin {
			return n, nil
		}
	}
}

func (c *WSConn) skipFrame() error {
	if c.remain == 0 {
		if c.rerr != nil {
			return c.rerr
		}
		return c.nextFrame()
	}
	k, err := c.br.Discard(int(c.remain))
	c.remain -= int64(k)
	if err != nil {
		return c.readFailed(err)
	}
	return nil
}

// readFailed records a transport error of the read side.
func (c *WSConn) readFailed(err error) error {
	switch {
	case c.closed.Load():
		err = ErrWSClosed
	case errors.Is(err, io.EOF):
		err = io.ErrUnexpectedEOF
	}
	c.rerr = err
	return err
}

// nextFrame reads frame headers, handling control frames, until a data
// frame starts (remain, fin set; remain may be 0) or the read side ends.
// Every length is checked before its payload is read.
func (c *WSConn) nextFrame() error {
	for {
		h, err := c.peekHeader()
		if err != nil {
			if isDeadline(err) {
				return err // nothing consumed
			}
			return c.readFailed(err)
		}
		if h.Rsv != 0 || h.Masked {
			return c.fail(ws.StatusProtocolError, fmt.Errorf("%w: reserved bits or mask on a server frame", ErrWSProtocol))
		}
		if h.OpCode.IsControl() {
			if !h.Fin || h.Length > 125 {
				return c.fail(ws.StatusProtocolError, fmt.Errorf("%w: fragmented or long control frame", ErrWSProtocol))
			}
			// Peeked whole, then consumed: a deadline never splits it.
			b, err := c.br.Peek(int(h.Length))
			if err != nil {
				if isDeadline(err) {
					return err
				}
				return c.readFailed(err)
			}
			p := c.ctl[:h.Length]
			copy(p, b)
			c.br.Discard(len(b))
			if err := c.control(h.OpCode, p); err != nil {
				return err
			}
			continue
		}
		switch h.OpCode {
		case ws.OpBinary:
			if c.inMsg {
				return c.fail(ws.StatusProtocolError, fmt.Errorf("%w: new message inside a fragmented one", ErrWSProtocol))
			}
			c.msgLen = 0
		case ws.OpContinuation:
			if !c.inMsg {
				return c.fail(ws.StatusProtocolError, fmt.Errorf("%w: continuation without a message", ErrWSProtocol))
			}
		case ws.OpText:
			return c.fail(ws.StatusUnsupportedData, fmt.Errorf("%w: text message", ErrWSProtocol))
		default:
			return c.fail(ws.StatusProtocolError, fmt.Errorf("%w: opcode %d", ErrWSProtocol, h.OpCode))
		}
		if h.Length > c.maxMessage-c.msgLen {
			return c.fail(ws.StatusMessageTooBig, fmt.Errorf("%w: %d bytes, limit %d", ErrWSTooLarge, c.msgLen+h.Length, c.maxMessage))
		}
		c.msgLen += h.Length
		c.remain, c.fin, c.inMsg = h.Length, h.Fin, !h.Fin
		return nil
	}
}

// peekHeader decodes the next frame header from the buffered reader and
// consumes it only once it is whole, so a read deadline in the middle
// leaves the connection usable. A length with its top bit set is a protocol
// error.
func (c *WSConn) peekHeader() (ws.Header, error) {
	var h ws.Header
	b, err := c.br.Peek(2)
	if err != nil {
		return h, err
	}
	n := 2
	switch b[1] & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b[1]&0x80 != 0 {
		n += 4
	}
	if b, err = c.br.Peek(n); err != nil {
		return h, err
	}
	h.Fin, h.Rsv, h.OpCode = b[0]&0x80 != 0, (b[0]>>4)&7, ws.OpCode(b[0]&0x0f)
	h.Masked = b[1]&0x80 != 0
	switch l := b[1] & 0x7f; l {
	case 126:
		h.Length = int64(binary.BigEndian.Uint16(b[2:]))
	case 127:
		v := binary.BigEndian.Uint64(b[2:])
		if v>>63 != 0 {
			return h, c.fail(ws.StatusProtocolError, fmt.Errorf("%w: frame length with its top bit set", ErrWSProtocol))
		}
		h.Length = int64(v)
	default:
		h.Length = int64(l)
	}
	c.br.Discard(n)
	return h, nil
}

func (c *WSConn) control(op ws.OpCode, p []byte) error {
	switch op {
	case ws.OpPing:
		// Only the latest ping needs its pong (RFC 6455 5.5.3).
		c.pmu.Lock()
		c.pongN = copy(c.pongP[:], p)
		c.pongDue = true
		c.pmu.Unlock()
		if c.ponging.CompareAndSwap(false, true) {
			go c.sendPongs()
		}
		return nil
	case ws.OpPong:
		return nil
	}
	// Close.
	code, reason := uint16(1005), ""
	switch {
	case len(p) == 1:
		return c.fail(ws.StatusProtocolError, fmt.Errorf("%w: one-byte close payload", ErrWSProtocol))
	case len(p) >= 2:
		code = binary.BigEndian.Uint16(p)
		if utf8.Valid(p[2:]) {
			reason = string(p[2:])
		}
	}
	c.gotClose.Store(true)
	if code == 1000 || code == 1005 {
		c.rerr = io.EOF
		if c.sentClose.Load() {
			c.conn.Close()
		}
		return io.EOF
	}
	// Any other code aborts both directions: echo it and hang up.
	c.rerr = &CloseError{Code: code, Reason: reason}
	c.abort(code)
	return c.rerr
}

// sendPongs sends the pending pong, and the next while another ping came
// in meanwhile; it runs on its own goroutine, so a writer blocked on a
// full socket holds up pongs, never the reader. A failed write is sticky
// (werr): the connection's next write reports it.
func (c *WSConn) sendPongs() {
	for {
		c.wmu.Lock()
		c.pmu.Lock()
		if !c.pongDue {
			// Cleared under pmu: a ping that arrives after this starts a
			// new sender; one that arrived before was seen here.
			c.ponging.Store(false)
			c.pmu.Unlock()
			c.wmu.Unlock()
			return
		}
		n := copy(c.pong[wsHeaderRoom:], c.pongP[:c.pongN])
		c.pongDue = false
		c.pmu.Unlock()
		if !c.sentClose.Load() {
			c.writeFrameLocked(ws.OpPong, c.pong[:wsHeaderRoom+n])
		}
		c.wmu.Unlock()
	}
}

// fail ends the connection because of the gateway's frames: a close with
// code (best effort), then the TCP close.
func (c *WSConn) fail(code ws.StatusCode, err error) error {
	c.rerr = err
	c.abort(uint16(code))
	return err
}

// abort sends a close with code unless a writer holds the connection or a
// close went out already, then closes the socket; it never waits for a
// blocked writer.
func (c *WSConn) abort(code uint16) {
	if c.wmu.TryLock() {
		if !c.sentClose.Load() {
			c.sentClose.Store(true)
			c.conn.SetWriteDeadline(time.Now().Add(time.Second))
			c.writeCloseLocked(code)
		}
		c.wmu.Unlock()
	} else if c.batch != nil {
		// A writer may be blocked sending a gathered batch: closing the
		// TCP connection first unblocks it (crypto/tls's Close would wait
		// for it to send its close_notify).
		c.batch.Conn.Close()
	}
	c.conn.Close()
}

// Write sends p as binary messages of at most WriteChunk bytes each.
func (c *WSConn) Write(p []byte) (int, error) {
	n := 0
	for {
		k := min(len(p)-n, c.writeChunk)
		if err := c.WriteMessage(p[n : n+k]); err != nil {
			return n, err
		}
		n += k
		if n == len(p) {
			return n, nil
		}
	}
}

// WriteMessage sends p as one binary message (one frame). p is not modified.
func (c *WSConn) WriteMessage(p []byte) (err error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.sentClose.Load() {
		return ErrWSWriteClosed
	}
	if c.werr != nil {
		return c.werr
	}
	if c.wbuf == nil {
		c.wbuf = make([]byte, wsHeaderRoom+wsMaskChunk)
	}
	mask := c.mask()
	hn := putClientHeader(c.wbuf, ws.OpBinary, int64(len(p)), mask)
	off := 0
	b := c.wbuf[:hn]
	if c.batch != nil {
		c.batch.begin()
		defer func() {
			if ferr := c.batch.end(); ferr != nil && err == nil {
				err = c.writeFailed(ferr)
			}
		}()
	}
	for {
		k := min(len(p)-off, len(c.wbuf)-len(b))
		chunk := c.wbuf[len(b) : len(b)+k]
		copy(chunk, p[off:off+k])
		ws.Cipher(chunk, mask, off)
		b = c.wbuf[:len(b)+k]
		off += k
		if _, err := c.conn.Write(b); err != nil {
			return c.writeFailed(err)
		}
		if off == len(p) {
			return nil
		}
		b = c.wbuf[:0]
	}
}

// writeReserved sends b[wsHeaderRoom:] as one binary message, masking it in
// place and writing the header into b[:wsHeaderRoom]: one write, no copy.
func (c *WSConn) writeReserved(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.sentClose.Load() {
		return ErrWSWriteClosed
	}
	return c.writeFrameLocked(ws.OpBinary, b)
}

func (c *WSConn) writeFrameLocked(op ws.OpCode, b []byte) error {
	if c.werr != nil {
		return c.werr
	}
	payload := b[wsHeaderRoom:]
	mask := c.mask()
	var hdr [wsHeaderRoom]byte
	hn := putClientHeader(hdr[:], op, int64(len(payload)), mask)
	start := wsHeaderRoom - hn
	copy(b[start:], hdr[:hn])
	ws.Cipher(payload, mask, 0)
	if c.batch == nil {
		if _, err := c.conn.Write(b[start:]); err != nil {
			return c.writeFailed(err)
		}
		return nil
	}
	c.batch.begin()
	_, err := c.conn.Write(b[start:])
	if ferr := c.batch.end(); err == nil {
		err = ferr
	}
	if err != nil {
		return c.writeFailed(err)
	}
	return nil
}

func (c *WSConn) writeFailed(err error) error {
	if c.closed.Load() {
		err = ErrWSClosed
	}
	c.werr = err
	return err
}

// WriteClose sends a close frame with code (1000: end of this side's
// stream) once; later writes fail with ErrWSWriteClosed. If the gateway's
// close has arrived already, the TCP connection is closed too.
func (c *WSConn) WriteClose(code uint16) error {
	c.wmu.Lock()
	if c.sentClose.Load() {
		c.wmu.Unlock()
		return nil
	}
	c.sentClose.Store(true)
	err := c.writeCloseLocked(code)
	c.wmu.Unlock()
	if c.gotClose.Load() {
		c.conn.Close()
	}
	return err
}

func (c *WSConn) writeCloseLocked(code uint16) error {
	var b [wsHeaderRoom + 2]byte
	binary.BigEndian.PutUint16(b[wsHeaderRoom:], code)
	return c.writeFrameLocked(ws.OpClose, b[:])
}

// Close closes the connection: a close 1000 first if none was sent (best
// effort, bounded by one second, skipped while a write is blocked), then the
// TCP connection. Blocked reads and writes return ErrWSClosed.
func (c *WSConn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	c.abort(1000)
	return nil
}

// mask returns a fresh masking key (RFC 6455 5.3: unpredictable; ChaCha8
// seeded from crypto/rand). Called under wmu.
func (c *WSConn) mask() [4]byte {
	var m [4]byte
	binary.LittleEndian.PutUint32(m[:], uint32(c.rng.Uint64()))
	return m
}

// putClientHeader writes a final, masked frame header into b and returns
// its length.
func putClientHeader(b []byte, op ws.OpCode, n int64, mask [4]byte) int {
	b[0] = 0x80 | byte(op)
	i := 2
	switch {
	case n < 126:
		b[1] = 0x80 | byte(n)
	case n <= 0xffff:
		b[1] = 0x80 | 126
		binary.BigEndian.PutUint16(b[2:], uint16(n))
		i = 4
	default:
		b[1] = 0x80 | 127
		binary.BigEndian.PutUint64(b[2:], uint64(n))
		i = 10
	}
	copy(b[i:], mask[:])
	return i + 4
}

func (c *WSConn) LocalAddr() net.Addr                { return c.conn.LocalAddr() }
func (c *WSConn) RemoteAddr() net.Addr               { return c.conn.RemoteAddr() }
func (c *WSConn) SetDeadline(t time.Time) error      { return c.conn.SetDeadline(t) }
func (c *WSConn) SetReadDeadline(t time.Time) error  { return c.conn.SetReadDeadline(t) }
func (c *WSConn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }
