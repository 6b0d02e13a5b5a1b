package testpeer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// DefaultMaxFrame is the largest server frame a WSConn accepts by default.
const DefaultMaxFrame = 4 << 20

// ErrFrameTooLarge is returned by WSConn reads for a server frame longer
// than MaxFrame; the frame is not read.
var ErrFrameTooLarge = errors.New("testpeer: server frame too large")

// ErrWriteClosed is returned by writes after CloseWrite.
var ErrWriteClosed = errors.New("testpeer: write after close frame")

// WSConn is the client side of a WebSocket used as a byte stream (the
// Outline tcp path) or as a message channel (the udp path).
//
// Read and ReadMessage must be used by one goroutine at a time; Write,
// WriteMessage and CloseWrite may be called concurrently with reads. A close
// frame from the server ends reading with io.EOF and is not answered
// automatically: the client may still send, and its own close frame goes out
// only with CloseWrite (or Close). That is how half-close on the Outline
// paths works: close 1000 ends one direction.
type WSConn struct {
	conn     net.Conn
	r        *bufio.Reader
	MaxFrame int64

	// Owned by the reader.
	remain    int64 // payload bytes left in the current data frame
	gotClose  bool
	closeCode ws.StatusCode
	closeText string

	wmu       sync.Mutex // guards w and sentClose
	w         *bufio.Writer
	sentClose bool
}

// DialWS opens a WebSocket to url ("ws://host:port/path"). The handshake is
// bounded by ctx and by 10 s. A refusal (any non-101 answer) is a
// ws.StatusError.
func DialWS(ctx context.Context, url string) (*WSConn, error) {
	d := ws.Dialer{Timeout: 10 * time.Second}
	conn, br, _, err := d.Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	return newWSConn(conn, br), nil
}

func newWSConn(conn net.Conn, br *bufio.Reader) *WSConn {
	return &WSConn{
		conn:     conn,
		r:        bufio.NewReaderSize(withEarly(conn, br), 64<<10),
		w:        bufio.NewWriterSize(conn, 64<<10),
		MaxFrame: DefaultMaxFrame,
	}
}

// NetConn is the underlying TCP connection.
func (c *WSConn) NetConn() net.Conn { return c.conn }

// CloseCode reports the status code of the server's close frame, once one
// has been read.
func (c *WSConn) CloseCode() (code ws.StatusCode, reason string, ok bool) {
	return c.closeCode, c.closeText, c.gotClose
}

// nextDataFrame reads frames until a data frame with payload starts,
// answering pings. It returns io.EOF at the server's close frame.
func (c *WSConn) nextDataFrame() (ws.Header, error) {
	for {
		if c.gotClose {
			return ws.Header{}, io.EOF
		}
		h, err := ws.ReadHeader(c.r)
		if err != nil {
			return h, err
		}
		if h.Masked {
			return h, errors.New("testpeer: server sent a masked frame")
		}
		if h.Length > c.MaxFrame || h.Length < 0 {
			return h, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, h.Length)
		}
		switch h.OpCode {
		case ws.OpBinary, ws.OpText, ws.OpContinuation:
			return h, nil
		case ws.OpClose, ws.OpPing, ws.OpPong:
			if h.Length > 125 {
				return h, errors.New("testpeer: control frame too long")
			}
			p := make([]byte, h.Length)
			if _, err := io.ReadFull(c.r, p); err != nil {
				return h, err
			}
			switch h.OpCode {
			case ws.OpClose:
				c.gotClose = true
				c.closeCode, c.closeText = ws.StatusNoStatusRcvd, ""
				if len(p) >= 2 {
					c.closeCode, c.closeText = ws.ParseCloseFrameData(p)
				}
				return h, io.EOF
			case ws.OpPing:
				c.wmu.Lock()
				if !c.sentClose {
					err = wsutil.WriteClientMessage(c.w, ws.OpPong, p)
					if err == nil {
						err = c.w.Flush()
					}
				}
				c.wmu.Unlock()
				if err != nil {
					return h, err
				}
			}
		default:
			return h, fmt.Errorf("testpeer: unknown opcode %d", h.OpCode)
		}
	}
}

// Read reads the payload of the server's data frames as one byte stream.
// It returns io.EOF after the server's close frame (see CloseCode).
func (c *WSConn) Read(p []byte) (int, error) {
	for c.remain == 0 {
		h, err := c.nextDataFrame()
		if err != nil {
			return 0, err
		}
		c.remain = h.Length
	}
	if int64(len(p)) > c.remain {
		p = p[:c.remain]
	}
	n, err := c.r.Read(p)
	c.remain -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// ReadMessage reads one whole data message (all its fragments), at most
// MaxFrame bytes in total. It returns io.EOF after the server's close frame.
func (c *WSConn) ReadMessage() ([]byte, error) {
	if c.remain != 0 {
		return nil, errors.New("testpeer: ReadMessage in the middle of a frame")
	}
	var msg []byte
	for {
		h, err := c.nextDataFrame()
		if err != nil {
			return nil, err
		}
		if int64(len(msg))+h.Length > c.MaxFrame {
			return nil, ErrFrameTooLarge
		}
		off := len(msg)
		msg = append(msg, make([]byte, h.Length)...)
		if _, err := io.ReadFull(c.r, msg[off:]); err != nil {
			return nil, err
		}
		if h.Fin {
			return msg, nil
		}
	}
}

// Write sends p as one binary message.
func (c *WSConn) Write(p []byte) (int, error) {
	if err := c.WriteMessage(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteMessage sends p as one binary message (masked, as a client must).
func (c *WSConn) WriteMessage(p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.sentClose {
		return ErrWriteClosed
	}
	if err := wsutil.WriteClientBinary(c.w, p); err != nil {
		return err
	}
	return c.w.Flush()
}

// WriteRaw writes b to the socket as is (for malformed-frame probes).
func (c *WSConn) WriteRaw(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.w.Write(b); err != nil {
		return err
	}
	return c.w.Flush()
}

// CloseWrite sends close 1000 once: the end of the client's stream. Reading
// goes on until the server's close frame.
func (c *WSConn) CloseWrite() error {
	return c.sendClose(ws.StatusNormalClosure)
}

func (c *WSConn) sendClose(code ws.StatusCode) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.sentClose {
		return nil
	}
	c.sentClose = true
	if err := wsutil.WriteClientMessage(c.w, ws.OpClose, ws.NewCloseFrameBody(code, "")); err != nil {
		return err
	}
	return c.w.Flush()
}

// Close closes the TCP connection without a close handshake.
func (c *WSConn) Close() error { return c.conn.Close() }

// WaitEOF reads the socket until the server closes it, for at most
// timeout, and fails if the server sent anything more or kept it open.
func (c *WSConn) WaitEOF(timeout time.Duration) error {
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	defer c.conn.SetReadDeadline(time.Time{})
	n, err := io.Copy(io.Discard, c.r)
	if err != nil {
		if errors.Is(err, net.ErrClosed) {
			return err
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("testpeer: server kept the connection open %v after close: %w", timeout, err)
		}
		// A reset after the close handshake still ends the connection.
	}
	if n > 0 {
		return fmt.Errorf("testpeer: %d bytes after the close frame", n)
	}
	return nil
}

// withEarly is conn's input behind the bytes a server sent right after the
// 101, which sit in the dialer's pooled reader br (nil: none); br goes
// back to its pool.
func withEarly(conn net.Conn, br *bufio.Reader) io.Reader {
	if br == nil {
		return conn
	}
	early := make([]byte, br.Buffered())
	io.ReadFull(br, early)
	ws.PutReader(br)
	return io.MultiReader(bytes.NewReader(early), conn)
}

// KeepEarly is conn, dialled with a gobwas ws.Dialer that returned br,
// reading first what br holds past the 101 (frames of a server that talks
// first), for tests that read raw frames off the connection.
func KeepEarly(conn net.Conn, br *bufio.Reader) net.Conn {
	if br == nil {
		return conn
	}
	return &earlyConn{Conn: conn, r: withEarly(conn, br)}
}

type earlyConn struct {
	net.Conn
	r io.Reader
}

func (c *earlyConn) Read(p []byte) (int, error) { return c.r.Read(p) }
