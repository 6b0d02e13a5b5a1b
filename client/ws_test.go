package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/httvps/httvps/internal/testpeer"
)

// The WebSocket client against the real gateway (in-process, Outline paths).

func dialCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	t.Cleanup(cancel)
	return ctx
}

func pinOf(c *testpeer.TestCert) []byte {
	sum := sha256.Sum256(c.Cert.Certificate[0])
	return sum[:]
}

// TestWSStreamBothWays: 6 MiB each way through the gateway's tcp path, the
// client's writes 2 MiB each (over the gateway's 1 MiB message limit, so
// they must be split), half-closed from both ends, hashed at both ends;
// plaintext, and TLS accepted by pin.
func TestWSStreamBothWays(t *testing.T) {
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"plaintext", false}, {"tls-pin", true}} {
		t.Run(tc.name, func(t *testing.T) {
			peer, reports := hashPeer(t)
			addr, cert := startRealGateway(t, tc.tls, map[string]string{"stream-secret": peer})
			gw := Gateway{Addr: addr, TLS: tc.tls}
			if tc.tls {
				gw.Pin = pinOf(cert)
			}
			c, proto, err := DialWS(dialCtx(t), gw, "/stream-secret/tcp", WSOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if proto != "" {
				t.Fatalf("subprotocol %q, none offered", proto)
			}
			const down, up = 6 << 20, 6 << 20
			sum, err := exchange(NewWSStream(c), 42, down, up, 2<<20)
			if err != nil {
				t.Fatal(err)
			}
			checkPeer(t, reports, sum, up)
		})
	}
}

// TestWSHalfClose: after the client's close 1000 the gateway keeps sending
// (the peer's bytes arrive in full after the client finished), and the
// member's FIN comes back as EOF.
func TestWSHalfClose(t *testing.T) {
	peer, reports := hashPeer(t)
	addr, _ := startRealGateway(t, false, map[string]string{"hc": peer})
	c, _, err := DialWS(dialCtx(t), Gateway{Addr: addr}, "/hc/tcp", WSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := NewWSStream(c)
	// Nothing up but the header, closed at once; 1 MiB down afterwards.
	sum, err := exchange(s, 7, 1<<20, 0, 1024)
	if err != nil {
		t.Fatal(err)
	}
	checkPeer(t, reports, sum, 0)
	if _, err := s.Write([]byte("late")); !errors.Is(err, ErrWSWriteClosed) {
		t.Fatalf("write after CloseWrite: %v, want ErrWSWriteClosed", err)
	}
	if _, err := s.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after EOF: %v, want io.EOF", err)
	}
}

// TestWSTLSVerification: the chain is verified normally without a pin (with
// the SNI), a wrong pin fails, an untrusted certificate fails, and neither
// failure is a refusal.
func TestWSTLSVerification(t *testing.T) {
	addr, cert := startRealGateway(t, true, map[string]string{"s": testpeer.EchoServer(t)})
	wrongPin := pinOf(cert)
	wrongPin[0] ^= 1
	tests := []struct {
		name string
		gw   Gateway
		base *tls.Config
		err  error // nil: must connect
		ok   bool
	}{
		{name: "pin", gw: Gateway{Addr: addr, TLS: true, Pin: pinOf(cert)}, ok: true},
		{name: "chain with SNI", gw: Gateway{Addr: addr, TLS: true, SNI: "localhost"}, base: &tls.Config{RootCAs: cert.Pool}, ok: true},
		{name: "wrong pin", gw: Gateway{Addr: addr, TLS: true, Pin: wrongPin}, err: ErrPinMismatch},
		{name: "pin beats a trusting base", gw: Gateway{Addr: addr, TLS: true, Pin: wrongPin}, base: &tls.Config{RootCAs: cert.Pool}, err: ErrPinMismatch},
		{name: "untrusted chain", gw: Gateway{Addr: addr, TLS: true, SNI: "localhost"}},
		{name: "wrong SNI for the chain", gw: Gateway{Addr: addr, TLS: true, SNI: "other.example"}, base: &tls.Config{RootCAs: cert.Pool}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := DialWS(dialCtx(t), tc.gw, "/s/tcp", WSOptions{TLSConfig: tc.base})
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				s := NewWSStream(c)
				if _, err := s.Write([]byte("ping")); err != nil {
					t.Fatal(err)
				}
				got := make([]byte, 4)
				if _, err := io.ReadFull(s, got); err != nil || string(got) != "ping" {
					t.Fatalf("echo %q %v", got, err)
				}
				return
			}
			if err == nil {
				c.Close()
				t.Fatal("connected")
			}
			if errors.Is(err, ErrRefused) {
				t.Fatalf("a TLS failure reported as a refusal: %v", err)
			}
			if tc.err != nil && !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
		})
	}
}

// TestWSRefused: the gateway's decoy answer (wrong secret, unknown path)
// is ErrRefused; a closed port is not.
func TestWSRefused(t *testing.T) {
	addr, _ := startRealGateway(t, false, map[string]string{"right": testpeer.EchoServer(t)})
	for _, path := range []string{"/wrong/tcp", "/v1/nothing", "/right/xyz"} {
		_, _, err := DialWS(dialCtx(t), Gateway{Addr: addr}, path, WSOptions{})
		if !errors.Is(err, ErrRefused) {
			t.Errorf("%s: %v, want ErrRefused", path, err)
		}
	}
	_, _, err := DialWS(dialCtx(t), Gateway{Addr: testpeer.DeadAddr(t)}, "/right/tcp", WSOptions{Timeout: 5 * time.Second})
	if err == nil || errors.Is(err, ErrRefused) {
		t.Fatalf("closed port: %v, want a dial error", err)
	}
}

// TestWSPacket: one message is one datagram both ways through the udp path,
// sizes up to the largest UDP payload.
func TestWSPacket(t *testing.T) {
	addr, _ := startRealGateway(t, false, map[string]string{"u": testpeer.UDPEcho(t)})
	c, _, err := DialWS(dialCtx(t), Gateway{Addr: addr}, "/u/udp", WSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := NewWSPacket(c)
	defer p.Close()
	buf := make([]byte, 65536)
	for i, n := range []int{1, 100, 1400, 20000, 65507} {
		pkt := bytes.Repeat([]byte{byte(i + 1)}, n)
		// UDP may drop: resend until the answer comes, bounded.
		deadline := time.Now().Add(waitLong)
		for {
			if _, err := p.Write(pkt); err != nil {
				t.Fatal(err)
			}
			p.SetReadDeadline(time.Now().Add(time.Second))
			k, err := p.Read(buf)
			if err == nil {
				if !bytes.Equal(buf[:k], pkt) {
					t.Fatalf("packet %d: got %d bytes back, want %d identical", i, k, n)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("packet %d: %v", i, err)
			}
		}
	}
	// A datagram longer than the buffer is cut, as UDP does.
	p.SetReadDeadline(time.Now().Add(waitLong))
	if _, err := p.Write(make([]byte, 3000)); err != nil {
		t.Fatal(err)
	}
	if k, err := p.Read(buf[:1000]); err != nil || k != 1000 {
		t.Fatalf("cut read: %d %v", k, err)
	}
}
