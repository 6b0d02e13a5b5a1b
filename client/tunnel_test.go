package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/httvps/httvps/codec/mux"
	"github.com/httvps/httvps/internal/testpeer"
)

// The native tunnel's client against tunServer (tunnel_server_test.go), a
// stand-in for the real gateway.

const tunToken = "tunnel-test-token"

func newTestTunnel(t *testing.T, pool int, edit func(*TunnelConfig), addrs ...string) *Tunnel {
	t.Helper()
	cfg := TunnelConfig{Token: tunToken, Pool: pool, Logger: slog.New(slog.DiscardHandler), BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond}
	for _, a := range addrs {
		cfg.Gateways = append(cfg.Gateways, Gateway{Addr: a})
	}
	if edit != nil {
		edit(&cfg)
	}
	tun := NewTunnel(cfg)
	t.Cleanup(func() { tun.Close() })
	return tun
}

func serverSettings(maxStreams uint32) mux.Settings {
	s := mux.DefaultSettings()
	s.MaxStreams = maxStreams
	return s
}

// peerReports collects n hashPeer reports and checks each against one of
// the expected up hashes (streams finish in any order).
func peerReports(t *testing.T, got <-chan hashResult, want map[string]int) {
	t.Helper()
	for n := 0; len(want) > 0; n++ {
		select {
		case r := <-got:
			sum := fmt.Sprintf("%x", r.sum)
			if r.err != nil || want[sum] == 0 {
				// The byte count tells a cut stream from changed bytes.
				t.Fatalf("report %d: err %v, %d bytes, hash expected %v", n, r.err, r.n, want[sum] > 0)
			}
			if want[sum]--; want[sum] == 0 {
				delete(want, sum)
			}
		case <-time.After(waitLong):
			t.Fatalf("%d peer reports missing", len(want))
		}
	}
}

// TestTunnelManyStreams: 500 concurrent streams on one tunnel, each with its
// own bytes both ways, half-closed, hashed at both ends.
func TestTunnelManyStreams(t *testing.T) {
	peer, reports := hashPeer(t)
	srv := startTunServer(t, tunToken, peer, "", serverSettings(1000))
	tun := newTestTunnel(t, 1, nil, srv.Addr())
	const n, down, up = 500, 96 << 10, 40 << 10
	manyExchanges(t, tun, reports, n, down, up, nil)
	if got := srv.opened.Load(); got != n {
		t.Fatalf("server accepted %d streams, want %d", got, n)
	}
	if c := srv.accepted.Load(); c != 1 {
		t.Fatalf("%d tunnels, want 1", c)
	}
	st := tun.Status()
	if !st.Connected || st.Gateway != srv.Addr() || st.Streams != 0 || st.Down != n*down {
		t.Fatalf("status %+v, want connected to %s, 0 streams, %d bytes down", st, srv.Addr(), n*down)
	}
}

// TestTunnelStalledReader: a stream whose reader stalls holds at most its
// window, and the other streams on the same tunnel go on at full speed.
func TestTunnelStalledReader(t *testing.T) {
	peer, reports := hashPeer(t)
	srv := startTunServer(t, tunToken, peer, "", serverSettings(16))
	tun := newTestTunnel(t, 1, nil, srv.Addr())
	ctx := dialCtx(t)
	stalled, err := tun.DialStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	const big = 16 << 20
	var hdr [16]byte
	binary.BigEndian.PutUint64(hdr[:], 9) // seed
	binary.BigEndian.PutUint64(hdr[8:], big)
	if _, err := stalled.Write(hdr[:]); err != nil {
		t.Fatal(err)
	}
	st := stalled.(*tunStream)
	// Wait until the stalled stream's window is used up.
	deadline := time.Now().Add(waitLong)
	for {
		st.mu.Lock()
		held := st.rq.Len()
		st.mu.Unlock()
		if held >= DefaultTunnelStreamWindow {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stalled stream holds %d bytes, never its window", held)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Others move 3 × 8 MiB meanwhile.
	want := map[string]int{}
	for i := range 3 {
		s, err := tun.DialStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		sum, err := exchange(s, uint64(20+i), 8<<20, 1<<20, 64<<10)
		s.Close()
		if err != nil {
			t.Fatalf("stream beside the stalled one: %v", err)
		}
		want[sum]++
	}
	st.mu.Lock()
	held := st.rq.Len()
	st.mu.Unlock()
	if held > DefaultTunnelStreamWindow {
		t.Fatalf("the stalled stream holds %d bytes, over its window %d", held, DefaultTunnelStreamWindow)
	}
	// The stalled stream, read at last, is intact.
	stalled.CloseWrite()
	sum := make(chan string, 1)
	go func() {
		h := newHash()
		io.Copy(h, stalled)
		sum <- fmt.Sprintf("%x", h.Sum(nil))
	}()
	if got := <-sum; got != testpeer.PseudoRandomSHA256(big, 9) {
		t.Fatal("the stalled stream's bytes differ")
	}
	want[testpeer.PseudoRandomSHA256(0, 0)]++
	peerReports(t, reports, want)
}

// TestTunnelGoAway: GOAWAY in the middle of transfers loses nothing: the
// streams up to its last ID finish on the old tunnel, new ones go to a new
// tunnel.
func TestTunnelGoAway(t *testing.T) {
	peer, reports := hashPeer(t)
	srv := startTunServer(t, tunToken, peer, "", serverSettings(100))
	tun := newTestTunnel(t, 1, nil, srv.Addr())
	want := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	started := make(chan struct{}, 40)
	run := func(i int) {
		defer wg.Done()
		s, err := tun.DialStream(dialCtx(t))
		if err != nil {
			errs <- err
			return
		}
		defer s.Close()
		started <- struct{}{}
		sum, err := exchange(s, uint64(300+i), 4<<20, 256<<10, 32<<10)
		if err != nil {
			errs <- fmt.Errorf("stream %d: %w", i, err)
			return
		}
		mu.Lock()
		want[sum]++
		mu.Unlock()
	}
	for i := range 20 {
		wg.Add(1)
		go run(i)
	}
	for range 20 {
		<-started
	}
	// GOAWAY once the first 20 are open and bytes flow.
	waitUntil(t, "20 streams under way", func() bool { return srv.opened.Load() == 20 && tun.Status().Down > 0 })
	srv.GoAway()
	for i := range 20 {
		wg.Add(1)
		go run(20 + i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	peerReports(t, reports, want)
	if c := srv.accepted.Load(); c < 2 {
		t.Fatalf("%d tunnels, want a second one after GOAWAY", c)
	}
}

// TestTunnelFailover: when the first gateway dies, streams on it end with
// ErrTunnelLost and new streams go through the second.
func TestTunnelFailover(t *testing.T) {
	peer, reports := hashPeer(t)
	a := startTunServer(t, tunToken, peer, "", serverSettings(100))
	b := startTunServer(t, tunToken, peer, "", serverSettings(100))
	tun := newTestTunnel(t, 1, nil, a.Addr(), b.Addr())
	s, err := tun.DialStream(dialCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	sum, err := exchange(s, 1, 1<<20, 1<<20, 32<<10)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	peerReports(t, reports, map[string]int{sum: 1})
	if g := tun.Status().Gateway; g != a.Addr() {
		t.Fatalf("gateway %q, want the first, %s", g, a.Addr())
	}
	// A stream open on the first gateway when it dies.
	open, err := tun.DialStream(dialCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := open.Write(make([]byte, 16)); err != nil { // seed 0, down 0: the peer answers FIN only
		t.Fatal(err)
	}
	waitUntil(t, "the stream reaches the first gateway", func() bool { return a.opened.Load() == 2 })
	a.Kill()
	if _, err := io.ReadAll(open); !errors.Is(err, ErrTunnelLost) {
		// The peer may have sent its FIN before the kill: then the stream
		// ended cleanly; anything else is wrong.
		if err != nil {
			t.Fatalf("stream on the killed gateway: %v, want ErrTunnelLost", err)
		}
	}
	open.Close()
	<-reports
	// The stream above may have ended before the kill; wait until the
	// client has seen the tunnel go.
	waitUntil(t, "the first tunnel's end", func() bool { return tun.Status().Gateway != a.Addr() })
	s, err = tun.DialStream(dialCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sum, err = exchange(s, 2, 1<<20, 1<<20, 32<<10)
	if err != nil {
		t.Fatal(err)
	}
	peerReports(t, reports, map[string]int{sum: 1})
	if g := tun.Status().Gateway; g != b.Addr() {
		t.Fatalf("gateway %q after failover, want %s", g, b.Addr())
	}
}

// TestTunnelRefusedRetried: REFUSED answers before anything else are
// retried transparently, with the first bytes, on one tunnel or two.
func TestTunnelRefusedRetried(t *testing.T) {
	for _, pool := range []int{1, 2} {
		t.Run(fmt.Sprint("pool", pool), func(t *testing.T) {
			peer, reports := hashPeer(t)
			srv := startTunServer(t, tunToken, peer, "", serverSettings(100))
			srv.refuse.Store(4)
			tun := newTestTunnel(t, pool, nil, srv.Addr())
			want := map[string]int{}
			for i := range 6 {
				s, err := tun.DialStream(dialCtx(t))
				if err != nil {
					t.Fatal(err)
				}
				sum, err := exchange(s, uint64(50+i), 200<<10, 20<<10, 8<<10)
				s.Close()
				if err != nil {
					t.Fatalf("stream %d: %v", i, err)
				}
				want[sum]++
			}
			peerReports(t, reports, want)
			if r, o := srv.refuse.Load(), srv.opened.Load(); r > 0 || o != 6 {
				t.Fatalf("refusals left %d, streams accepted %d; want 0 and 6", r, o)
			}
			if n := tun.refused.Load(); n != 4 {
				t.Fatalf("client saw %d REFUSED, want 4", n)
			}
		})
	}
}

// TestTunnelRefusedForGood: more REFUSED answers than the retry bound end
// the stream with the reset.
func TestTunnelRefusedForGood(t *testing.T) {
	srv := startTunServer(t, tunToken, testpeer.EchoServer(t), "", serverSettings(100))
	srv.refuse.Store(1000)
	tun := newTestTunnel(t, 1, nil, srv.Addr())
	s, err := tun.DialStream(dialCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Write([]byte("x"))
	var re *StreamResetError
	if _, err := s.Read(make([]byte, 1)); !errors.As(err, &re) || re.Code != mux.ResetRefused {
		t.Fatalf("read %v, want a REFUSED reset", err)
	}
}

// TestTunnelUDP: packets both ways, one DATA frame each; packets the
// application does not read are dropped past the queue and counted.
func TestTunnelUDP(t *testing.T) {
	srv := startTunServer(t, tunToken, "", testpeer.UDPEcho(t), serverSettings(100))
	tun := newTestTunnel(t, 1, func(c *TunnelConfig) { c.UDPQueue = 4 }, srv.Addr())
	c, err := tun.DialPacket(dialCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 70000)
	for i, n := range []int{1, 1400, 30000, mux.MaxUDPPacket} {
		pkt := bytes.Repeat([]byte{byte(i + 1)}, n)
		deadline := time.Now().Add(waitLong)
		for {
			if _, err := c.Write(pkt); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(time.Second))
			k, err := c.Read(buf)
			if err == nil {
				if !bytes.Equal(buf[:k], pkt) {
					t.Fatalf("packet %d: %d bytes back, want %d identical", i, k, n)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("packet %d: %v", i, err)
			}
		}
	}
	if _, err := c.Write(make([]byte, mux.MaxUDPPacket+1)); !errors.Is(err, ErrPacketTooLarge) {
		t.Fatalf("oversized packet: %v", err)
	}
	// Not reading: the queue keeps 4, the rest are dropped and counted.
	for range 50 {
		c.Write([]byte("flood"))
	}
	waitUntil(t, "drops counted", func() bool { return tun.Drops() > 0 })
	c.SetReadDeadline(time.Now().Add(waitLong))
	for i := range 4 {
		if k, err := c.Read(buf); err != nil || string(buf[:k]) != "flood" {
			t.Fatalf("queued packet %d: %q %v", i, buf[:k], err)
		}
	}
}

// TestTunnelRefusedGateway: a wrong token gets the decoy answer: ErrRefused
// from DialStream and in Status.
func TestTunnelRefusedGateway(t *testing.T) {
	srv := startTunServer(t, "another-token", testpeer.EchoServer(t), "", serverSettings(100))
	tun := newTestTunnel(t, 2, nil, srv.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if _, err := tun.DialStream(ctx); !errors.Is(err, ErrRefused) {
		t.Fatalf("DialStream: %v, want ErrRefused", err)
	}
	if st := tun.Status(); st.Connected || !errors.Is(st.Err, ErrRefused) {
		t.Fatalf("status %+v, want not connected with ErrRefused", st)
	}
}

// TestTunnelPing: PING measures the RTT; a tunnel whose PINGs go
// unanswered is replaced.
func TestTunnelPing(t *testing.T) {
	srv := startTunServer(t, tunToken, testpeer.EchoServer(t), "", serverSettings(100))
	tun := newTestTunnel(t, 1, func(c *TunnelConfig) { c.PingInterval = 20 * time.Millisecond }, srv.Addr())
	waitUntil(t, "an RTT", func() bool { return tun.Status().RTT > 0 })
	srv.noPong.Store(true)
	waitUntil(t, "a second tunnel after unanswered PINGs", func() bool { return srv.accepted.Load() >= 2 })
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", waitLong, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func newHash() hash.Hash { return sha256.New() }
