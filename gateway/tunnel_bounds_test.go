package gateway

// The tunnel's bounds under a client that breaks them: flow credit given
// back once for a failed gather, a UDP OPEN over the datagram limit, the
// list of blocked streams. Each broke before its fix (found in a review of
// the tunnel, 2026-12-02).

import (
	"net"
	"testing"

	"github.com/httvps/httvps/codec/mux"
	"github.com/httvps/httvps/internal/testpeer"
)

// tunnelState reads the one tunnel session's state on its loop.
func tunnelState(g *Gateway) (recvWin, credit int64, streams, blocked int) {
	l := g.loops[0]
	ch := make(chan struct{})
	l.post(func() {
		defer close(ch)
		for s := l.head.next; s != &l.head; s = s.next {
			if s.tun != nil {
				recvWin, credit = s.tun.recvWin, s.tun.credit
				streams, blocked = len(s.tun.streams), len(s.tun.blocked)
			}
		}
	})
	<-ch
	return
}

// TestTunnelGatherFailureCreditsOnce: 128 DATA pieces for a stream whose
// member has closed reach the gather limit; the writev fails, the stream
// ends, and the session window is given back exactly once. Broke before:
// the last piece was counted both in the queue and in the frame's rest,
// and the window grew by it.
func TestTunnelGatherFailureCreditsOnce(t *testing.T) {
	member := testpeer.ListenTCP(t, func(c *net.TCPConn) {}) // accept and close at once
	g := startGateway(t, member, func(c *Config) { c.Loops = 1 })
	c := dialTunnel(t, g, "s3cret")
	s := c.open(mux.KindTCP, nil)
	c.mu.Lock()
	c.wait("the member's EOF", func() bool { return s.fin })
	c.mu.Unlock()
	var b []byte
	piece := make([]byte, 100)
	for range 128 {
		b = mux.AppendData(b, s.id, false, piece)
	}
	c.send(b)
	waitFor(t, "the stream's end", func() bool { _, _, n, _ := tunnelState(g); return n == 0 })
	rw, cr, _, _ := tunnelState(g)
	if rw+cr != tunSessionWindow {
		t.Fatalf("session window %d + credit %d = %d, want %d", rw, cr, rw+cr, tunSessionWindow)
	}
}

// TestTunnelUDPOpenOversized: a udp OPEN whose first data is over 65,507
// bytes is reset PROTOCOL, as a DATA frame of that size is. Broke before:
// the OPEN's data was copied into the packet buffer (cut short) or sent
// and failed, and the client heard nothing.
func TestTunnelUDPOpenOversized(t *testing.T) {
	udp := testpeer.UDPEcho(t)
	g := startTunnelGateway(t, map[string]string{"tok": udp}, nil)
	c := dialTunnel(t, g, "tok")
	fr := mux.AppendOpen(nil, 1, mux.KindUDP, false, make([]byte, 65535-1))
	c.mu.Lock()
	s := &tunStream{c: c, id: 1, udp: true}
	c.streams[1] = s
	c.nextID = 3
	c.mu.Unlock()
	c.send(fr[:30000]) // in two messages: the packet is assembled
	c.send(fr[30000:])
	if code := c.waitReset(1); code != mux.ResetProtocol {
		t.Fatalf("reset %v, want PROTOCOL", code)
	}
	c.check()
}

// TestTunnelBlockedListBounded: a client that leaves the gateway no session
// window and cycles streams (OPEN, RESET) keeps the gateway's list of
// streams waiting for the window at its open streams. Broke before: ended
// streams stayed on it, so it grew without bound (1,201 entries for one
// open stream) and every event of the tunnel walked it.
func TestTunnelBlockedListBounded(t *testing.T) {
	echo, _ := echoMember(t)
	g := startGateway(t, echo, func(c *Config) { c.Loops = 1 })
	c := dialTunnelOpt(t, g, "s3cret", false)
	set := mux.DefaultSettings()
	set.MaxStreams = 0
	set.SessionWindow = 1
	c.send(mux.AppendSettings(nil, set))
	s1 := c.open(mux.KindTCP, []byte("x")) // its echo uses up the session window
	c.mu.Lock()
	c.wait("the echo", func() bool { return s1.total == 1 })
	c.mu.Unlock()
	id := uint32(3)
	const rounds, per = 6, 200
	for r := range rounds {
		var b []byte
		var ids []uint32
		for range per {
			b = mux.AppendOpen(b, id, mux.KindTCP, false, nil)
			ids = append(ids, id)
			id += 2
		}
		c.send(b)
		waitFor(t, "the streams connected", func() bool { _, _, n, _ := tunnelState(g); return n == per+1 })
		b = nil
		for _, x := range ids {
			b = mux.AppendReset(b, x, mux.ResetCancel)
		}
		c.send(b)
		waitFor(t, "the resets", func() bool { _, _, n, _ := tunnelState(g); return n == 1 })
		if _, _, n, bl := tunnelState(g); bl > n {
			t.Fatalf("round %d: %d streams wait for the window, %d are open", r, bl, n)
		}
	}
}
