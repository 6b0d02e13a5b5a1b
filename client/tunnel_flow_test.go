package client

// Flow control of the tunnel against the real gateway: streams the
// application closes early or never reads must not take the session window
// from the tunnel's other streams.

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// burstUpstream is a member server that, per connection, waits for one byte
// and then sends n bytes (and discards whatever else comes).
func burstUpstream(t *testing.T, n int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var b [1]byte
				if _, err := c.Read(b[:]); err != nil {
					return
				}
				c.Write(make([]byte, n))
				io.Copy(io.Discard, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// waitBuffered waits until st holds at least n received, unread bytes.
func waitBuffered(t *testing.T, st *tunStream, n int, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st.mu.Lock()
		have := st.rq.Len()
		st.mu.Unlock()
		if have >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d of %d bytes arrived", what, have, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestTunnelCloseUnreadCreditsSession: closing streams with unread bytes
// (an aborted download) gives their share of the session window back; 24
// of them (more than the 4 MiB session window holds at 200 KiB each) and
// the next stream still gets its bytes.
func TestTunnelCloseUnreadCreditsSession(t *testing.T) {
	const burst = 200 << 10
	up := burstUpstream(t, burst)
	addr, _ := startRealGateway(t, false, map[string]string{"tok-gateway-tunnel": up})
	tun := gatewayTunnel(t, 1, Gateway{Addr: addr})
	for i := range 24 {
		sc, err := tun.DialStream(dialCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sc.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
		waitBuffered(t, sc.(*tunStream), burst, fmt.Sprint("stream ", i))
		sc.Close()
	}
}

// TestTunnelUnreadStreamsDoNotStarveOthers: 20 streams whose application
// never reads (each holding its whole 256 KiB stream window, 5 MiB in all:
// more than the 4 MiB session window) and another stream of the same
// tunnel still gets all its bytes.
func TestTunnelUnreadStreamsDoNotStarveOthers(t *testing.T) {
	const burst = 1 << 20
	up := burstUpstream(t, burst)
	addr, _ := startRealGateway(t, false, map[string]string{"tok-gateway-tunnel": up})
	tun := gatewayTunnel(t, 1, Gateway{Addr: addr})
	for i := range 20 {
		sc, err := tun.DialStream(dialCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Close()
		if _, err := sc.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
		waitBuffered(t, sc.(*tunStream), int(tun.cfg.StreamWindow), fmt.Sprint("unread stream ", i))
	}
	sc, err := tun.DialStream(dialCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if _, err := sc.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	sc.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, io.LimitReader(sc, burst))
	if n != burst {
		t.Fatalf("the reading stream got %d of %d bytes (%v): the unread streams hold the session window", n, burst, err)
	}
}

// TestTunnelLargeMaxFrameStaysInWSFrame: a gateway announcing MAX_FRAME
// 4 MiB (docs/03 allows up to 16 MiB) still accepts WebSocket frames of at
// most 1 MiB (the gateway's MaxFrameSize; the test server's reader has the
// same bound): the client's DATA payloads stay within one such frame, and
// 6 MiB written in 4 MiB Writes arrive intact.
func TestTunnelLargeMaxFrameStaysInWSFrame(t *testing.T) {
	peer, reports := hashPeer(t)
	set := serverSettings(100)
	set.MaxFrame, set.StreamWindow, set.SessionWindow = 4<<20, 8<<20, 16<<20
	srv := startTunServer(t, tunToken, peer, "", set)
	tun := newTestTunnel(t, 1, nil, srv.Addr())
	s, err := tun.DialStream(dialCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sum, err := exchange(s, 91, 64<<10, 6<<20, 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	peerReports(t, reports, map[string]int{sum: 1})
}
