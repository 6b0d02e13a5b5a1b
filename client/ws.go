package client

// The WebSocket client both gateway paths use: the Outline paths (one
// WebSocket per stream, NewWSStream / NewWSPacket) and the native tunnel
// (many streams on one WebSocket, tunnel*.go). RFC 6455 client side on
// gobwas/ws: masked frames, bounded frame and message sizes, ping answered
// with pong, and the Outline paths' close semantics (close 1000 ends one
// direction, not both).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/gobwas/ws"

	"github.com/httvps/httvps/internal/rawio"
)

// WebSocket client errors.
var (
	// ErrPinMismatch: the gateway's certificate is neither the one Gateway.Pin
	// names nor issued by it.
	ErrPinMismatch = errors.New("client: gateway certificate does not match the pin")
	// ErrWSTooLarge: the gateway sent a frame or message over the bound (the
	// client closes with 1009).
	ErrWSTooLarge = errors.New("client: WebSocket message too large")
	// ErrWSProtocol: the gateway broke RFC 6455 (the client closes with 1002,
	// or 1003 for a text message).
	ErrWSProtocol = errors.New("client: WebSocket protocol error")
	// ErrWSWriteClosed: a write after the close frame was sent.
	ErrWSWriteClosed = errors.New("client: write after the WebSocket close")
	// ErrWSClosed: the WebSocket was closed by Close.
	ErrWSClosed = errors.New("client: WebSocket closed")
)

// CloseError is a close frame from the gateway with a code other than 1000
// (or no code), which ends reading: the gateway's reason for ending.
type CloseError struct {
	Code   uint16
	Reason string
}

func (e *CloseError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("client: gateway closed the WebSocket with %d", e.Code)
	}
	return fmt.Sprintf("client: gateway closed the WebSocket with %d (%q)", e.Code, e.Reason)
}

// Defaults of WSOptions.
const (
	DefaultWSTimeout    = 15 * time.Second
	DefaultWSMaxMessage = 1 << 20  // the gateway's MaxMessageSize default
	DefaultWSWriteChunk = 64 << 10 // largest message Write sends; a longer write is split
)

// WSOptions tunes DialWS. Zero values mean the defaults.
type WSOptions struct {
	Header    http.Header   // extra request headers (Authorization on the tunnel)
	Protocols []string      // subprotocols offered, preferred first
	Timeout   time.Duration // bounds connect, TLS and upgrade; 0: DefaultWSTimeout
	// TLSConfig is a base for the TLS client configuration (cloned; its
	// ServerName and verification are set from the Gateway). Nil: defaults.
	TLSConfig *tls.Config
	// MaxMessage bounds a message (and so a frame) the gateway may send;
	// 0: DefaultWSMaxMessage.
	MaxMessage int
	// WriteChunk is the largest message one stream Write sends; 0:
	// DefaultWSWriteChunk. It must not exceed the gateway's MaxMessageSize.
	WriteChunk int
	// Dialer dials the TCP connection; nil: a net.Dialer with keep-alive.
	Dialer *net.Dialer
}

// DialWS connects to gw, upgrades on path (starting with /), and returns the
// connection and the subprotocol the gateway chose ("" if none). An answer
// other than 101 is an error wrapping ErrRefused; a certificate that does
// not match gw.Pin wraps ErrPinMismatch. The gateway may send frames right
// after its 101: they are kept for the first read.
func DialWS(ctx context.Context, gw Gateway, path string, o WSOptions) (*WSConn, string, error) {
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = DefaultWSTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	host, _, err := net.SplitHostPort(gw.Addr)
	if err != nil {
		return nil, "", fmt.Errorf("client: gateway address %q: %w", gw.Addr, err)
	}
	d := o.Dialer
	if d == nil {
		d = &net.Dialer{KeepAlive: 30 * time.Second}
	}
	raw, err := d.DialContext(ctx, "tcp", gw.Addr)
	if err != nil {
		return nil, "", fmt.Errorf("client: dial %s: %w", gw.Addr, err)
	}
	conn := rawio.Wrap(raw) // the tunnel's bulk reads and writes: raw system calls
	ok := false
	defer func() {
		if !ok {
			conn.Close()
		}
	}()
	// The handshake is bounded by the context: a deadline for its I/O and,
	// for an early cancel, a close of the socket.
	if dl, has := ctx.Deadline(); has {
		raw.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	scheme := "ws"
	var batch *batchConn
	if gw.TLS {
		scheme = "wss"
		batch = &batchConn{Conn: conn}
		tc := tls.Client(batch, wsTLSConfig(gw, host, o.TLSConfig))
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, "", fmt.Errorf("client: TLS to %s: %w", gw.Addr, err)
		}
		conn = tc
	}
	u := &url.URL{Scheme: scheme, Host: gw.Addr, Path: path}
	dialer := ws.Dialer{Protocols: o.Protocols, ReadBufferSize: 16 << 10, Host: wsHost(gw)}
	if len(o.Header) > 0 {
		dialer.Header = ws.HandshakeHeaderHTTP(o.Header)
	}
	br, hs, err := dialer.Upgrade(conn, u)
	if err != nil {
		if ctx.Err() != nil {
			return nil, "", fmt.Errorf("client: WebSocket upgrade at %s: %w", gw.Addr, ctx.Err())
		}
		var st ws.StatusError
		if errors.As(err, &st) {
			return nil, "", fmt.Errorf("%w: %s answered %d", ErrRefused, gw.Addr, int(st))
		}
		return nil, "", fmt.Errorf("client: WebSocket upgrade at %s: %w", gw.Addr, err)
	}
	if !stop() {
		return nil, "", fmt.Errorf("client: WebSocket upgrade at %s: %w", gw.Addr, ctx.Err())
	}
	raw.SetDeadline(time.Time{})
	ok = true
	c := newWSConn(conn, br, o)
	c.batch = batch
	return c, hs.Protocol, nil
}

// wsTLSConfig is base (or the defaults) with SNI set and, when gw.Pin is
// set, verification replaced by the pin (checkPin): the leaf whose DER
// hashes to Pin, or a leaf for the SNI name that the pinned CA in the chain
// signed.
func wsTLSConfig(gw Gateway, host string, base *tls.Config) *tls.Config {
	var c *tls.Config
	if base != nil {
		c = base.Clone()
	} else {
		c = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if c.ServerName == "" {
		c.ServerName = gw.SNI
		if c.ServerName == "" {
			c.ServerName = host
		}
	}
	if len(c.NextProtos) == 0 {
		c.NextProtos = []string{"http/1.1"}
	}
	if c.ClientSessionCache == nil {
		c.ClientSessionCache = wsSessions // reconnects resume when the gateway allows it
	}
	if len(gw.Pin) > 0 {
		pin := append([]byte(nil), gw.Pin...)
		name := c.ServerName
		c.InsecureSkipVerify = true
		c.VerifyPeerCertificate = nil
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			return checkPin(cs.PeerCertificates, pin, name)
		}
	}
	return c
}

// wsSessions is the TLS session cache of every gateway connection.
var wsSessions = tls.NewLRUClientSessionCache(64)

// wsHost is the Host header: the SNI name when one is set (a gateway
// behind a front that routes by name), else Addr; the port only if it is
// not the scheme's default.
func wsHost(gw Gateway) string {
	if gw.SNI == "" {
		return ""
	}
	_, port, err := net.SplitHostPort(gw.Addr)
	if err != nil || gw.TLS && port == "443" || !gw.TLS && port == "80" {
		return gw.SNI
	}
	return net.JoinHostPort(gw.SNI, port)
}

// CertPin returns the pin of a certificate: the SHA-256 of its DER.
func CertPin(cert *x509.Certificate) []byte {
	sum := sha256.Sum256(cert.Raw)
	return sum[:]
}

// wsReadBuffer is the size of a WebSocket's buffered reader. It holds frame
// headers and control frames (≤ 139 bytes); a payload read of at least this
// size goes straight from the TLS conn into the reader's buffer (bufio reads
// directly when its buffer is empty), so a small buffer means a frame's
// payload is copied through it for at most its first wsReadBuffer bytes
// (with 16 KiB, a quarter of the download's records took the detour).
const wsReadBuffer = 1 << 10

// wsReader returns the reader of a new connection. The dialer's reader may
// hold the gateway's first frames (read past the 101): those are carried
// over, ahead of conn.
func wsReader(conn net.Conn, br *bufio.Reader) *bufio.Reader {
	var r io.Reader = conn
	if br != nil && br.Buffered() > 0 {
		early, _ := br.Peek(br.Buffered())
		r = io.MultiReader(bytes.NewReader(bytes.Clone(early)), conn)
	}
	return bufio.NewReaderSize(r, wsReadBuffer)
}
