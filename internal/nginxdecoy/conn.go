package nginxdecoy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// The decoy in front of a blocking HTTP server (the control API on
// fasthttp): a Guard wraps each connection in a Conn, which reads every
// request head itself with the emulation's parser and lets through only
// the requests its Pass function accepts. Every other request gets the
// decoy answer, written by the Conn, as the gateway's event loop writes it:
// the same bytes, the same keep-alive and close, the body dropped as nginx
// drops it. A request that was let through can still be refused by the
// server (an unknown token): Conn.Refuse replaces the server's answer with
// the decoy's.

// Defaults for a Guard's zero values.
const (
	DefaultMaxRequest    = 32 << 10 // nginx's large_client_header_buffers 4 8k
	DefaultHeaderTimeout = 10 * time.Second
	DefaultKeepAlive     = 60 * time.Second
	// lingerTime bounds the drain after a closing answer (the gateway's
	// lingerTime); bodyIdle is nginx's lingering_timeout for a body
	// being dropped.
	lingerTime = 2 * time.Second
	bodyIdle   = 5 * time.Second
	writeLimit = 5 * time.Second
)

// Guard configures the decoy in front of a server. It is read-only once
// its first Conn exists.
type Guard struct {
	// Pages are the answers (nil: nginx's, as New(Config{}) builds them).
	Pages *Pages
	// Pass reports whether the server gets a well-formed request; a false
	// result's reason goes to Refused. Nil: no request passes.
	Pass func(r *Request) (ok bool, reason string)
	// Refused, if set, is told of every request the decoy answers, with
	// the reason: Pass's or Refuse's, or one of the Reason* constants.
	// It runs on the connection's goroutine and must not block.
	Refused func(reason string, remote net.Addr)
	// MaxRequest bounds a request head (0: DefaultMaxRequest).
	MaxRequest int
	// HeaderTimeout bounds the reading of a request head from its first
	// byte, and the wait for the first one (0: DefaultHeaderTimeout);
	// KeepAlive bounds the wait for a kept-alive connection's next request
	// (0: DefaultKeepAlive). Past either, the connection is closed without
	// an answer, as nginx closes it.
	HeaderTimeout, KeepAlive time.Duration
}

// Reasons the Guard itself gives Refused.
const (
	ReasonMalformed = "malformed"  // nginx answers the request with an error of its own
	ReasonTooLarge  = "too_large"  // head or announced body over nginx's limits
	ReasonHTTP09    = "http09"     // a request line without a version
	ReasonPlainHTTP = "plain_http" // plain HTTP sent to the TLS port
)

func (g *Guard) pages() *Pages {
	if g.Pages == nil {
		return defaultPages
	}
	return g.Pages
}

var defaultPages = New(Config{})

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Request is a well-formed request head as Pass sees it; its slices are
// valid only during the call.
type Request struct {
	Head []byte  // request line and headers, as received
	p    *Parser // the verdict on Head
}

// Method is the request's method if nginx tells it apart ("GET", "HEAD",
// "POST", "TRACE", "CONNECT"), else "" (PUT, DELETE, …: see MethodBytes).
func (r *Request) Method() string { return r.p.Method() }

// MethodBytes is the request line's method as sent.
func (r *Request) MethodBytes() []byte {
	if i := bytes.IndexByte(r.Head, ' '); i > 0 {
		return r.Head[:i]
	}
	return nil
}

// Path is the request target's path (without the query string) of an
// origin-form request; nil for an absolute URI.
func (r *Request) Path() []byte {
	t := r.p.Target(r.Head)
	if i := bytes.IndexByte(t, '?'); i >= 0 {
		t = t[:i]
	}
	return t
}

// HasBody reports whether a body follows the head.
func (r *Request) HasBody() bool { return r.p.HasBody() }

// Header is r.Head's header name: its first value, trimmed, and how many
// times it occurs (Parser.Header).
func (r *Request) Header(name string) (value []byte, count int) { return r.p.Header(r.Head, name) }

// Conn is one connection behind a Guard. Its Read hands the server only
// the requests Pass accepted (one at a time: the next head is read only
// once the server has answered this one); its other methods are the
// underlying connection's. Read and Write are used by one goroutine at a
// time, as an HTTP server that reads a request, then answers it, uses a
// connection (fasthttp; not net/http, which reads in the background while
// a handler runs); Close may come from any goroutine.
type Conn struct {
	net.Conn
	g            *Guard
	plainToHTTPS bool

	buf  []byte // read from net.Conn, not yet handed on or dropped
	p    Parser // the head being read
	n    int    // requests answered on the connection
	head bool   // a head's first byte has arrived (its deadline runs)

	give    int   // head bytes of the passed request still to hand on
	left    int64 // Content-Length bytes still to hand on
	chunked bool  // a chunked body is being handed on
	ck      ChunkSkipper

	last     Answer // the decoy's answer to the request last handed on
	refused  bool   // the server refused it: its answer is replaced
	answered bool   // and the decoy's has been written
	err      error  // sticky: what Read returns from now on
}

// Conn wraps c (a TLS connection, or a plain one) behind the Guard.
func (g *Guard) Conn(c net.Conn) *Conn {
	return &Conn{Conn: c, g: g}
}

var errHandled = errors.New("nginxdecoy: connection answered by the decoy")

// Read implements net.Conn.
func (c *Conn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if c.refused && !c.answered {
		// The server read on without writing its answer: write ours now.
		c.answerRefused()
	}
	if c.refused {
		c.refused, c.answered = false, false
		if !c.last.KeepAlive {
			c.linger()
			c.err = io.EOF
		}
	}
	for c.err == nil {
		if c.give > 0 || c.left > 0 || c.chunked {
			return c.handOn(b)
		}
		if !c.p.Feed(c.buf, c.limit()) {
			c.fill()
			continue
		}
		c.verdict()
	}
	return 0, c.err
}

func (c *Conn) limit() int {
	if c.g.MaxRequest > 0 {
		return c.g.MaxRequest
	}
	return DefaultMaxRequest
}

// fill reads more of the head, under the head's deadline (or the
// keep-alive wait before its first byte).
func (c *Conn) fill() {
	if len(c.buf) == 0 {
		c.head = false
		wait := orDefault(c.g.HeaderTimeout, DefaultHeaderTimeout)
		if c.n > 0 {
			wait = orDefault(c.g.KeepAlive, DefaultKeepAlive)
		}
		c.Conn.SetReadDeadline(time.Now().Add(wait))
	} else if !c.head {
		c.head = true
		c.Conn.SetReadDeadline(time.Now().Add(orDefault(c.g.HeaderTimeout, DefaultHeaderTimeout)))
	}
	if err := c.readMore(); err != nil {
		// EOF, a reset or the deadline: nginx closes without an answer.
		c.err = err
	}
}

// readMore appends what one read returns to c.buf.
func (c *Conn) readMore() error {
	if cap(c.buf)-len(c.buf) < 2048 {
		nb := make([]byte, len(c.buf), max(2*cap(c.buf), 4096))
		copy(nb, c.buf)
		c.buf = nb
	}
	n, err := c.Conn.Read(c.buf[len(c.buf):cap(c.buf)])
	c.buf = c.buf[:len(c.buf)+n]
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// consume drops n bytes from the front of c.buf.
func (c *Conn) consume(n int) {
	c.buf = c.buf[:copy(c.buf, c.buf[n:])]
}

// verdict acts on a parsed head: hand it on, or answer it.
func (c *Conn) verdict() {
	p := &c.p
	reason := ""
	switch {
	case c.plainToHTTPS:
		reason = ReasonPlainHTTP
	case p.Status == 414 || p.Status == StatusHeaderTooLarge:
		reason = ReasonTooLarge
	case p.Status != 0:
		reason = ReasonMalformed
	case p.HTTP09():
		reason = ReasonHTTP09
	case c.g.Pass == nil:
		reason = "unknown"
	default:
		// A body over nginx's limit gets nginx's 413, unless the server
		// takes the request (and applies its own limit).
		ok, why := c.g.Pass(&Request{Head: c.buf[:p.Len()], p: p})
		if !ok && p.Length() > nginxMaxBody {
			why = ReasonTooLarge
		}
		if ok {
			c.last = c.g.pages().Answer(p, c.n, false)
			c.n++
			c.give = p.Len()
			c.left, c.chunked = p.Length(), p.Chunked()
			c.ck = ChunkSkipper{}
			c.p = Parser{}
			return
		}
		reason = why
	}
	c.decoy(reason)
}

// handOn copies the passed request's bytes into b.
func (c *Conn) handOn(b []byte) (int, error) {
	if len(c.buf) == 0 {
		if err := c.readMore(); err != nil {
			c.err = err
			return 0, err
		}
	}
	var n int
	switch {
	case c.give > 0:
		n = min(c.give, len(c.buf), len(b))
		c.give -= n
	case c.chunked:
		k, done, ok := c.ck.Skip(c.buf[:min(len(c.buf), len(b))])
		n = k
		if done || !ok {
			// A malformed body goes on as far as it is valid; the server
			// then sees it end early, and the connection with it.
			c.chunked = false
			if !ok {
				c.err = io.ErrUnexpectedEOF
			}
		}
	default:
		n = int(min(c.left, int64(len(c.buf)), int64(len(b))))
		c.left -= int64(n)
	}
	copy(b, c.buf[:n])
	c.consume(n)
	if n == 0 && c.err != nil {
		return 0, c.err
	}
	return n, nil
}

// decoy answers the parsed request, drops its body as nginx does, and
// either waits for the next request or closes.
func (c *Conn) decoy(reason string) {
	p := &c.p
	if c.g.Refused != nil {
		c.g.Refused(reason, c.RemoteAddr())
	}
	a := c.g.pages().Answer(p, c.n, c.plainToHTTPS)
	c.n++
	discard := (a.Status == 0 || a.Status == 413) && p.HasBody()
	if err := c.write(a); err != nil {
		c.err = err
		return
	}
	c.consume(min(p.Len(), len(c.buf)))
	if discard && !c.dropBody(p) {
		a.KeepAlive = false
	}
	c.p = Parser{}
	if !a.KeepAlive {
		c.linger()
		c.err = io.EOF
	}
}

// write writes the decoy's answer a.
func (c *Conn) write(a Answer) error {
	d := c.g.pages()
	out := d.AppendAnswer(make([]byte, 0, d.Size(a)), a)
	c.Conn.SetWriteDeadline(time.Now().Add(writeLimit))
	_, err := c.Conn.Write(out)
	c.Conn.SetWriteDeadline(time.Time{})
	return err
}

// dropBody reads and drops p's body (nginx's lingering_timeout between
// reads); false: it did not end well, and the connection is to close.
func (c *Conn) dropBody(p *Parser) bool {
	left, chunked := p.Length(), p.Chunked()
	var ck ChunkSkipper
	for {
		if len(c.buf) == 0 {
			c.Conn.SetReadDeadline(time.Now().Add(bodyIdle))
			if c.readMore() != nil {
				return false
			}
		}
		if chunked {
			n, done, ok := ck.Skip(c.buf)
			c.consume(n)
			if !ok {
				return false
			}
			if done {
				return true
			}
			continue
		}
		n := int(min(left, int64(len(c.buf))))
		c.consume(n)
		if left -= int64(n); left == 0 {
			return true
		}
	}
}

// linger closes the writing side (close_notify first on TLS) and drops
// what the client still sends for a moment, so that the close is not a
// reset that destroys the answer.
func (c *Conn) linger() {
	raw := c.Conn
	if t, ok := raw.(*tls.Conn); ok {
		t.CloseWrite()
		raw = t.NetConn()
	}
	if s, ok := raw.(*sniffConn); ok {
		raw = s.Conn
	}
	if w, ok := raw.(interface{ CloseWrite() error }); ok {
		w.CloseWrite()
	}
	c.buf = c.buf[:0]
	end := time.Now().Add(lingerTime)
	c.Conn.SetReadDeadline(end)
	var scratch [4096]byte
	for time.Now().Before(end) {
		if _, err := c.Conn.Read(scratch[:]); err != nil {
			break
		}
	}
}

// Refuse has the decoy answer the request last handed on in place of the
// server's answer: whatever the server writes for it is dropped. reason
// goes to Guard.Refused.
func (c *Conn) Refuse(reason string) {
	if c.refused {
		return
	}
	c.refused = true
	if c.g.Refused != nil {
		c.g.Refused(reason, c.RemoteAddr())
	}
}

// Write implements net.Conn: the server's answers, except one to a refused
// request, which is replaced by the decoy's.
func (c *Conn) Write(b []byte) (int, error) {
	if !c.refused {
		return c.Conn.Write(b)
	}
	if !c.answered {
		if err := c.answerRefused(); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

func (c *Conn) answerRefused() error {
	c.answered = true
	err := c.write(c.last)
	if err != nil {
		c.err = err
	}
	return err
}

// Close is the connection's own: like a net.Conn's, it may be called from
// any goroutine (a server's shutdown closes idle connections), so it
// touches none of the Conn's state.
func (c *Conn) Close() error { return c.Conn.Close() }

// ConnectionState and Handshake are the TLS connection's, for servers that
// look for them (fasthttp's RequestCtx.IsTLS).
func (c *Conn) ConnectionState() tls.ConnectionState {
	if t, ok := c.Conn.(*tls.Conn); ok {
		return t.ConnectionState()
	}
	return tls.ConnectionState{}
}

func (c *Conn) Handshake() error {
	if t, ok := c.Conn.(*tls.Conn); ok {
		return t.Handshake()
	}
	return nil
}

// Listener is a listener behind the Guard: plain HTTP, or TLS with tc
// non-nil, where a connection whose first byte is not a TLS record's (or
// SSLv2's) gets nginx's "plain HTTP request was sent to HTTPS port".
func (g *Guard) Listener(ln net.Listener, tc *tls.Config) net.Listener {
	return &listener{Listener: ln, g: g, tc: tc}
}

type listener struct {
	net.Listener
	g  *Guard
	tc *tls.Config
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if l.tc == nil {
		return l.g.Conn(c), nil
	}
	return l.g.Conn(tls.Server(&sniffConn{Conn: c, g: l.g}, l.tc)), nil
}

// sniffConn is a TLS connection's socket: on the first read it tells a
// TLS client from a plain-HTTP one, which gets the decoy right there.
type sniffConn struct {
	net.Conn
	g      *Guard
	once   sync.Once
	first  []byte
	failed error
}

func (s *sniffConn) Read(b []byte) (int, error) {
	s.once.Do(s.sniff)
	if s.failed != nil {
		return 0, s.failed
	}
	if len(s.first) > 0 {
		n := copy(b, s.first)
		s.first = s.first[n:]
		return n, nil
	}
	return s.Conn.Read(b)
}

func (s *sniffConn) sniff() {
	var b [1]byte
	s.Conn.SetReadDeadline(time.Now().Add(orDefault(s.g.HeaderTimeout, DefaultHeaderTimeout)))
	n, err := s.Conn.Read(b[:])
	if n == 0 {
		if err == nil {
			err = io.ErrNoProgress
		}
		s.failed = err
		return
	}
	if b[0] == 0x16 || b[0] >= 0x80 {
		s.first = append([]byte(nil), b[0])
		return
	}
	// nginx reads the request in the clear and answers 400.
	dc := &Conn{Conn: s.Conn, g: s.g, plainToHTTPS: true, buf: append(make([]byte, 0, 4096), b[0])}
	dc.head = true
	dc.Conn.SetReadDeadline(time.Now().Add(orDefault(s.g.HeaderTimeout, DefaultHeaderTimeout)))
	var scratch [1]byte
	dc.Read(scratch[:])
	s.failed = errHandled
}
