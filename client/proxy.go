package client

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/httvps/httvps/internal/rawio"
)

// Proxy defaults for ProxyConfig's zero values.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultDialTimeout      = 30 * time.Second
	// DefaultHTTPIdle closes an HTTP proxy keep-alive connection that
	// sends no next request for this long.
	DefaultHTTPIdle = 60 * time.Second
	// maxHandshake bounds the bytes of a SOCKS5 handshake or of an HTTP
	// proxy request's head (request line and headers).
	maxHandshake = 64 << 10
)

// ErrProxyClosed is returned by Serve after Close.
var ErrProxyClosed = errors.New("client: proxy closed")

// Dialer is what the proxy front needs: the Shadowsocks layer.
type Dialer interface {
	// DialStream opens a stream to addr ("host:port").
	DialStream(ctx context.Context, addr string) (StreamConn, error)
	// ListenPacket opens one UDP association.
	ListenPacket(ctx context.Context) (net.PacketConn, error)
}

// ProxyConfig configures a Proxy.
type ProxyConfig struct {
	// Dialer carries the proxied connections (required).
	Dialer Dialer
	// Username and Password, when Username is set, are required from
	// clients: SOCKS5 username/password (RFC 1929) and HTTP
	// Proxy-Authorization Basic. Empty: no authentication.
	Username, Password string
	// HandshakeTimeout bounds a SOCKS5 handshake or an HTTP request head
	// (0 → DefaultHandshakeTimeout); DialTimeout a stream's opening
	// (0 → DefaultDialTimeout).
	HandshakeTimeout, DialTimeout time.Duration
	// Logger gets one line per failed connection at debug level (nil →
	// slog.Default()).
	Logger *slog.Logger
}

// Proxy is the local proxy front: one listener serving SOCKS5 (CONNECT and
// UDP ASSOCIATE) and an HTTP proxy (CONNECT and absolute-URI requests),
// told apart by the first byte (5 is SOCKS5; an HTTP method is a letter).
type Proxy struct {
	cfg ProxyConfig
	log *slog.Logger

	open atomic.Int64 // client connections being served

	mu     sync.Mutex // guards closed, lns, conns
	closed bool
	lns    map[net.Listener]struct{}
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// NewProxy checks cfg and builds a Proxy.
func NewProxy(cfg ProxyConfig) (*Proxy, error) {
	if cfg.Dialer == nil {
		return nil, errors.New("client: ProxyConfig.Dialer is nil")
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if len(cfg.Username) > 255 || len(cfg.Password) > 255 {
		return nil, errors.New("client: proxy username and password are at most 255 bytes (RFC 1929)")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Proxy{cfg: cfg, log: log, lns: map[net.Listener]struct{}{}, conns: map[net.Conn]struct{}{}}, nil
}

// Open is the number of client connections being served.
func (p *Proxy) Open() int { return int(p.open.Load()) }

// Serve accepts on ln until Close (then ErrProxyClosed) or an accept error.
func (p *Proxy) Serve(ln net.Listener) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		ln.Close()
		return ErrProxyClosed
	}
	p.lns[ln] = struct{}{}
	p.mu.Unlock()
	var tempDelay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			p.mu.Lock()
			closed := p.closed
			p.mu.Unlock()
			if closed {
				return ErrProxyClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, errTooManyFiles) {
				// Out of descriptors: wait instead of spinning.
				tempDelay = min(max(2*tempDelay, 5*time.Millisecond), time.Second)
				time.Sleep(tempDelay)
				continue
			}
			return err
		}
		tempDelay = 0
		if !p.track(c) {
			c.Close()
			return ErrProxyClosed
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.untrack(c)
			p.open.Add(1)
			defer p.open.Add(-1)
			p.serveConn(rawio.Wrap(c))
		}()
	}
}

// Close stops every listener, closes every client connection (and so
// their streams) and waits for their goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for ln := range p.lns {
		ln.Close()
	}
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

// serveConn reads the first byte under the handshake deadline and hands
// the connection to SOCKS5 or the HTTP proxy.
func (p *Proxy) serveConn(c net.Conn) {
	c.SetDeadline(time.Now().Add(p.cfg.HandshakeTimeout))
	lim := &limitReader{r: c, n: maxHandshake}
	br := bufio.NewReaderSize(lim, 4096)
	first, err := br.Peek(1)
	if err != nil {
		return
	}
	switch {
	case first[0] == socksVersion:
		p.socks(c, br, lim)
	case first[0] >= 'A' && first[0] <= 'Z':
		p.httpProxy(c, br, lim)
	default:
		p.log.Debug("proxy: neither SOCKS5 nor HTTP", "client", c.RemoteAddr().String(), "first_byte", first[0])
	}
}

// limitReader bounds the bytes of a handshake: past n, reads fail. n < 0
// means no limit (set once the handshake is done).
type limitReader struct {
	r io.Reader
	n int64
}

var errHandshakeTooLong = errors.New("client: proxy handshake too long")

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n < 0 {
		return l.r.Read(p)
	}
	if l.n == 0 {
		return 0, errHandshakeTooLong
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// relay copies both ways between the client c (whose first bytes may sit
// in br) and the stream up, passing a half-close on in each direction, and
// returns when both directions ended or one failed.
func relay(c net.Conn, br *bufio.Reader, up StreamConn) {
	var once sync.Once
	abort := func() { once.Do(func() { c.Close(); up.Close() }) }
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := io.Copy(c, up); err != nil {
			abort()
			return
		}
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			abort()
		}
	}()
	if _, err := io.Copy(up, br); err != nil {
		abort()
	} else {
		up.CloseWrite()
	}
	<-done
	abort()
}
