package e2e

import (
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
	deadline := time.Now().Add(3 * time.Second)
	for g.Sessions() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := g.Sessions(); n != 0 {
		t.Fatalf("%d session(s) still live 3 s after the client closed its socket (ends so far:%s)", n, m.endsString())
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
