package client

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/httvps/httvps/internal/testpeer"
)

// sessionsTo counts the tunnels open to addr.
func sessionsTo(tun *Tunnel, addr string) int {
	tun.mu.Lock()
	defer tun.mu.Unlock()
	n := 0
	for _, s := range tun.sessions {
		if s.gw.Addr == addr {
			n++
		}
	}
	return n
}

// TestTunnelSetGateways: a refreshed list that replaces gateway A by B
// sends new streams to B, while a stream open on A at the time finishes
// intact; A's tunnel then closes (drained). Each gateway routes to its own
// hash peer, so the peer that reports shows which gateway a stream took.
func TestTunnelSetGateways(t *testing.T) {
	peerA, reportsA := hashPeer(t)
	peerB, reportsB := hashPeer(t)
	const token = "tok-gateway-tunnel"
	addrA, _ := startRealGateway(t, false, map[string]string{token: peerA})
	addrB, _ := startRealGateway(t, false, map[string]string{token: peerB})
	tun := gatewayTunnel(t, 1, Gateway{Addr: addrA})

	old, err := tun.DialStream(dialCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	// The list changes while old is open on A and receiving: its download
	// (8 MiB, past the 256 KiB stream window) cannot be done yet.
	swapped := make(chan struct{})
	in := &firstRead{StreamConn: old, f: func() {
		tun.SetGateways([]Gateway{{Addr: addrB}})
		if sessionsTo(tun, addrA) != 1 {
			t.Error("the tunnel to A closed under an open stream")
		}
		close(swapped)
	}}
	oldDone := make(chan error, 1)
	var oldSum string
	go func() {
		var err error
		oldSum, err = exchange(in, 1, 8<<20, 1<<20, 16<<10)
		oldDone <- err
	}()
	<-swapped

	// New streams, concurrent with old: all through B.
	manyExchanges(t, tun, reportsB, 5, 1<<20, 64<<10, nil)
	if err := <-oldDone; err != nil {
		t.Fatalf("the stream open on A: %v", err)
	}
	peerReports(t, reportsA, map[string]int{oldSum: 1})
	waitUntil(t, "the drained tunnel to A closing", func() bool { return sessionsTo(tun, addrA) == 0 })
	if st := tun.Status(); st.Gateway != addrB || !st.Connected {
		t.Fatalf("status %+v, want connected to B (%s)", st, addrB)
	}
	manyExchanges(t, tun, reportsB, 3, 64<<10, 64<<10, nil)
	select {
	case r := <-reportsA:
		t.Fatalf("A's peer got a connection after the swap: %+v", r)
	default:
	}
}

// TestTunnelSetGatewaysIdle: a tunnel with no stream to a gateway dropped
// from the list closes at once, and a reordered list keeps the tunnels to
// gateways still listed.
func TestTunnelSetGatewaysIdle(t *testing.T) {
	peerA, _ := hashPeer(t)
	peerB, reportsB := hashPeer(t)
	const token = "tok-gateway-tunnel"
	addrA, _ := startRealGateway(t, false, map[string]string{token: peerA})
	addrB, _ := startRealGateway(t, false, map[string]string{token: peerB})
	tun := gatewayTunnel(t, 1, Gateway{Addr: addrA}, Gateway{Addr: addrB})
	waitUntil(t, "a tunnel to A", func() bool { return sessionsTo(tun, addrA) == 1 })

	tun.SetGateways([]Gateway{{Addr: addrB}, {Addr: addrA}})
	if sessionsTo(tun, addrA) != 1 {
		t.Fatal("a reordered list dropped the tunnel to a gateway still listed")
	}
	tun.SetGateways([]Gateway{{Addr: addrB}})
	waitUntil(t, "the idle tunnel to A closing", func() bool { return sessionsTo(tun, addrA) == 0 })
	manyExchanges(t, tun, reportsB, 2, 64<<10, 64<<10, nil)
	tun.SetGateways(nil) // ignored: the list stays
	manyExchanges(t, tun, reportsB, 1, 64<<10, 64<<10, nil)
}

// TestSessionNativeFollowsControlPlane: with the native tunnel, a refresh
// whose config replaces gateway A by B moves new connections to B, and a
// connection open through A keeps working until it ends.
func TestSessionNativeFollowsControlPlane(t *testing.T) {
	ss := testpeer.SSServer(t, testPassword, "chacha20-ietf-poly1305")
	ctl := startCtlPlane(t, ss)
	var tok struct{ ID, Token string }
	json.Unmarshal(ctl.admin(t, "POST", "/v1/tokens", `{"label":"n"}`), &tok)
	gwA, _ := startRealGateway(t, false, map[string]string{tok.Token: ss})
	gwB, _ := startRealGateway(t, false, map[string]string{tok.Token: ss})
	ctl.heartbeat(t, "a", "ws://"+gwA, 0)

	ctx := testCtx(t)
	k, err := ResolveKey(ctx, ctl.url, ResolveOptions{Token: tok.Token})
	if err != nil {
		t.Fatal(err)
	}
	native := func(k *Key, base *tls.Config, log *slog.Logger) (Transport, error) {
		return NewTunnel(TunnelConfig{Gateways: k.Gateways, Token: k.Token, Pool: 1, TLSConfig: base, Logger: log}), nil
	}
	s, err := NewSession(SessionConfig{Key: k, Native: native, Refresh: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln := serveSession(t, s)
	echo := testpeer.EchoServer(t)
	open := func() net.Conn {
		c, code := socksConnect(t, ln.Addr().String(), []byte{5, 1, 0}, connectReq(echo))
		if code != 0 {
			t.Fatalf("socks reply %d", code)
		}
		return c
	}
	ping := func(c net.Conn, msg string) {
		t.Helper()
		c.SetDeadline(time.Now().Add(waitLong))
		c.Write([]byte(msg))
		b := make([]byte, len(msg))
		if _, err := io.ReadFull(c, b); err != nil || string(b) != msg {
			t.Fatalf("echo %q: %q %v", msg, b, err)
		}
	}
	held := open()
	defer held.Close()
	ping(held, "before")
	if st := s.Status(); st.Gateway != gwA || st.Transport != TransportNative {
		t.Fatalf("status %+v, want native through %s", st, gwA)
	}

	// A leaves the config (its heartbeat lapses), B joins.
	ctl.heartbeat(t, "b", "ws://"+gwB, 0)
	if err := ctl.st.RemoveGateway(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	s.refresh(ctx)
	if g := s.Key().Gateways; len(g) != 1 || g[0].Addr != gwB {
		t.Fatalf("after refresh gateways %+v, want only %s", g, gwB)
	}
	c := open()
	ping(c, "after")
	c.Close()
	if st := s.Status(); st.Gateway != gwB {
		t.Fatalf("gateway in use after refresh %s, want %s", st.Gateway, gwB)
	}
	ping(held, "still through A")
	tun := s.t.(*Tunnel)
	if sessionsTo(tun, gwA) != 1 {
		t.Fatal("the tunnel to A closed under an open connection")
	}
	held.Close()
	waitUntil(t, "the drained tunnel to A closing", func() bool { return sessionsTo(tun, gwA) == 0 })
}

// TestTunnelOnRefused: a dial cycle in which every gateway refuses the
// token calls the OnRefused hook without any stream asking (so a token
// revoked under open streams is explained at once); a cycle that fails
// otherwise (nothing listening) does not.
func TestTunnelOnRefused(t *testing.T) {
	addr, _ := startRealGateway(t, false, map[string]string{"another-token": testpeer.EchoServer(t)})
	dead := NewTunnel(TunnelConfig{Gateways: []Gateway{{Addr: testpeer.DeadAddr(t)}}, Token: "tok", Logger: slog.New(slog.DiscardHandler)})
	defer dead.Close()
	deadCalls := make(chan struct{}, 100)
	dead.SetOnRefused(func() { deadCalls <- struct{}{} })

	tun := NewTunnel(TunnelConfig{Gateways: []Gateway{{Addr: addr}}, Token: "tok-not-routed", Logger: slog.New(slog.DiscardHandler)})
	defer tun.Close()
	called := make(chan struct{}, 100)
	tun.SetOnRefused(func() { called <- struct{}{} })
	select {
	case <-called:
	case <-time.After(waitLong):
		t.Fatal("OnRefused not called for a refused token")
	}
	if st := tun.Status(); st.Connected || !errors.Is(st.Err, ErrRefused) {
		t.Fatalf("status %+v, want not connected, ErrRefused", st)
	}
	waitUntil(t, "a failed cycle to a dead address", func() bool { return dead.Status().Err != nil })
	if len(deadCalls) != 0 {
		t.Fatal("OnRefused called for a gateway that is not listening")
	}
}
