package client

import (
	"context"
	"errors"
	"testing"

	"github.com/httvps/httvps/internal/testpeer"
)

// outlineKey is a key for the real gateway at gw (TLS, pinned) whose
// static route sends token to upstream.
func outlineKey(gw string, cert *testpeer.TestCert, token string, more ...Gateway) *Key {
	g := Gateway{Addr: gw}
	if cert != nil {
		g.TLS, g.Pin = true, pinOf(cert)
	}
	return &Key{Token: token, Gateways: append(more, g), Cipher: "chacha20-ietf-poly1305", Secret: testPassword}
}

// curl through the proxy front over the Outline paths of a real gateway
// (TLS, pinned) to a real ss-server: 64 MiB each way, and UDP through
// /<token>/udp.
func TestCurlThroughProxyOutline(t *testing.T) {
	srv := testpeer.SSServer(t, testPassword, "chacha20-ietf-poly1305")
	const token = "outline-path-token-0123456789"
	gw, cert := startRealGateway(t, true, map[string]string{token: srv})
	o, err := NewOutline(outlineKey(gw, cert, token))
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewShadowsocks(o, "chacha20-ietf-poly1305", testPassword)
	if err != nil {
		t.Fatal(err)
	}
	curlThroughProxy(t, s, 64<<20)

	pc, err := s.ListenPacket(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	checkPacketEcho(t, pc, testpeer.UDPEcho(t), []int{1, 700, 1300})

	st := o.Status()
	if st.Gateway != gw || !st.Connected || st.Up < 64<<20 || st.Down < 64<<20 {
		t.Errorf("status %+v", st)
	}
}

// A dead first gateway is skipped; a gateway that does not know the token
// answers the decoy, and when every gateway does, the error is ErrRefused.
func TestOutlineFailoverAndRefused(t *testing.T) {
	srv := testpeer.SSServer(t, testPassword, "chacha20-ietf-poly1305")
	const token = "failover-token-0123456789"
	gw, _ := startRealGateway(t, false, map[string]string{token: srv})
	dead := Gateway{Addr: testpeer.DeadAddr(t)}

	o, _ := NewOutline(outlineKey(gw, nil, token, dead))
	s, _ := NewShadowsocks(o, "chacha20-ietf-poly1305", testPassword)
	echo := testpeer.EchoServer(t)
	c, err := s.DialStream(testCtx(t), echo)
	if err != nil {
		t.Fatalf("with a dead first gateway: %v", err)
	}
	c.Write([]byte("x"))
	b := make([]byte, 1)
	if _, err := c.Read(b); err != nil || b[0] != 'x' {
		t.Fatalf("echo after failover: %q %v", b, err)
	}
	c.Close()
	if st := o.Status(); st.Gateway != gw {
		t.Errorf("after failover the gateway tried first is %s, want %s", st.Gateway, gw)
	}

	bad, _ := NewOutline(outlineKey(gw, nil, "not-a-token", Gateway{Addr: gw}))
	_, err = bad.DialStream(context.Background())
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("unknown token on every gateway: %v, want ErrRefused", err)
	}
	// Refused by one, unreachable at the other: not ErrRefused (the token
	// may be fine).
	mixed, _ := NewOutline(outlineKey(gw, nil, "not-a-token", dead))
	if _, err = mixed.DialStream(context.Background()); err == nil || errors.Is(err, ErrRefused) {
		t.Fatalf("refused and unreachable: %v, want a non-ErrRefused error", err)
	}
}
