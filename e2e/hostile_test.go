package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/internal/testpeer"
)

// Regression tests for issue 7 (hostile clients): findings 1–3.

// dialFrom connects to addr from the loopback source address src.
func dialFrom(src, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return d.Dial("tcp", addr)
}

// honestTLS opens a TLS WebSocket from src and relays one hash-checked
// exchange, all within bound.
func honestTLS(gw, src, secret string, cert *testpeer.TestCert, version uint16, bound time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	tcp, err := d.DialContext(ctx, "tcp", gw)
	if err != nil {
		return err
	}
	defer tcp.Close()
	tcp.SetDeadline(time.Now().Add(bound))
	tc := tls.Client(tcp, cert.ClientConfig(version))
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("tls handshake: %w", err)
	}
	c, err := testpeer.DialWSOver(ctx, wsURL(gw, secret, "tcp"), tc)
	if err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	defer c.Close()
	return duplexExchange(c, 7, 64<<10, 64<<10, false)
}

// TestHandshakeSlotNotHeldWhileWaiting (finding 1): connections that send
// the first byte (or the first bytes) of a ClientHello and stall must not
// hold the handshake CPU slot. With one slot and four such stalled
// connections, six honest TLS sessions in a row all succeed, each within a
// bound far below the stalled ones' handshake timeout. The old gateway held
// the slot while waiting for the client random: 0 of 6.
func TestHandshakeSlotNotHeldWhileWaiting(t *testing.T) {
	_, gw, cert := startTLSGateway(t, gateway.Config{
		TLS:              &gateway.TLSConfig{HandshakeCPU: 1},
		HandshakeTimeout: 20 * time.Second,
	}, map[string]string{"slot-secret": duplexPeer(t)})
	hello := clientHelloBytes(t)
	stalls := [][]byte{{22}, hello[:3], hello[:11], hello[:len(hello)/2]}
	for i, b := range stalls {
		c, err := dialFrom("127.0.0.2", gw)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(b); err != nil {
			t.Fatalf("stall %d: %v", i, err)
		}
	}
	time.Sleep(200 * time.Millisecond) // the stalled bytes are read
	for i := range 6 {
		if err := honestTLS(gw, "127.0.0.3", "slot-secret", cert, tls.VersionTLS13, 8*time.Second); err != nil {
			t.Fatalf("honest session %d of 6 beside %d stalled ClientHellos: %v", i+1, len(stalls), err)
		}
	}
}

// splitHelloConn sends the first TLS record it is given (the ClientHello)
// as several records of at most size bytes of handshake data each, as
// DPI-evasion clients do.
type splitHelloConn struct {
	net.Conn
	size int
	done bool
}

func (c *splitHelloConn) Write(p []byte) (int, error) {
	if c.done || len(p) < 5 || p[0] != 22 {
		return c.Conn.Write(p)
	}
	c.done = true
	n := int(p[3])<<8 | int(p[4])
	if len(p) != 5+n {
		return 0, fmt.Errorf("split: first write is %d bytes, record %d", len(p), 5+n)
	}
	var out []byte
	for body := p[5:]; len(body) > 0; {
		k := min(c.size, len(body))
		out = append(out, 22, p[1], p[2], byte(k>>8), byte(k))
		out = append(out, body[:k]...)
		body = body[k:]
	}
	if _, err := c.Conn.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// TestSplitClientHello (finding 2): a ClientHello split across TLS records
// (1, 5, 37 and 100 bytes of handshake data per record) connects and
// relays intact, over TLS 1.3 and 1.2. The old gateway read the client
// random at a fixed offset of the first record and failed every such
// handshake ("no TLS secrets"), keeping both traffic secrets in a table
// for ever.
func TestSplitClientHello(t *testing.T) {
	_, gw, cert := startTLSGateway(t, gateway.Config{}, map[string]string{"split-secret": duplexPeer(t)})
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		for _, size := range []int{1, 5, 37, 100} {
			t.Run(fmt.Sprintf("%s/%d", tlsName(v), size), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				tcp, err := net.DialTimeout("tcp", gw, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer tcp.Close()
				tc := tls.Client(&splitHelloConn{Conn: tcp, size: size}, cert.ClientConfig(v))
				if err := tc.HandshakeContext(ctx); err != nil {
					t.Fatalf("handshake: %v", err)
				}
				c, err := testpeer.DialWSOver(ctx, wsURL(gw, "split-secret", "tcp"), tc)
				if err != nil {
					t.Fatalf("upgrade: %v", err)
				}
				defer c.Close()
				if err := duplexExchange(c, uint64(size), 1<<20, 1<<20, false); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

func tlsName(v uint16) string {
	if v == tls.VersionTLS12 {
		return "tls12"
	}
	return "tls13"
}

// TestSessionResumption: a TLS 1.3 client that kept the gateway's session
// ticket resumes (no certificate signature), and the resumed session and
// the first one both relay intact (the ticket record shifts the server's
// record sequence numbers; the relay must start past it).
func TestSessionResumption(t *testing.T) {
	m := &countMetrics{}
	_, gw, cert := startTLSGateway(t, gateway.Config{Metrics: m}, map[string]string{"resume-secret": duplexPeer(t)})
	cfg := cert.ClientConfig(tls.VersionTLS13)
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		tcp, err := net.DialTimeout("tcp", gw, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		tc := tls.Client(tcp, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			t.Fatalf("handshake %d: %v", i, err)
		}
		c, err := testpeer.DialWSOver(ctx, wsURL(gw, "resume-secret", "tcp"), tc)
		if err != nil {
			t.Fatalf("upgrade %d: %v", i, err)
		}
		// A client reads the ticket only after the handshake: the first
		// exchange carries it.
		if err := duplexExchange(c, uint64(i), 256<<10, 256<<10, false); err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		if got := tc.ConnectionState().DidResume; got != (i > 0) {
			t.Errorf("session %d: resumed %v", i, got)
		}
		c.Close()
		tcp.Close()
		cancel()
	}
	if n := m.tlsResumed.Load(); n != 2 {
		t.Errorf("gateway counted %d resumed handshakes, want 2", n)
	}
}

// honestBesideFlood opens n honest TLS sessions from 127.0.0.3, one after
// the other, each of which must relay intact within 10 s.
func honestBesideFlood(t *testing.T, g *gateway.Gateway, gw, secret string, cert *testpeer.TestCert, n int) {
	t.Helper()
	for i := range n {
		if err := honestTLS(gw, "127.0.0.3", secret, cert, tls.VersionTLS13, 10*time.Second); err != nil {
			t.Fatalf("honest session %d of %d beside the flood: %v (handshakes in progress %d)", i+1, n, err, g.Handshakes())
		}
	}
}

// holdIdle keeps opening connections from src that send nothing, reopening
// each one the gateway closes, n at a time, until stop is closed.
func holdIdle(t *testing.T, src, gw string, n int, stop <-chan struct{}, wg *sync.WaitGroup, opened *atomic.Int64) {
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := dialFrom(src, gw)
				if err != nil {
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
					}
					continue
				}
				opened.Add(1)
				done := make(chan struct{})
				go func() {
					c.Read(make([]byte, 1)) // returns when the gateway closes it
					close(done)
				}()
				select {
				case <-stop:
					c.Close()
					<-done
					return
				case <-done:
					c.Close()
					time.Sleep(200 * time.Millisecond) // a reopening client, not a spin
				}
			}
		}()
	}
}

// TestOneHostCannotHoldTheHandshakeCap (finding 3): one address holding
// 1,500 idle connections, reopened as they close, against a gateway whose
// global cap is 1,024 handshakes, leaves others connecting: 10 honest TLS
// sessions from another address all succeed. The per-address limit turns
// the flood away (addr_limit). The old gateway refused honest clients with
// "capacity" once the flood held the cap (1 of 29 got through).
func TestOneHostCannotHoldTheHandshakeCap(t *testing.T) {
	m := &countMetrics{}
	g, gw, cert := startTLSGateway(t, gateway.Config{
		Metrics:          m,
		MaxHandshakes:    1024,
		HandshakeTimeout: 30 * time.Second,
		AddrRate:         -1, // this test is about the concurrent limit
	}, map[string]string{"cap-secret": duplexPeer(t)})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var opened atomic.Int64
	holdIdle(t, "127.0.0.2", gw, 1500, stop, &wg, &opened)
	defer func() { close(stop); wg.Wait() }()
	ctlEventually(t, 30*time.Second, "the flood to reach the per-address limit", func() bool {
		return m.rejected[gateway.RejectAddrLimit].Load() > 0
	})
	honestBesideFlood(t, g, gw, "cap-secret", cert, 10)
	t.Logf("flood opened %d connections; rejected addr_limit=%d capacity=%d evicted=%d; handshakes in progress %d",
		opened.Load(), m.rejected[gateway.RejectAddrLimit].Load(), m.rejected[gateway.RejectCapacity].Load(),
		m.rejected[gateway.RejectEvicted].Load(), g.Handshakes())
	if n := m.rejected[gateway.RejectCapacity].Load(); n != 0 {
		t.Errorf("%d connections refused for capacity; the per-address limit should have held the flood", n)
	}
}

// TestManyHostsEvictIdleHandshakes (finding 3): eight addresses each hold
// 200 idle connections (under the per-address limit, 1,600 in all) against
// a global cap of 1,024: at the cap the oldest idle handshakes give way, so
// 10 honest TLS sessions from a ninth address all succeed, and the
// evictions are counted.
func TestManyHostsEvictIdleHandshakes(t *testing.T) {
	m := &countMetrics{}
	g, gw, cert := startTLSGateway(t, gateway.Config{
		Metrics:          m,
		MaxHandshakes:    1024,
		HandshakeTimeout: 30 * time.Second,
		AddrRate:         -1,
	}, map[string]string{"evict-secret": duplexPeer(t)})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var opened atomic.Int64
	for i := range 8 {
		holdIdle(t, fmt.Sprintf("127.0.1.%d", i+1), gw, 200, stop, &wg, &opened)
	}
	defer func() { close(stop); wg.Wait() }()
	ctlEventually(t, 30*time.Second, "the flood to reach the global cap", func() bool {
		return m.rejected[gateway.RejectEvicted].Load() > 0
	})
	honestBesideFlood(t, g, gw, "evict-secret", cert, 10)
	if n := g.Handshakes(); n > 1024 {
		t.Errorf("%d handshakes in progress, cap 1024", n)
	}
	t.Logf("flood opened %d connections; evicted=%d capacity=%d; handshakes in progress %d",
		opened.Load(), m.rejected[gateway.RejectEvicted].Load(), m.rejected[gateway.RejectCapacity].Load(), g.Handshakes())
}

// TestPerAddressRate: under pressure (a quarter of MaxHandshakes in use,
// here by 16 idle connections from one address), new connections from
// another address past AddrBurst are refused at accept (addr_rate), while a
// third address connects normally; without pressure nobody is refused
// (many users behind one carrier-grade NAT address).
func TestPerAddressRate(t *testing.T) {
	m := &countMetrics{}
	g, gw, cert := startTLSGateway(t, gateway.Config{
		Metrics:          m,
		MaxHandshakes:    64,
		HandshakeTimeout: 30 * time.Second,
		AddrRate:         1,
		AddrBurst:        5,
	}, map[string]string{"rate-secret": duplexPeer(t)})
	burst := func(src string, n int) time.Duration {
		start := time.Now()
		for range n {
			c, err := dialFrom(src, gw)
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
		}
		return time.Since(start)
	}
	// No pressure: 10 requests from one address, one after the other (twice
	// its burst; fewer than the 16 that make pressure), all answered. Each
	// is read to the gateway's close, so none is still waiting in the accept
	// queue when the next phase counts handshakes.
	for i := range 10 {
		c, err := dialFrom("127.0.0.5", gw)
		if err != nil {
			t.Fatal(err)
		}
		tc := tls.Client(c, cert.ClientConfig(tls.VersionTLS13))
		io.WriteString(tc, "GET / HTTP/1.0\r\n\r\n")
		b, _ := readUntilClosed(tc, 20*time.Second)
		c.Close()
		if !bytes.HasPrefix(b, []byte("HTTP/1.1 404 ")) {
			t.Fatalf("request %d from 127.0.0.5 without pressure: answer %q", i, b)
		}
	}
	waitHandshakes(t, g, 0)
	if n := m.rejected[gateway.RejectAddrRate].Load(); n != 0 {
		t.Fatalf("%d connections refused without pressure", n)
	}
	for range 16 {
		c, err := dialFrom("127.0.0.4", gw)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	ctlEventually(t, 20*time.Second, "16 idle handshakes", func() bool { return g.Handshakes() >= 16 })
	el := burst("127.0.0.2", 40)
	// At most the burst plus what refilled meanwhile got through.
	admitted := int64(5 + el.Seconds() + 1)
	ctlEventually(t, 10*time.Second, "refusals to be counted", func() bool {
		return m.rejected[gateway.RejectAddrRate].Load() >= 40-admitted
	})
	if err := honestTLS(gw, "127.0.0.3", "rate-secret", cert, tls.VersionTLS13, 10*time.Second); err != nil {
		t.Fatalf("another address after the burst: %v", err)
	}
}

// waitHandshakes waits until the gateway has n handshakes in progress.
func waitHandshakes(t *testing.T, g *gateway.Gateway, n int) {
	t.Helper()
	ctlEventually(t, 10*time.Second, fmt.Sprintf("%d handshakes in progress", n), func() bool { return g.Handshakes() == n })
}
