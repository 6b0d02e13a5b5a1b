package client

// The tunnel client against the real gateway's /v1/tunnel, in-process on
// loopback (the helpers are in ws_helpers_test.go).

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/httvps/httvps/codec/mux"
	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/internal/testpeer"
)

func gatewayTunnel(t *testing.T, pool int, gws ...Gateway) *Tunnel {
	tun := NewTunnel(TunnelConfig{Gateways: gws, Token: "tok-gateway-tunnel", Pool: pool, Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { tun.Close() })
	return tun
}

// manyExchanges runs n concurrent streams of distinct bytes both ways and
// checks both ends. firstByte, if set, is called as each stream receives
// its first bytes.
func manyExchanges(t *testing.T, tun *Tunnel, reports <-chan hashResult, n int, down, up int64, firstByte func()) {
	var mu sync.Mutex
	want := map[string]int{}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := tun.DialStream(dialCtx(t))
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			if firstByte != nil {
				s = &firstRead{StreamConn: s, f: firstByte}
			}
			sum, err := exchange(s, uint64(i), down, up+int64(i), 16<<10)
			if err != nil {
				errs <- fmt.Errorf("stream %d: %w", i, err)
				return
			}
			mu.Lock()
			want[sum]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	peerReports(t, reports, want)
}

// TestGatewayTunnelStreams: 300 streams (over one tunnel's 256) on a pool of
// two, plaintext and TLS by pin.
func TestGatewayTunnelStreams(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		t.Run(fmt.Sprint("tls=", tlsOn), func(t *testing.T) {
			peer, reports := hashPeer(t)
			addr, cert := startRealGateway(t, tlsOn, map[string]string{"tok-gateway-tunnel": peer})
			gw := Gateway{Addr: addr, TLS: tlsOn}
			if tlsOn {
				gw.Pin = pinOf(cert)
			}
			tun := gatewayTunnel(t, 2, gw)
			manyExchanges(t, tun, reports, 300, 300<<10, 100<<10, nil)
			if st := tun.Status(); !st.Connected || st.RTT == 0 {
				t.Fatalf("status %+v", st)
			}
		})
	}
}

// TestGatewayTunnelDrain: the gateway's drain (GOAWAY, then 1001) in the
// middle of transfers loses nothing (transfers sized to end well within the
// helper's 2 s drain deadline).
func TestGatewayTunnelDrain(t *testing.T) {
	peer, reports := hashPeer(t)
	g, addr, _ := startRealGatewayG(t, false, map[string]string{"tok-gateway-tunnel": peer})
	tun := gatewayTunnel(t, 1, Gateway{Addr: addr})
	const n = 20
	var flowing sync.WaitGroup
	flowing.Add(n)
	go func() {
		flowing.Wait() // every stream open and receiving
		g.Shutdown(context.Background())
	}()
	manyExchanges(t, tun, reports, n, 1<<20, 100<<10, flowing.Done)
}

// TestGatewayTunnelUDP: packets both ways through a udp stream.
func TestGatewayTunnelUDP(t *testing.T) {
	tcp := testpeer.EchoServer(t)
	_, port, _ := net.SplitHostPort(tcp)
	pc, err := net.ListenPacket("udp", "127.0.0.1:"+port) // the route's UDP port is its TCP port
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 65536)
		for {
			n, a, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], a)
		}
	}()
	addr, _ := startRealGateway(t, false, map[string]string{"tok-gateway-tunnel": tcp})
	tun := gatewayTunnel(t, 1, Gateway{Addr: addr})
	c, err := tun.DialPacket(dialCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 70000)
	for _, n := range []int{1, 1400, 30000, mux.MaxUDPPacket} {
		pkt := make([]byte, n)
		for i := range pkt {
			pkt[i] = byte(i * 7)
		}
		deadline := time.Now().Add(waitLong)
		for {
			c.Write(pkt)
			c.SetReadDeadline(time.Now().Add(time.Second))
			k, err := c.Read(buf)
			if err == nil {
				if string(buf[:k]) != string(pkt) {
					t.Fatalf("packet of %d differs (%d back)", n, k)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("packet of %d: %v", n, err)
			}
		}
	}
}

// TestGatewayTunnelStalledReader: one stream that does not read holds at
// most its window; the others go on.
func TestGatewayTunnelStalledReader(t *testing.T) {
	peer, reports := hashPeer(t)
	addr, _ := startRealGateway(t, false, map[string]string{"tok-gateway-tunnel": peer})
	tun := gatewayTunnel(t, 1, Gateway{Addr: addr})
	stalled, err := tun.DialStream(dialCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	hdr := make([]byte, 16)
	binary.BigEndian.PutUint64(hdr[8:], 16<<20) // seed 0, 16 MiB down
	if _, err := stalled.Write(hdr); err != nil {
		t.Fatal(err)
	}
	st := stalled.(*tunStream)
	held := func() int {
		st.mu.Lock()
		defer st.mu.Unlock()
		return st.rq.Len()
	}
	waitUntil(t, "the stalled stream's window full", func() bool { return held() >= DefaultTunnelStreamWindow })
	manyExchanges(t, tun, reports, 4, 8<<20, 1<<20, nil)
	if h := held(); h > DefaultTunnelStreamWindow {
		t.Fatalf("stalled stream holds %d bytes, over its window", h)
	}
}

// firstRead calls f once, when the first bytes are read.
type firstRead struct {
	StreamConn
	once sync.Once
	f    func()
}

func (r *firstRead) Read(p []byte) (int, error) {
	n, err := r.StreamConn.Read(p)
	if n > 0 {
		r.once.Do(r.f)
	}
	return n, err
}

// TestGatewayTunnelMaxStreams: with the gateway's MAX_STREAMS at 4, 30
// concurrent streams on one tunnel wait for slots (never beyond it) and
// all complete.
func TestGatewayTunnelMaxStreams(t *testing.T) {
	peer, reports := hashPeer(t)
	_, addr, _ := startRealGatewayCfg(t, false, map[string]string{"tok-gateway-tunnel": peer},
		func(c *gateway.Config) { c.TunnelMaxStreams = 4 })
	tun := gatewayTunnel(t, 1, Gateway{Addr: addr})
	manyExchanges(t, tun, reports, 30, 256<<10, 64<<10, nil)
	if n := tun.refused.Load(); n != 0 {
		t.Fatalf("%d OPENs refused: the client went beyond MAX_STREAMS", n)
	}
}

// TestGatewayTunnelResetFreesSlot: streams closed early (RESET CANCEL) free
// their slots before the next OPENs reach the gateway: with MAX_STREAMS 2,
// rounds of two streams opened, used and closed are never refused.
func TestGatewayTunnelResetFreesSlot(t *testing.T) {
	_, addr, _ := startRealGatewayCfg(t, false, map[string]string{"tok-gateway-tunnel": testpeer.EchoServer(t)},
		func(c *gateway.Config) { c.TunnelMaxStreams = 2 })
	tun := gatewayTunnel(t, 1, Gateway{Addr: addr})
	b := make([]byte, 1)
	for round := range 50 {
		var ss []StreamConn
		for i := range 2 {
			s, err := tun.DialStream(dialCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Write([]byte{byte(round + i)}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Read(b); err != nil || b[0] != byte(round+i) {
				t.Fatalf("round %d stream %d: %v %v", round, i, b, err)
			}
			ss = append(ss, s)
		}
		for _, s := range ss {
			s.Close()
		}
	}
	if n := tun.refused.Load(); n != 0 {
		t.Fatalf("%d OPENs refused after RESETs", n)
	}
}

// TestGatewayTunnelFailover: a wrong token is ErrRefused; when the first
// gateway shuts down, new streams go through the second.
func TestGatewayTunnelFailover(t *testing.T) {
	peer, reports := hashPeer(t)
	routes := map[string]string{"tok-gateway-tunnel": peer}
	gA, addrA, _ := startRealGatewayG(t, false, routes)
	_, addrB, _ := startRealGatewayG(t, false, routes)

	wrong := NewTunnel(TunnelConfig{Gateways: []Gateway{{Addr: addrA}, {Addr: addrB}}, Token: "not-a-token", Logger: slog.New(slog.DiscardHandler)})
	defer wrong.Close()
	if _, err := wrong.DialStream(dialCtx(t)); !errors.Is(err, ErrRefused) {
		t.Fatalf("wrong token: %v, want ErrRefused", err)
	}

	tun := gatewayTunnel(t, 1, Gateway{Addr: addrA}, Gateway{Addr: addrB})
	manyExchanges(t, tun, reports, 5, 1<<20, 64<<10, nil)
	if g := tun.Status().Gateway; g != addrA {
		t.Fatalf("gateway %q, want the first (%s)", g, addrA)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := gA.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the first tunnel's end", func() bool { return tun.Status().Gateway != addrA })
	manyExchanges(t, tun, reports, 5, 1<<20, 64<<10, nil)
	if g := tun.Status().Gateway; g != addrB {
		t.Fatalf("gateway %q after the first shut down, want %s", g, addrB)
	}
}
