package e2e

import (
	"bytes"
	"testing"
	"time"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/internal/testpeer"
)

// TestUDPPath: Shadowsocks UDP packets as binary messages on the udp path →
// gateway → ss-server -u → UDP echo server, and each reply back as one
// message, decrypted and compared.
func TestUDPPath(t *testing.T) {
	ss := testpeer.SSServer(t, testpeer.DefaultPassword, testpeer.DefaultMethod)
	echo := testpeer.UDPEcho(t)
	const secret = "udp-path-secret"
	m := &countMetrics{}
	g, gw := startGateway(t, gateway.Config{Metrics: m}, map[string]string{secret: ss})
	c, err := testpeer.NewCipher(testpeer.DefaultMethod, testpeer.DefaultPassword)
	if err != nil {
		t.Fatal(err)
	}
	ws := dialWS(t, wsURL(gw, secret, "udp"))
	ws.NetConn().SetDeadline(time.Now().Add(30 * time.Second))

	// ss-server itself drops packets much above 2 KB ("suspicious UDP
	// packet"; checked without the gateway), so sizes stay at MTU scale.
	sizes := []int{1, 17, 512, 1000, 1350, 1380, 1399, 1400, 1400, 64, 1400, 2000}
	for i, size := range sizes {
		payload := randomBytes(size)
		pkt, err := c.SealPacket(echo, payload)
		if err != nil {
			t.Fatal(err)
		}
		if err := ws.WriteMessage(pkt); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		// Loopback does not drop at this rate; a lost datagram shows up as
		// the connection deadline.
		msg, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("packet %d (%d bytes): reply: %v (gateway drops %d)", i, size, err, m.dropped.Load())
		}
		from, got, err := c.OpenPacket(msg)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if from != echo {
			t.Errorf("packet %d: reply from %s, want %s", i, from, echo)
		}
		if !bytes.Equal(got, payload) {
			t.Fatalf("packet %d: echo of %d bytes differs (%d bytes back)", i, size, len(got))
		}
	}

	// A burst in flight at once: every reply is one whole message.
	want := map[string]bool{}
	for i := range 20 {
		payload := randomBytes(1200 + i)
		want[string(payload)] = true
		pkt, _ := c.SealPacket(echo, payload)
		if err := ws.WriteMessage(pkt); err != nil {
			t.Fatal(err)
		}
	}
	for range 20 {
		msg, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("burst: %v (%d replies missing)", err, len(want))
		}
		_, got, err := c.OpenPacket(msg)
		if err != nil {
			t.Fatal(err)
		}
		if !want[string(got)] {
			t.Fatal("burst: unexpected or duplicate reply")
		}
		delete(want, string(got))
	}

	if n := g.Sessions(); n != 1 {
		t.Errorf("gateway reports %d sessions, want 1", n)
	}
	if err := ws.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := ws.ReadMessage(); err != nil {
			break
		}
	}
	if code, _, ok := ws.CloseCode(); !ok || code != 1000 {
		t.Errorf("close code %d (received %v), want 1000", code, ok)
	}
	if err := ws.WaitEOF(5 * time.Second); err != nil {
		t.Error(err)
	}
}
