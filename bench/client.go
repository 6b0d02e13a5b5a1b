package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/gobwas/ws"
)

// Stream is one client byte stream through a relay. Write sends one piece of
// the stream (one binary message on WebSocket peers); Read returns stream
// bytes; CloseWrite signals the end of the client's stream.
type Stream interface {
	io.ReadWriter
	CloseWrite() error
	Close() error
	SetDeadline(t time.Time) error
}

// Transport says how a client reaches a relay.
type Transport struct {
	Addr string // relay address, host:port
	// Path is the WebSocket path; "" means a raw byte stream (TCP, or TLS
	// when TLS is set).
	Path string
	// TLS, when set, wraps the connection in TLS before anything else
	// (wss:// for a WebSocket path).
	TLS *tls.Config
	// LocalIP, when set, is the client's source address (127.0.0.x), so many
	// sessions do not exhaust one address's ephemeral ports.
	LocalIP net.IP
	// ReadBuffer is the client's WebSocket read buffer; 0 means 64 KiB.
	ReadBuffer int
	// Protocols and Header go with the WebSocket upgrade request.
	Protocols []string
	Header    http.Header
	// SOCKSTarget, when set, makes Addr a SOCKS5 proxy: each stream is a
	// CONNECT to SOCKSTarget (an IPv4:port) through it.
	SOCKSTarget string
	// mux, when set, makes Dial open a stream on a shared native tunnel
	// (mux.go) instead of a connection of its own.
	mux *muxClient
	// ss, when set, carries each stream as Shadowsocks AEAD to a
	// Shadowsocks server, which dials the sink (ssclient.go).
	ss *ssTarget
}

// dialTimes are the moments a dial reached each stage, from its start.
type dialTimes struct {
	TCP     time.Duration // TCP connected
	TLS     time.Duration // TLS handshake complete (= TCP without TLS)
	Upgrade time.Duration // WebSocket 101 received (= TLS without WebSocket)
}

// Dial opens a stream.
func (t Transport) Dial(ctx context.Context) (Stream, error) {
	s, _, err := t.dial(ctx)
	return s, err
}

// dial opens a stream and reports when each stage completed.
func (t Transport) dial(ctx context.Context) (Stream, dialTimes, error) {
	s, dt, err := t.dialStream(ctx)
	if err != nil || t.ss == nil {
		return s, dt, err
	}
	ss, err := newSSStream(s, t.ss)
	if err != nil {
		s.Close()
		return nil, dt, err
	}
	return ss, dt, nil
}

// dialStream opens the stream that dial wraps in Shadowsocks when asked.
func (t Transport) dialStream(ctx context.Context) (Stream, dialTimes, error) {
	var dt dialTimes
	if t.mux != nil {
		s, dt, err := t.mux.openStream(ctx)
		if err != nil {
			return nil, dt, err
		}
		return s, dt, nil
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	d := net.Dialer{}
	if t.LocalIP != nil {
		d.LocalAddr = &net.TCPAddr{IP: t.LocalIP}
	}
	nc, err := d.DialContext(ctx, "tcp", t.Addr)
	if err != nil {
		return nil, dt, err
	}
	dt.TCP = time.Since(start)
	if t.SOCKSTarget != "" {
		if dl, ok := ctx.Deadline(); ok {
			nc.SetDeadline(dl)
		}
		if err := socksConnect(nc, t.SOCKSTarget); err != nil {
			nc.Close()
			return nil, dt, err
		}
		nc.SetDeadline(time.Time{})
	}
	var c net.Conn = nc
	var s Stream = nc.(*net.TCPConn)
	if t.TLS != nil {
		tc := tls.Client(nc, t.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, dt, fmt.Errorf("tls handshake: %w", err)
		}
		c, s = tc, tc
	}
	dt.TLS = time.Since(start)
	if t.Path != "" {
		scheme := "ws://"
		if t.TLS != nil {
			scheme = "wss://"
		}
		u, err := url.Parse(scheme + t.Addr + t.Path)
		if err != nil {
			c.Close()
			return nil, dt, err
		}
		if dl, ok := ctx.Deadline(); ok {
			c.SetDeadline(dl)
		}
		d := ws.Dialer{Protocols: t.Protocols}
		if t.Header != nil {
			d.Header = ws.HandshakeHeaderHTTP(t.Header)
		}
		br, _, err := d.Upgrade(c, u)
		if err != nil {
			c.Close()
			return nil, dt, fmt.Errorf("websocket upgrade: %w", err)
		}
		c.SetDeadline(time.Time{})
		s = newWSStream(c, br, t.ReadBuffer)
	}
	dt.Upgrade = time.Since(start)
	return s, dt, nil
}

// wsStream is a client WebSocket whose binary messages carry a byte stream.
// Frames are written masked (RFC 6455 §5.3), one frame per Write.
//
// A stream has one reader and one writer goroutine, and the reader writes
// too (the pong to a ping, the close reply): wmu guards the writing side.
type wsStream struct {
	c net.Conn
	r *bufio.Reader // owned by the reader

	wmu       sync.Mutex
	wb        []byte // header + masked payload, reused; guarded by wmu
	sentClose bool   // guarded by wmu

	remaining int64 // payload bytes left in the current data frame; owned by the reader
	gotClose  bool  // owned by the reader
}

// maxServerFrame bounds a server frame we accept; a relay sending more is a bug.
const maxServerFrame = 16 << 20

var errServerFrame = errors.New("bench: bad server frame")

func newWSStream(c net.Conn, br *bufio.Reader, size int) *wsStream {
	if size <= 0 {
		size = 64 << 10
	}
	var r io.Reader = c
	if br != nil && br.Buffered() > 0 {
		r = io.MultiReader(io.LimitReader(br, int64(br.Buffered())), c)
	}
	return &wsStream{c: c, r: bufio.NewReaderSize(r, size)}
}

// writeFrame sends one frame; the caller holds wmu.
func (s *wsStream) writeFrame(op ws.OpCode, p []byte) error {
	h := ws.Header{Fin: true, OpCode: op, Length: int64(len(p)), Masked: true, Mask: ws.NewMask()}
	n := ws.HeaderSize(h) + len(p)
	if cap(s.wb) < n {
		s.wb = make([]byte, n)
	}
	b := s.wb[:n]
	w := sliceWriter{b: b[:0]}
	if err := ws.WriteHeader(&w, h); err != nil {
		return err
	}
	hl := len(w.b)
	copy(b[hl:], p)
	ws.Cipher(b[hl:], h.Mask, 0)
	_, err := s.c.Write(b)
	return err
}

// writeFramed sends buf[wsRoom:] as one binary message, masked in place:
// its header goes into the room before it, so a tunnel's pending frames
// reach the connection without another copy (writeFrame copies a caller's
// bytes, which it may not change).
func (s *wsStream) writeFramed(buf []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.sentClose {
		return net.ErrClosed
	}
	p := buf[wsRoom:]
	h := ws.Header{Fin: true, OpCode: ws.OpBinary, Length: int64(len(p)), Masked: true, Mask: ws.NewMask()}
	hl := ws.HeaderSize(h)
	w := sliceWriter{b: buf[wsRoom-hl : wsRoom-hl]}
	if err := ws.WriteHeader(&w, h); err != nil {
		return err
	}
	ws.Cipher(p, h.Mask, 0)
	_, err := s.c.Write(buf[wsRoom-hl:])
	return err
}

// wsRoom is the room writeFramed needs before a message: the longest
// client frame header.
const wsRoom = ws.MaxHeaderSize

func (s *wsStream) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.sentClose {
		return 0, net.ErrClosed
	}
	if err := s.writeFrame(ws.OpBinary, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// CloseWrite sends close 1000, the end of the client's stream.
func (s *wsStream) CloseWrite() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.sentClose {
		return nil
	}
	s.sentClose = true
	return s.writeFrame(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
}

// readHeader reads the next frame's header; a masked frame or one longer
// than maxServerFrame is errServerFrame.
func (s *wsStream) readHeader() (ws.Header, error) {
	h, err := ws.ReadHeader(s.r)
	if err != nil {
		return h, err
	}
	if h.Masked || h.Length > maxServerFrame || h.Length < 0 {
		return h, fmt.Errorf("%w: masked=%v len=%d", errServerFrame, h.Masked, h.Length)
	}
	return h, nil
}

func (s *wsStream) Read(p []byte) (int, error) {
	for s.remaining == 0 {
		if s.gotClose {
			return 0, io.EOF
		}
		h, err := s.readHeader()
		if err != nil {
			return 0, err
		}
		switch h.OpCode {
		case ws.OpBinary, ws.OpContinuation:
			s.remaining = h.Length
		case ws.OpText:
			return 0, fmt.Errorf("%w: text message", errServerFrame)
		default:
			body := make([]byte, h.Length)
			if _, err := io.ReadFull(s.r, body); err != nil {
				return 0, err
			}
			switch h.OpCode {
			case ws.OpClose:
				s.gotClose = true
				s.CloseWrite()
			case ws.OpPing:
				s.wmu.Lock()
				var err error
				if !s.sentClose {
					err = s.writeFrame(ws.OpPong, body)
				}
				s.wmu.Unlock()
				if err != nil {
					return 0, err
				}
			}
		}
	}
	if int64(len(p)) > s.remaining {
		p = p[:s.remaining]
	}
	n, err := s.r.Read(p)
	s.remaining -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (s *wsStream) Close() error                  { return s.c.Close() }
func (s *wsStream) SetDeadline(t time.Time) error { return s.c.SetDeadline(t) }

type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// streamSuite names the TLS version and cipher suite of a stream, "" for a
// plaintext one.
func streamSuite(s Stream) string {
	var c any = s
	if ss, ok := s.(*ssStream); ok {
		s, c = ss.inner, ss.inner
	}
	if w, ok := s.(*wsStream); ok {
		c = w.c
	}
	tc, ok := c.(*tls.Conn)
	if !ok {
		return ""
	}
	st := tc.ConnectionState()
	return tls.VersionName(st.Version) + " " + tls.CipherSuiteName(st.CipherSuite)
}
