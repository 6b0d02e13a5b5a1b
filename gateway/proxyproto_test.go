package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/httvps/httvps/codec/proxyproto"
	"github.com/httvps/httvps/internal/testpeer"
)

// The gateways of these tests trust 127.0.0.1 (the balancer); 127.0.0.2 is
// an untrusted peer on the same loopback.
var (
	trustedLB   = netip.MustParsePrefix("127.0.0.1/32")
	untrustedIP = net.IPv4(127, 0, 0, 2)
	gwDst       = netip.MustParseAddrPort("192.0.2.1:443")
)

// remoteLog collects the "remote" addresses of the debug lines with
// message msg ("proxy protocol", "forwarded").
type remoteLog struct {
	msg     string
	mu      sync.Mutex
	remotes []string
}

func (l *remoteLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *remoteLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *remoteLog) WithGroup(string) slog.Handler            { return l }
func (l *remoteLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != l.msg || r.Level != slog.LevelDebug {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "remote" {
			l.mu.Lock()
			l.remotes = append(l.remotes, a.Value.String())
			l.mu.Unlock()
		}
		return true
	})
	return nil
}

func (l *remoteLog) has(remote string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.remotes {
		if r == remote {
			return true
		}
	}
	return false
}

func (l *remoteLog) n() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.remotes)
}

// last is the newest line's remote ("" for none).
func (l *remoteLog) last() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.remotes) == 0 {
		return ""
	}
	return l.remotes[len(l.remotes)-1]
}

// dialFrom connects to g from local IP from (nil: the default, 127.0.0.1)
// and writes head first.
func dialFrom(t *testing.T, g *Gateway, from net.IP, head []byte) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if from != nil {
		d.LocalAddr = &net.TCPAddr{IP: from}
	}
	c, err := d.Dial("tcp", g.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write(head); err != nil {
		t.Fatal(err)
	}
	return c
}

// wsThrough upgrades over a connection that dialFrom made (TLS when pool
// is set) and returns the WebSocket connection.
func wsThrough(t *testing.T, g *Gateway, pool *x509.CertPool, from net.IP, head []byte) net.Conn {
	t.Helper()
	d := ws.Dialer{Timeout: 5 * time.Second, NetDial: func(context.Context, string, string) (net.Conn, error) {
		return dialFrom(t, g, from, head), nil
	}}
	scheme := "ws://"
	if pool != nil {
		scheme = "wss://"
		d.TLSConfig = &tls.Config{RootCAs: pool, ServerName: "localhost"}
	}
	c, _, _, err := d.Dial(context.Background(), scheme+g.Addr().String()+"/s3cret/tcp")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestProxyHeaderCarriesClient: v1 and v2 headers (IPv4 and IPv6 clients)
// from the trusted balancer, on the plaintext and the TLS listener, give a
// working session whose bytes come back intact, and the debug log names
// the client from the header, not the balancer. A v2 LOCAL header (the
// balancer's health check) leaves the balancer's own address.
func TestProxyHeaderCarriesClient(t *testing.T) {
	up := testpeer.EchoServer(t)
	for _, useTLS := range []bool{false, true} {
		log := &remoteLog{msg: "proxy protocol"}
		mod := func(c *Config) { c.ProxyProtocolFrom = []netip.Prefix{trustedLB}; c.Logger = slog.New(log) }
		var g *Gateway
		var pool *x509.CertPool
		if useTLS {
			g, pool = startTLSGateway(t, up, mod)
		} else {
			g = startGateway(t, up, mod)
		}
		for i, tc := range []struct {
			name string
			head []byte
			want string
		}{
			{"v1 tcp4", proxyproto.AppendV1(nil, netip.MustParseAddrPort("198.51.100.9:4001"), gwDst), "198.51.100.9:4001"},
			{"v1 tcp6", proxyproto.AppendV1(nil, netip.MustParseAddrPort("[2001:db8::9]:4002"), netip.MustParseAddrPort("[2001:db8::1]:443")), "[2001:db8::9]:4002"},
			{"v2 tcp4", proxyproto.AppendV2(nil, netip.MustParseAddrPort("198.51.100.10:4003"), gwDst, []byte{0xEA, 0, 2, 'i', 'd'}), "198.51.100.10:4003"},
			{"v2 tcp6", proxyproto.AppendV2(nil, netip.MustParseAddrPort("[2001:db8::10]:4004"), netip.MustParseAddrPort("[2001:db8::1]:443"), nil), "[2001:db8::10]:4004"},
			{"v2 local", proxyproto.AppendV2(nil, netip.AddrPort{}, netip.AddrPort{}, nil), "127.0.0.1:"},
		} {
			c := wsThrough(t, g, pool, nil, tc.head)
			echoThrough(t, c, 256<<10+i)
			c.Close()
			if tc.name == "v2 local" {
				continue // the balancer's own port is not known here
			}
			if !log.has(tc.want) {
				t.Errorf("tls=%v %s: no debug line with remote %s: %v", useTLS, tc.name, tc.want, log.remotes)
			}
		}
	}
}

// TestProxyHeaderByteByByte: a header that arrives a byte at a time, and one
// that arrives alone before the client's first bytes, still make a session.
func TestProxyHeaderByteByByte(t *testing.T) {
	g := startGateway(t, testpeer.EchoServer(t), func(c *Config) { c.ProxyProtocolFrom = []netip.Prefix{trustedLB} })
	for _, head := range [][]byte{
		proxyproto.AppendV1(nil, netip.MustParseAddrPort("198.51.100.9:4001"), gwDst),
		proxyproto.AppendV2(nil, netip.MustParseAddrPort("198.51.100.9:4001"), gwDst, nil),
	} {
		d := ws.Dialer{Timeout: 5 * time.Second, NetDial: func(context.Context, string, string) (net.Conn, error) {
			c := dialFrom(t, g, nil, nil)
			c.(*net.TCPConn).SetNoDelay(true)
			for i := range head {
				c.Write(head[i : i+1])
				time.Sleep(time.Millisecond)
			}
			time.Sleep(20 * time.Millisecond) // the header alone in netpoll's buffer
			return c, nil
		}}
		c, _, _, err := d.Dial(context.Background(), "ws://"+g.Addr().String()+"/s3cret/tcp")
		if err != nil {
			t.Fatal(err)
		}
		echoThrough(t, c, 64<<10)
		c.Close()
	}
}

// rawAnswer sends raw on a connection from from and reads everything until the
// gateway closes.
func rawAnswer(t *testing.T, g *Gateway, from net.IP, raw []byte) []byte {
	t.Helper()
	c := dialFrom(t, g, from, raw)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	b, _ := io.ReadAll(c)
	return dropDate(b)
}

// TestProxyHeaderFromUntrustedGetsDecoy: from a peer outside the trusted
// prefixes, a valid header followed by a valid upgrade is a probe: it gets
// exactly the answer a gateway with the PROXY protocol off gives the same
// bytes, plaintext and TLS, and no session is made.
func TestProxyHeaderFromUntrustedGetsDecoy(t *testing.T) {
	up := testpeer.EchoServer(t)
	req := []byte("GET /s3cret/tcp HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	on := func(c *Config) { c.ProxyProtocolFrom = []netip.Prefix{trustedLB} }
	for _, useTLS := range []bool{false, true} {
		var gOn, gOff *Gateway
		if useTLS {
			gOn, _ = startTLSGateway(t, up, on)
			gOff, _ = startTLSGateway(t, up, nil)
		} else {
			gOn, gOff = startGateway(t, up, on), startGateway(t, up, nil)
		}
		for _, head := range [][]byte{
			proxyproto.AppendV1(nil, netip.MustParseAddrPort("198.51.100.9:4001"), gwDst),
			proxyproto.AppendV2(nil, netip.MustParseAddrPort("198.51.100.9:4001"), gwDst, nil),
		} {
			raw := append(append([]byte(nil), head...), req...)
			got, want := rawAnswer(t, gOn, untrustedIP, raw), rawAnswer(t, gOff, untrustedIP, raw)
			if len(want) == 0 || !bytes.HasPrefix(want, []byte("HTTP/1.1 400 ")) || !bytes.Equal(got, want) {
				t.Errorf("tls=%v %q: answer\n%q\nwant the PROXY-off gateway's\n%q", useTLS, head[:5], got, want)
			}
			if gOn.Sessions() != 0 {
				t.Fatalf("a session from an untrusted header")
			}
		}
	}
}

// TestProxyBrokenHeaderClosed: from the trusted balancer, a malformed
// header, no header at all (a plain request or a ClientHello) or a header
// over the limit closes the connection without a byte of answer (as
// nginx's proxy_protocol listener), counted as "proxy"; a header that never
// completes is cut off at the handshake deadline.
func TestProxyBrokenHeaderClosed(t *testing.T) {
	m := &fbMetrics{}
	g := startGateway(t, testpeer.EchoServer(t), func(c *Config) {
		c.ProxyProtocolFrom = []netip.Prefix{trustedLB}
		c.Metrics = m
		c.HandshakeTimeout = 500 * time.Millisecond
	})
	big := proxyproto.AppendV2(nil, netip.MustParseAddrPort("198.51.100.9:4001"), gwDst, append([]byte{0x04, 0x10, 0x00}, make([]byte, 4096)...))
	broken := [][]byte{
		[]byte("PROXY TCP4 198.51.100.9 192.0.2.1 4001\r\nGET / HTTP/1.1\r\n\r\n"),
		[]byte("PROXY TCP4 198.51.100.999 192.0.2.1 4001 443\r\nGET / HTTP/1.1\r\n\r\n"),
		[]byte("PROXY UDP4 198.51.100.9 192.0.2.1 4001 443\r\n"),
		append(bytes.Repeat([]byte("PROXY "), 20), "\r\n"...),
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		{0x16, 0x03, 0x01, 0x00, 0x10, 0x01},
		append(proxyproto.AppendV2(nil, netip.AddrPort{}, netip.AddrPort{}, nil)[:12], 0x31, 0x11, 0, 0),
		big,
	}
	for _, raw := range broken {
		if got := rawAnswer(t, g, nil, raw); len(got) != 0 {
			t.Errorf("%q: answered %q, want a close without a byte", raw[:min(len(raw), 16)], got)
		}
	}
	if n := m.rejected[RejectProxy].Load(); n != int64(len(broken)) {
		t.Errorf("%d counted as proxy, want %d", n, len(broken))
	}
	// A partial header: closed at the deadline, without an answer.
	if got := rawAnswer(t, g, nil, []byte("PROXY TCP4 198.51")); len(got) != 0 {
		t.Errorf("partial header answered %q", got)
	}
	if m.rejected[RejectTimeout].Load() != 1 {
		t.Errorf("partial header: %d timeouts, want 1", m.rejected[RejectTimeout].Load())
	}
}

// TestProxyAddressAdmission: the per-address limits count the client a
// header names, not the balancer every connection comes from. With one
// handshake allowed per address (and pressure from the first one), a
// second handshake for the same client is closed (addr_limit) while
// another client behind the same balancer gets its session.
func TestProxyAddressAdmission(t *testing.T) {
	m := &fbMetrics{}
	g := startGateway(t, testpeer.EchoServer(t), func(c *Config) {
		c.ProxyProtocolFrom = []netip.Prefix{trustedLB}
		c.Metrics = m
		c.MaxHandshakes = 4 // under pressure from one handshake on
		c.AddrHandshakes = 1
	})
	a := netip.MustParseAddrPort("198.51.100.9:4001")
	// A holds a handshake: its header and half a request.
	hold := dialFrom(t, g, nil, append(proxyproto.AppendV1(nil, a, gwDst), "GET / HTTP/1.1\r\n"...))
	for deadline := time.Now().Add(5 * time.Second); g.adm.inProgress() != 1 || !booked(g, a); {
		if time.Now().After(deadline) {
			t.Fatal("the first handshake was not booked against its PROXY address")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A again, from another port behind the balancer: over its limit.
	if got := rawAnswer(t, g, nil, append(proxyproto.AppendV2(nil, netip.AddrPortFrom(a.Addr(), 4002), gwDst, nil), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"...)); len(got) != 0 {
		t.Fatalf("second handshake of one client answered %q, want a close", got)
	}
	if n := m.rejected[RejectAddrLimit].Load(); n != 1 {
		t.Fatalf("%d addr_limit rejections, want 1", n)
	}
	// B, behind the same balancer: a session.
	c := wsThrough(t, g, nil, nil, proxyproto.AppendV1(nil, netip.MustParseAddrPort("198.51.100.77:4003"), gwDst))
	echoThrough(t, c, 64<<10)
	c.Close()
	hold.Close()
}

// booked reports whether the admission table counts a handshake for ap.
func booked(g *Gateway, ap netip.AddrPort) bool {
	k := keyOf(net.TCPAddrFromAddrPort(ap))
	g.adm.mu.Lock()
	defer g.adm.mu.Unlock()
	st := g.adm.addrs[k]
	return st != nil && st.handshakes == 1
}

// TestProxyOffNoCost: with the PROXY protocol off, a connection from any
// peer takes the old way (no PROXY state at all), and a header is a bad
// request like any other.
func TestProxyOffNoCost(t *testing.T) {
	g := startGateway(t, testpeer.EchoServer(t), nil)
	if g.proxy != nil {
		t.Fatal("PROXY state without ProxyProtocolFrom")
	}
	got := rawAnswer(t, g, nil, append(proxyproto.AppendV1(nil, netip.MustParseAddrPort("198.51.100.9:4001"), gwDst), "GET / HTTP/1.1\r\n\r\n"...))
	if !bytes.HasPrefix(got, []byte("HTTP/1.1 400 ")) {
		t.Fatalf("a header to a PROXY-off gateway: %q, want nginx's 400", got)
	}
}
