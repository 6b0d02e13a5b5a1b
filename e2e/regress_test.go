package e2e

import (
	"bytes"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/httvps/httvps/gateway"
)

// Regression tests, each named after what broke.

// TestClientVanishesAfterClose1000: a client that ends its stream with close
// 1000 and then closes its socket, while the upstream stays open and silent,
// must not keep its session (and upstream connection) until IdleTimeout.
// Broke in the first gateway: after the client's close frame the gateway
// stopped watching the client socket, so its FIN went unnoticed.
func TestClientVanishesAfterClose1000(t *testing.T) {
	up := holdUpstream(t)
	const secret = "vanish-secret"
	m := &countMetrics{}
	g, gw := startGateway(t, gateway.Config{Metrics: m}, map[string]string{secret: up})
	c := dialWS(t, wsURL(gw, secret, "tcp"))
	waitSessions(t, g, 1)
	if err := c.WriteMessage([]byte("last words")); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	c.Close()
	deadline := time.Now().Add(waitFor)
	for g.Sessions() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := g.Sessions(); n != 0 {
		t.Fatalf("%d session(s) still live %v after the client closed its socket (ends so far:%s)", n, waitFor, m.endsString())
	}
}

// TestClientVanishesWithoutClose: a client that closes its socket with no
// close frame ends its session at once (client_gone).
func TestClientVanishesWithoutClose(t *testing.T) {
	up := holdUpstream(t)
	const secret = "vanish-secret"
	m := &countMetrics{}
	g, gw := startGateway(t, gateway.Config{Metrics: m}, map[string]string{secret: up})
	c := dialWS(t, wsURL(gw, secret, "tcp"))
	waitSessions(t, g, 1)
	c.Close()
	waitSessions(t, g, 0)
	if m.ends[gateway.EndClientGone].Load() != 1 {
		t.Errorf("session ends:%s, want client_gone", m.endsString())
	}
}

// TestDecoyEndsWithFIN: a client still sending an over-long request when
// the gateway answers must get the decoy followed by an orderly close (FIN),
// its remaining bytes read and dropped, as from a web server that lingers.
// Broke in the first gateway: it closed the socket right after the decoy, so
// the rest of the request drew a RST — a fingerprint no other failure shows,
// and a reset can destroy the answer before the client has read it.
func TestDecoyEndsWithFIN(t *testing.T) {
	_, gw := startGateway(t, gateway.Config{}, map[string]string{"fin-secret": holdUpstream(t)})
	pad := strings.Repeat("a", 12<<10)
	req := "GET /fin-secret/tcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + pad
	ref, _, err := probe(gw, []byte(req+pad+"\r\n\r\n"))
	if err != nil || !bytes.HasPrefix(ref, []byte("HTTP/1.1 400 ")) {
		t.Fatalf("over-long request: %q, %v", ref, err)
	}
	c, err := net.DialTimeout("tcp", gw, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(6 * time.Second))
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(ref))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(dropHeader(got, "Date"), dropHeader(ref, "Date")) {
		t.Fatalf("answer to an over-long request: %q, %v; want the decoy", got, err)
	}
	// The rest of the request, as a slow client would send it.
	if _, err := c.Write([]byte(pad + "\r\n\r\n")); err != nil {
		t.Fatalf("rest of the request: %v", err)
	}
	rest, err := io.ReadAll(c)
	if err != nil || len(rest) > 0 {
		t.Errorf("after the decoy: %d more bytes, %v; want a clean EOF", len(rest), err)
	}
	time.Sleep(100 * time.Millisecond)
	if err := pendingSocketError(c); err != nil {
		t.Errorf("after the decoy: %v (the gateway closed with the request unread)", err)
	}
}

// pendingSocketError returns the socket's pending error (SO_ERROR): a reset
// the peer sent after everything was read shows up here.
func pendingSocketError(c net.Conn) error {
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return err
	}
	var soErr int
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		soErr, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_ERROR)
	}); err != nil {
		return err
	}
	if gerr != nil {
		return gerr
	}
	if soErr != 0 {
		return syscall.Errno(soErr)
	}
	return nil
}
