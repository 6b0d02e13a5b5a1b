package client

// The client against a gateway that stops reading (its socket fills, the
// client's writes block) and keeps sending: the client's reader must go on
// and its memory stay bounded.

import (
	"errors"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/httvps/httvps/codec"
	"github.com/httvps/httvps/codec/mux"
)

// deafGateway upgrades one tunnel, sends set as its SETTINGS, never reads
// again, and writes each []byte sent on the returned channel (WebSocket
// frames, ready-made).
func deafGateway(t *testing.T, set mux.Settings) (string, chan<- []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan []byte, 16)
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop); ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.(*net.TCPConn).SetReadBuffer(4096) // fill up soon
		u := ws.Upgrader{Protocol: func(p []byte) bool { return string(p) == mux.Subprotocol }}
		if _, err := u.Upgrade(c); err != nil {
			return
		}
		if _, err := c.Write(codec.AppendServerFrame(nil, ws.OpBinary, mux.AppendSettings(nil, set))); err != nil {
			return
		}
		for {
			select {
			case b := <-out:
				if _, err := c.Write(b); err != nil {
					return
				}
			case <-stop:
				return
			}
		}
	}()
	return ln.Addr().String(), out
}

// blockWriter starts a stream writing without end to a gateway that does
// not read and waits until its write is parked on the full socket.
func blockWriter(t *testing.T, tun *Tunnel) *tunSession {
	t.Helper()
	sc, err := tun.DialStream(dialCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := sc.Write(buf); err != nil {
				return
			}
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !writeParked() {
		if time.Now().After(deadline) {
			t.Fatal("the stream's write never blocked on the socket")
		}
		time.Sleep(5 * time.Millisecond)
	}
	st := sc.(*tunStream)
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.sess
}

// writeParked reports a tunnel stream's write waiting for the socket to
// take more (the goroutine parked in the poller's write wait).
func writeParked() bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "waitWrite") && strings.Contains(g, "(*tunStream).sendSome") {
			return true
		}
	}
	return false
}

// bigWindows lets the client send far more than the sockets hold.
func bigWindows() mux.Settings {
	set := mux.DefaultSettings()
	set.MaxStreams = 16
	set.StreamWindow, set.SessionWindow = 256<<20, 256<<20
	return set
}

// waitSendWin waits until the session's send window reaches want (the
// gateway's WINDOW 0 marker was processed: every frame before it was too).
func waitSendWin(t *testing.T, s *tunSession, want int64, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		w, dead := s.sendWin, s.dead
		s.mu.Unlock()
		if w >= want {
			return
		}
		if dead != nil {
			t.Fatalf("%s: tunnel ended: %v", what, dead)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the client's reader did not get to the marker (send window %d, want %d)", what, w, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestWSPingWhileWriterBlocked: WebSocket pings arriving while a write is
// blocked on the full socket must not stop the reader (it answered pings
// itself under the write lock and waited behind the writer for good).
func TestWSPingWhileWriterBlocked(t *testing.T) {
	addr, out := deafGateway(t, bigWindows())
	tun := newTestTunnel(t, 1, nil, addr)
	s := blockWriter(t, tun)
	s.mu.Lock()
	base := s.sendWin
	s.mu.Unlock()
	var b []byte
	for range 10 {
		b = codec.AppendServerFrame(b, ws.OpPing, []byte("ping"))
	}
	b = codec.AppendServerFrame(b, ws.OpBinary, mux.AppendWindow(nil, 0, 12345))
	out <- b
	waitSendWin(t, s, base+12345, "pings then WINDOW")
}

// TestTunnelPingFloodQueueBounded: a gateway that does not read and floods
// PINGs (1M of them, 17 MB of answers) keeps the client's queue of control
// frames small: one PING ACK, the latest, waits; the tunnel stays up.
func TestTunnelPingFloodQueueBounded(t *testing.T) {
	addr, out := deafGateway(t, bigWindows())
	tun := newTestTunnel(t, 1, nil, addr)
	s := blockWriter(t, tun)
	s.mu.Lock()
	base := s.sendWin
	s.mu.Unlock()
	const pings, perMsg = 1 << 20, 3000
	var id [8]byte
	for sent := 0; sent < pings; {
		var frames []byte
		for k := 0; k < perMsg && sent < pings; k++ {
			id[0], id[1], id[2] = byte(sent), byte(sent>>8), byte(sent>>16)
			frames = mux.AppendPing(frames, id, false)
			sent++
		}
		out <- codec.AppendServerFrame(nil, ws.OpBinary, frames)
	}
	out <- codec.AppendServerFrame(nil, ws.OpBinary, mux.AppendWindow(nil, 0, 12345))
	waitSendWin(t, s, base+12345, "PING flood then WINDOW")
	s.ctlMu.Lock()
	n, ack := s.ctl.size(), s.ctl.ack
	s.ctlMu.Unlock()
	if n > 4<<10 {
		t.Fatalf("%d bytes of control frames queued after %d PINGs (bound: one ACK)", n, pings)
	}
	if got := int(ack[0]) | int(ack[1])<<8 | int(ack[2])<<16; got != pings-1 {
		t.Fatalf("queued ACK is for PING %x, want the latest", ack[:3])
	}
}

// TestTunnelControlOverflowCloses: control frames that cannot be coalesced
// (RESETs) past the bound while the gateway does not read close the tunnel
// with ErrControlOverflow instead of growing.
func TestTunnelControlOverflowCloses(t *testing.T) {
	addr, _ := deafGateway(t, bigWindows())
	tun := newTestTunnel(t, 1, nil, addr)
	s := blockWriter(t, tun)
	// The writer may take one batch before it blocks too: queue 3× the
	// bound, so that past it is queued whatever that batch took.
	for id := uint32(1); id < 3*ctlMaxBytes/(mux.HeaderLen+4); id++ {
		s.queue(func(b []byte) []byte { return mux.AppendReset(b, id, mux.ResetCancel) })
	}
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatal("tunnel still up with its control queue over the bound")
	}
	s.mu.Lock()
	err := s.dead
	s.mu.Unlock()
	if !errors.Is(err, ErrControlOverflow) {
		t.Fatalf("tunnel ended with %v, want ErrControlOverflow", err)
	}
}
