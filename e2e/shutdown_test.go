package e2e

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/httvps/httvps/gateway"
)

// TestShutdownGoingAway: Shutdown stops accepting, sends close 1001 to live
// sessions (tcp and udp) and returns once they have closed, well within
// DrainTimeout.
func TestShutdownGoingAway(t *testing.T) {
	up := holdUpstream(t)
	echo := silentUDP(t)
	const secret = "shutdown-secret"
	m := &countMetrics{}
	g, gw := startGateway(t, gateway.Config{Metrics: m, DrainTimeout: 5 * time.Second},
		map[string]string{secret: up, "shutdown-udp": echo})
	tcp := dialWS(t, wsURL(gw, secret, "tcp"))
	udp := dialWS(t, wsURL(gw, "shutdown-udp", "udp"))
	waitSessions(t, g, 2)

	done := make(chan error, 1)
	start := time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- g.Shutdown(ctx)
	}()
	for _, c := range []struct {
		name string
		c    interface {
			ReadMessage() ([]byte, error)
			CloseCode() (ws.StatusCode, string, bool)
			CloseWrite() error
			WaitEOF(time.Duration) error
		}
	}{{"tcp", tcp}, {"udp", udp}} {
		tcp.NetConn().SetDeadline(time.Now().Add(8 * time.Second))
		udp.NetConn().SetDeadline(time.Now().Add(8 * time.Second))
		if _, err := c.c.ReadMessage(); !errors.Is(err, io.EOF) {
			t.Fatalf("%s: read during shutdown: %v, want close", c.name, err)
		}
		if code, _, _ := c.c.CloseCode(); code != ws.StatusGoingAway {
			t.Errorf("%s: close code %d, want 1001", c.name, code)
		}
		c.c.CloseWrite()
		if err := c.c.WaitEOF(5 * time.Second); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("Shutdown took %v with cooperative clients", el)
	}
	if n := m.ends[gateway.EndShutdown].Load(); n != 2 {
		t.Errorf("session ends:%s, want 2 shutdown", m.endsString())
	}
	if c, err := net.DialTimeout("tcp", gw, time.Second); err == nil {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		n, _ := c.Read(make([]byte, 1))
		c.Close()
		if n > 0 {
			t.Error("gateway still answering after Shutdown")
		}
	}
}

// silentUDP is a UDP socket that never answers: a udp session only needs a
// route.
func silentUDP(t *testing.T) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}
