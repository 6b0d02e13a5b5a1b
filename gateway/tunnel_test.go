package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/httvps/httvps/codec"
	"github.com/httvps/httvps/codec/mux"
	"github.com/httvps/httvps/codec/tls13"
	"github.com/httvps/httvps/internal/testpeer"
)

// echoMember is a loopback TCP member that echoes every connection and
// passes the client's FIN on (half-close), counting its connections.
func echoMember(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	var open atomic.Int64
	addr := testpeer.ListenTCP(t, func(c *net.TCPConn) {
		open.Add(1)
		defer open.Add(-1)
		io.Copy(c, c)
		c.CloseWrite()
		io.Copy(io.Discard, c)
	})
	return addr, &open
}

// tunnelEcho sends n random bytes on a new stream of c, half-closes, reads
// the echo to its EOF and compares hashes.
func tunnelEcho(c *tunClient, n int) error {
	data := make([]byte, n)
	rand.Read(data)
	data[0] = 'e' // members that switch on the first byte echo this one
	s := c.open(mux.KindTCP, nil)
	errc := make(chan error, 1)
	go func() {
		if err := s.Write(data); err != nil {
			errc <- err
			return
		}
		errc <- s.CloseWrite()
	}()
	h := sha256.New()
	got, err := io.Copy(h, s)
	if err != nil {
		return err
	}
	if err := <-errc; err != nil {
		return err
	}
	if want := sha256.Sum256(data); got != int64(n) || !bytes.Equal(h.Sum(nil), want[:]) {
		return errors.New("echo differs")
	}
	return nil
}

// parallelEcho runs n tunnelEchos at once on c, the i-th of size(i) bytes.
func parallelEcho(t *testing.T, c *tunClient, n int, size func(i int) int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			if err := tunnelEcho(c, size(i)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestTunnelManyStreamsHashes(t *testing.T) {
	member, _ := echoMember(t)
	m := &countingMetrics{}
	g := startGateway(t, member, func(c *Config) { c.TunnelMaxStreams = 512; c.Metrics = m })
	c := dialTunnel(t, g, "s3cret")
	parallelEcho(t, c, 500, func(i int) int { return 16<<10 + i*97 })
	c.check()
	if p := m.peak.Load(); p > 4<<20+256<<10+64<<10 {
		t.Fatalf("gateway buffered %d bytes, beyond the session window and BufferCap", p)
	}
}

// startTunnelGateway runs a gateway whose StaticAuth routes each token to its
// member.
func startTunnelGateway(t *testing.T, routes map[string]string, mod func(*Config)) *Gateway {
	t.Helper()
	auth, err := NewStaticAuth(routes)
	if err != nil {
		t.Fatal(err)
	}
	return startGateway(t, "127.0.0.1:1", func(c *Config) {
		c.Auth = auth
		if mod != nil {
			mod(c)
		}
	})
}

// tarpit is a member whose accept queue is full, so a connect to it stays in
// progress (its SYNs are dropped) until the dial timeout: client data sent
// meanwhile is held by the gateway.
func tarpit(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := syscall.Getsockname(fd)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	// Fill the queue: dial until a connect no longer completes.
	for i := 0; i < 8; i++ {
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err != nil {
			return addr
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Fatal("tarpit: accept queue never filled")
	return ""
}

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestTunnelHalfClose: the client's FIN reaches the member while the
// member's answer still flows, and the member's FIN reaches the client while
// the client's bytes still flow.
func TestTunnelHalfClose(t *testing.T) {
	halfCloseSums := make(chan []byte, 1)
	answers := testpeer.ListenTCP(t, func(c *net.TCPConn) {
		var first [1]byte
		if _, err := io.ReadFull(c, first[:]); err != nil {
			return
		}
		if first[0] == 'c' {
			// Client first: read to EOF, then answer with the hash.
			h := sha256.New()
			io.Copy(h, c)
			c.Write(h.Sum(nil))
			return
		}
		// Member first: send 300 KiB and FIN, then hash what still comes.
		c.Write(bytes.Repeat([]byte("m"), 300<<10))
		c.CloseWrite()
		h := sha256.New()
		io.Copy(h, c)
		halfCloseSums <- h.Sum(nil)
	})
	g := startTunnelGateway(t, map[string]string{"tok": answers}, nil)
	c := dialTunnel(t, g, "tok")

	data := make([]byte, 700<<10)
	rand.Read(data)
	want := sha256.Sum256(data)

	s := c.open(mux.KindTCP, []byte("c"))
	if err := s.Write(data); err != nil {
		t.Fatal(err)
	}
	s.CloseWrite()
	got, err := io.ReadAll(s)
	if err != nil || !bytes.Equal(got, want[:]) {
		t.Fatalf("client FIN first: answer %x, %v; want the hash of what was sent", got, err)
	}

	s = c.open(mux.KindTCP, []byte("m"))
	got, err = io.ReadAll(s)
	if err != nil || len(got) != 300<<10 {
		t.Fatalf("member FIN first: %d bytes, %v", len(got), err)
	}
	// The member's FIN arrived; the client's direction still flows.
	if err := s.Write(data); err != nil {
		t.Fatal(err)
	}
	s.CloseWrite()
	if sum := <-halfCloseSums; !bytes.Equal(sum, want[:]) {
		t.Fatal("member FIN first: the member got other bytes than were sent after its FIN")
	}
	c.check()
}

// TestTunnelStalledStream: a client that stops reading one stream, and a
// member that stops reading another, pin at most their windows in the
// gateway; the other streams of the tunnel go on at full speed.
func TestTunnelStalledStream(t *testing.T) {
	var pushed atomic.Int64
	stallDone := make(chan struct{})
	member := testpeer.ListenTCP(t, func(c *net.TCPConn) {
		var first [1]byte
		if _, err := io.ReadFull(c, first[:]); err != nil {
			return
		}
		switch first[0] {
		case 'p': // push as fast as the gateway takes
			buf := make([]byte, 64<<10)
			for {
				n, err := c.Write(buf)
				pushed.Add(int64(n))
				if err != nil {
					return
				}
			}
		case 's': // never read
			<-stallDone
		default:
			c.Write(first[:])
			io.Copy(c, c)
			c.CloseWrite()
		}
	})
	m := &countingMetrics{}
	g := startTunnelGateway(t, map[string]string{"tok": member}, func(c *Config) { c.Metrics = m })
	c := dialTunnel(t, g, "tok")
	defer close(stallDone)

	down := c.open(mux.KindTCP, []byte("p")) // never read by the client
	up := c.open(mux.KindTCP, []byte("s"))   // never read by the member
	go up.Write(make([]byte, 8<<20))         // blocks once the window is used

	// Wait until both stalls are in place: the client's window for down is
	// used up, and so is the gateway's for up.
	c.mu.Lock()
	c.wait("the stalled streams' windows to fill", func() bool { return down.recvWin == 0 && up.sendWin == 0 })
	c.mu.Unlock()

	for i := 0; i < 4; i++ {
		if err := tunnelEcho(c, 2<<20); err != nil {
			t.Fatal(err)
		}
	}
	c.check()
	c.mu.Lock()
	got := down.total
	c.mu.Unlock()
	if got != mux.DefaultStreamWindow {
		t.Fatalf("the stalled reader got %d bytes, want its window %d", got, mux.DefaultStreamWindow)
	}
	// What the gateway may hold: up's window of client bytes, the queue
	// toward the client (BufferCap, plus one read over it), frame headers.
	limit := int64(mux.DefaultStreamWindow + defaultBufferCap + mux.DefaultMaxFrame + 4096)
	if p := m.peak.Load(); p > limit {
		t.Fatalf("gateway buffered up to %d bytes, limit %d", p, limit)
	}
	t.Logf("member pushed %d KiB into the stalled stream; gateway peak buffered %d KiB", pushed.Load()>>10, m.peak.Load()>>10)
}

// rawFrame is a frame header with payload, built by hand (for frames the
// Append helpers refuse to make).
func rawFrame(length int, typ mux.Type, flags uint8, stream uint32, payload []byte) []byte {
	b := []byte{byte(length >> 16), byte(length >> 8), byte(length), byte(typ), flags,
		byte(stream >> 24), byte(stream >> 16), byte(stream >> 8), byte(stream)}
	return append(b, payload...)
}

// TestTunnelBadInput: every kind of bad input gets exactly its documented
// answer (docs/03): a close code for the tunnel or a RESET for the stream.
// After each, the tunnel (for a RESET) and a second tunnel on the gateway
// keep working.
func TestTunnelBadInput(t *testing.T) {
	echo, _ := echoMember(t)
	routes := map[string]string{"tok": echo, "tarpit": tarpit(t), "dead": closedPort(t), "nohost": "no-such-host.invalid:9"}
	g := startTunnelGateway(t, routes, func(c *Config) { c.DialTimeout = 30 * time.Second })
	big := make([]byte, mux.DefaultMaxFrame)
	win := func(id uint32, inc uint32) []byte { return mux.AppendWindow(nil, id, inc) }
	open := func(id uint32) []byte { return mux.AppendOpen(nil, id, mux.KindTCP, false, nil) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	pings := func(n int) []byte {
		var b []byte
		for i := 0; i < n; i++ {
			b = mux.AppendPing(b, [8]byte{byte(i)}, false)
		}
		return b
	}
	streamWindow := open(1)
	for i := 0; i < 4; i++ {
		streamWindow = mux.AppendData(streamWindow, 1, false, big)
	}
	streamWindow = mux.AppendData(streamWindow, 1, false, []byte("x")) // one byte over 256 KiB
	var sessionWindow []byte
	for id := uint32(1); id <= 33; id += 2 { // 16 full streams, then a 17th
		sessionWindow = mux.AppendOpen(sessionWindow, id, mux.KindTCP, false, nil)
		for i := 0; i < 4; i++ {
			sessionWindow = mux.AppendData(sessionWindow, id, false, big)
		}
	}

	closes := []struct {
		name     string
		token    string
		settings bool // the client's SETTINGS first
		send     []byte
		text     bool
		code     ws.StatusCode
	}{
		{"frame before SETTINGS", "tok", false, open(1), false, 1002},
		{"second SETTINGS", "tok", true, mux.AppendSettings(nil, mux.DefaultSettings()), false, 1002},
		{"reserved bit", "tok", true, rawFrame(4, mux.TypeWindow, 0, 1<<31|1, []byte{0, 0, 0, 1}), false, 1002},
		{"DATA over MAX_FRAME", "tok", true, cat(open(1), rawFrame(mux.DefaultMaxFrame+1, mux.TypeData, 0, 1, nil)), false, 1009},
		{"control frame over 256", "tok", true, rawFrame(300, mux.TypePing, 0, 0, nil), false, 1009},
		{"WINDOW of 3 bytes", "tok", true, rawFrame(3, mux.TypeWindow, 0, 0, []byte{0, 0, 1}), false, 1002},
		{"PING on a stream", "tok", true, rawFrame(8, mux.TypePing, 0, 1, make([]byte, 8)), false, 1002},
		{"OPEN id not increasing", "tok", true, cat(open(5), open(3)), false, 1002},
		{"DATA on a stream never opened", "tok", true, cat(open(1), mux.AppendData(nil, 3, false, []byte("x"))), false, 1002},
		{"RESET on a stream never opened", "tok", true, mux.AppendReset(nil, 9, mux.ResetCancel), false, 1002},
		{"session WINDOW beyond 2^31-1", "tok", true, win(0, mux.MaxWindow), false, 1002},
		{"WINDOW increment 0", "tok", true, rawFrame(4, mux.TypeWindow, 0, 0, []byte{0, 0, 0, 0}), false, 1002},
		{"session window exceeded", "tarpit", true, sessionWindow, false, 1008},
		{"PING flood", "tok", true, pings(150), false, 1008},
		{"text frame", "tok", true, []byte("hello"), true, 1003},
	}
	for _, tc := range closes {
		t.Run(tc.name, func(t *testing.T) {
			c := dialTunnelOpt(t, g, tc.token, tc.settings)
			if tc.text {
				c.wmu.Lock()
				wsutil.WriteClientMessage(c.conn, ws.OpText, tc.send)
				c.wmu.Unlock()
			} else {
				c.send(tc.send)
			}
			if code := c.waitClose(); code != tc.code {
				t.Fatalf("close code %d, want %d", code, tc.code)
			}
			if err := tunnelEcho(dialTunnel(t, g, "tok"), 100<<10); err != nil {
				t.Fatalf("second tunnel: %v", err)
			}
		})
	}

	resets := []struct {
		name  string
		token string
		send  []byte
		id    uint32
		code  mux.ResetCode
	}{
		{"unknown kind", "tok", mux.AppendOpen(nil, 1, mux.Kind(9), false, nil), 1, mux.ResetProtocol},
		{"DATA after FIN", "tok", cat(open(1), mux.AppendData(nil, 1, true, nil), mux.AppendData(nil, 1, false, []byte("x"))), 1, mux.ResetProtocol},
		{"stream window exceeded", "tarpit", streamWindow, 1, mux.ResetFlowControl},
		{"stream WINDOW beyond 2^31-1", "tok", cat(open(1), win(1, mux.MaxWindow)), 1, mux.ResetFlowControl},
		{"udp packet over 65507", "tok", cat(mux.AppendOpen(nil, 1, mux.KindUDP, false, nil), mux.AppendData(nil, 1, false, big)), 1, mux.ResetProtocol},
		{"route without a usable member", "nohost", open(1), 1, mux.ResetConnect},
		{"member refuses", "dead", open(1), 1, mux.ResetConnect},
	}
	for _, tc := range resets {
		t.Run(tc.name, func(t *testing.T) {
			c := dialTunnel(t, g, tc.token)
			c.send(tc.send)
			if code := c.waitReset(tc.id); code != tc.code {
				t.Fatalf("RESET %v, want %v (close %d)", code, tc.code, c.code)
			}
			if tc.token == "tok" {
				// The same tunnel goes on; ids continue above the bad one.
				c.mu.Lock()
				c.nextID = 101
				c.mu.Unlock()
				if err := tunnelEcho(c, 100<<10); err != nil {
					t.Fatalf("same tunnel after the reset: %v", err)
				}
			}
			if err := tunnelEcho(dialTunnel(t, g, "tok"), 100<<10); err != nil {
				t.Fatalf("second tunnel: %v", err)
			}
		})
	}
}

// TestTunnelMaxStreams: an OPEN beyond MAX_STREAMS is refused, the open
// streams go on, and a stream that ends makes room again.
func TestTunnelMaxStreams(t *testing.T) {
	echo, _ := echoMember(t)
	g := startTunnelGateway(t, map[string]string{"tok": echo}, func(c *Config) { c.TunnelMaxStreams = 4 })
	c := dialTunnel(t, g, "tok")
	var held []*tunStream
	for i := 0; i < 4; i++ {
		s := c.open(mux.KindTCP, []byte("e"))
		buf := make([]byte, 1)
		if _, err := io.ReadFull(s, buf); err != nil { // open for sure
			t.Fatal(err)
		}
		held = append(held, s)
	}
	s5 := c.open(mux.KindTCP, nil)
	if code := c.waitReset(s5.id); code != mux.ResetRefused {
		t.Fatalf("5th stream: RESET %v, want REFUSED", code)
	}
	for _, s := range held {
		s.CloseWrite()
		if _, err := io.ReadAll(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := tunnelEcho(c, 64<<10); err != nil {
		t.Fatal(err)
	}
}

// TestTunnelDrainingStreamFreesSlot: a stream whose FINs have crossed both
// ways is done for the client, which frees its MAX_STREAMS slot then, even
// while the gateway still holds client bytes its member has not read: the
// next OPEN is accepted. Such draining streams are bounded: with MAX_STREAMS
// 1, two of them refuse a third stream until their members read; every
// byte reaches its member intact.
func TestTunnelDrainingStreamFreesSlot(t *testing.T) {
	release := make(chan struct{})
	type got struct {
		sum [32]byte
		n   int64
	}
	gotc := make(chan got, 4)
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		// A small receive buffer: the member's kernel takes little of what
		// it does not read, so the rest waits in the gateway.
		rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096) })
		return nil
	}}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
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
				c.Write([]byte("ok"))
				c.(*net.TCPConn).CloseWrite()
				<-release
				h := sha256.New()
				n, _ := io.Copy(h, c)
				var g got
				copy(g.sum[:], h.Sum(nil))
				g.n = n
				gotc <- g
			}()
		}
	}()
	g := startTunnelGateway(t, map[string]string{"tok": ln.Addr().String()}, func(c *Config) { c.TunnelMaxStreams = 1 })
	c := dialTunnel(t, g, "tok")
	var want [][32]byte
	var sizes []int64
	// drain opens a stream and writes to it until its window is used up:
	// then the gateway holds at least half a window the member has not read
	// (it credits a stream once the member took half). It sends FIN and
	// reads the member's "ok" and FIN. It stops at limit bytes too.
	drain := func(name string, limit int64) {
		t.Helper()
		s := c.open(mux.KindTCP, nil)
		h := sha256.New()
		piece := make([]byte, 16<<10)
		var n int64
		for stalled := 0; stalled < 10 && n < limit; {
			c.mu.Lock()
			room := s.sendWin >= int64(len(piece))
			c.mu.Unlock()
			if !room {
				stalled++
				time.Sleep(50 * time.Millisecond)
				continue
			}
			stalled = 0
			rand.Read(piece)
			if err := s.Write(piece); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			h.Write(piece)
			n += int64(len(piece))
		}
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		want, sizes = append(want, sum), append(sizes, n)
		s.CloseWrite()
		b, err := io.ReadAll(s)
		if err != nil || string(b) != "ok" {
			t.Fatalf("%s: read %q, %v; want ok and the FIN", name, b, err)
		}
	}
	drain("stream 1", math.MaxInt64)
	drain("stream 2 (stream 1 draining)", math.MaxInt64)
	s3 := c.open(mux.KindTCP, nil)
	if code := c.waitReset(s3.id); code != mux.ResetRefused {
		t.Fatalf("third stream beside two draining: RESET %v, want REFUSED", code)
	}
	close(release)
	for i := range 2 {
		select {
		case g := <-gotc:
			if !(g.n == sizes[0] && g.sum == want[0]) && !(g.n == sizes[1] && g.sum == want[1]) {
				t.Fatalf("member %d got %d bytes that match neither stream (%d, %d bytes sent)", i, g.n, sizes[0], sizes[1])
			}
		case <-time.After(20 * time.Second):
			t.Fatal("members did not get their bytes")
		}
	}
	drain("stream after the draining ones ended", 64<<10)
}

// TestTunnelClientReset: the client's RESET closes the member connection
// and nothing else.
func TestTunnelClientReset(t *testing.T) {
	echo, open := echoMember(t)
	g := startTunnelGateway(t, map[string]string{"tok": echo}, nil)
	c := dialTunnel(t, g, "tok")
	s := c.open(mux.KindTCP, []byte("e"))
	io.ReadFull(s, make([]byte, 1))
	c.send(mux.AppendReset(nil, s.id, mux.ResetCancel))
	waitFor(t, "the member connection to close", func() bool { return open.Load() == 0 })
	if err := tunnelEcho(c, 64<<10); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds (20 s bound).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestTunnelRevoke: closing the token's account closes the tunnel (1008)
// and every member connection of its streams; usage was charged per token.
func TestTunnelRevoke(t *testing.T) {
	echo, open := echoMember(t)
	acct := &testAccount{key: "k"}
	g := startGateway(t, echo, func(c *Config) {
		c.Auth = &accountAuth{route: Route{Upstream: echo}, acct: acct}
	})
	c := dialTunnel(t, g, "acct")
	for i := 0; i < 5; i++ {
		s := c.open(mux.KindTCP, []byte("e"))
		io.ReadFull(s, make([]byte, 1))
	}
	if open.Load() != 5 {
		t.Fatalf("%d member connections, want 5", open.Load())
	}
	g.CloseAccount("k")
	if code := c.waitClose(); code != ws.StatusPolicyViolation {
		t.Fatalf("close %d, want 1008", code)
	}
	waitFor(t, "every member connection to close", func() bool { return open.Load() == 0 })
	waitFor(t, "the account's release", func() bool { return acct.released.Load() == 1 })
	if up, down := acct.up.Load(), acct.down.Load(); up != 5 || down != 5 {
		t.Fatalf("usage up %d down %d, want 5 each (payload bytes)", up, down)
	}
}

// TestTunnelDrain: Shutdown sends GOAWAY with the last stream id; open
// streams finish with every byte, a new stream is refused, and the tunnel
// closes with 1001 after its last stream.
func TestTunnelDrain(t *testing.T) {
	echo, _ := echoMember(t)
	g := startGateway(t, echo, func(c *Config) { c.DrainTimeout = 20 * time.Second })
	c := dialTunnel(t, g, "s3cret")
	type half struct {
		s    *tunStream
		data []byte
	}
	var hs []half
	for i := 0; i < 3; i++ {
		data := make([]byte, 1<<20)
		rand.Read(data)
		s := c.open(mux.KindTCP, nil)
		if err := s.Write(data[:len(data)/2]); err != nil {
			t.Fatal(err)
		}
		hs = append(hs, half{s, data})
	}
	done := make(chan error, 1)
	go func() { done <- g.Shutdown(context.Background()) }()
	c.mu.Lock()
	c.wait("GOAWAY", func() bool { return c.goAway >= 0 })
	last := c.goAway
	c.mu.Unlock()
	if last != 5 {
		t.Fatalf("GOAWAY last stream %d, want 5", last)
	}
	late := c.open(mux.KindTCP, nil)
	if code := c.waitReset(late.id); code != mux.ResetRefused {
		t.Fatalf("stream after GOAWAY: RESET %v, want REFUSED", code)
	}
	var wg sync.WaitGroup
	for _, h := range hs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h.s.Write(h.data[len(h.data)/2:]); err == nil {
				h.s.CloseWrite()
			}
		}()
	}
	for _, h := range hs {
		got, err := io.ReadAll(h.s)
		if err != nil || !bytes.Equal(got, h.data) {
			t.Fatalf("stream %d during drain: %d of %d bytes, %v", h.s.id, len(got), len(h.data), err)
		}
	}
	wg.Wait()
	if code := c.waitClose(); code != ws.StatusGoingAway {
		t.Fatalf("close %d, want 1001", code)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	c.check()
}

// TestTunnelUDPEcho: a udp stream carries one packet per DATA frame both
// ways, beside a tcp stream.
func TestTunnelUDPEcho(t *testing.T) {
	udp := testpeer.UDPEcho(t)
	g := startTunnelGateway(t, map[string]string{"tok": udp}, nil)
	c := dialTunnel(t, g, "tok")
	s := c.open(mux.KindUDP, nil)
	var want []byte
	for i, n := range []int{1, 100, 1400, 9000, 65507} {
		p := make([]byte, n)
		rand.Read(p)
		want = append(want, p...)
		c.send(mux.AppendData(nil, s.id, false, p))
		c.mu.Lock()
		c.wait("the echo", func() bool { return s.pkts == i+1 || s.reset != 0 })
		c.mu.Unlock()
	}
	c.mu.Lock()
	got := s.buf
	c.mu.Unlock()
	if !bytes.Equal(got, want) {
		t.Fatalf("echoed %d bytes, differ from the %d sent", len(got), len(want))
	}
	// FIN ends the association: the gateway answers with its own FIN.
	s.CloseWrite()
	if _, err := io.ReadAll(s); err != nil {
		t.Fatal(err)
	}
	c.check()
}

// TestTunnelIdleHoldsNothing: once its streams ended a tunnel holds no
// buffer, no map and no member socket.
func TestTunnelIdleHoldsNothing(t *testing.T) {
	echo, _ := echoMember(t)
	m := &countingMetrics{}
	g := startGateway(t, echo, func(c *Config) { c.Metrics = m; c.Loops = 1 })
	c := dialTunnel(t, g, "s3cret")
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); tunnelEcho(c, 512<<10) }()
	}
	wg.Wait()
	l := g.loops[0]
	state := func() (streams, maps, fds int, tout bool) {
		ch := make(chan struct{})
		l.post(func() {
			defer close(ch)
			for s := l.head.next; s != &l.head; s = s.next {
				if s.tun == nil {
					continue
				}
				streams += len(s.tun.streams)
				if s.tun.streams != nil || s.tun.byFD != nil || s.tun.blocked != nil {
					maps++
				}
			}
			for _, s := range l.fds {
				if s != nil {
					fds++
				}
			}
			tout = l.towner != nil
		})
		<-ch
		return
	}
	waitFor(t, "the streams to end", func() bool { n, _, _, _ := state(); return n == 0 })
	if _, maps, fds, tout := state(); maps != 0 || fds != 1 || tout {
		t.Fatalf("idle tunnel holds maps %d, fds %d (want the client's only), pending frames %v", maps, fds, tout)
	}
	if b := m.buffered.Load(); b != 0 {
		t.Fatalf("idle tunnel: %d bytes buffered", b)
	}
	if g.Sessions() != 1 {
		t.Fatalf("%d sessions, want the idle tunnel", g.Sessions())
	}
}

// TestTunnelHandshake: the subprotocol and the token are checked before the
// 101; every failure gets the one decoy answer, counted by reason.
func TestTunnelHandshake(t *testing.T) {
	m := &fbMetrics{}
	g := startGateway(t, "127.0.0.1:1", func(c *Config) { c.Metrics = m })
	req := func(headers string) []byte {
		conn, err := net.Dial("tcp", g.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(conn, "GET /v1/tunnel HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade, close\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"+headers+"\r\n")
		b, _ := io.ReadAll(bufio.NewReader(conn))
		return dropDate(b)
	}
	decoy := req("") // no subprotocol, no token
	if !bytes.HasPrefix(decoy, []byte("HTTP/1.1 404 ")) {
		t.Fatalf("no subprotocol: %q, want the decoy", decoy)
	}
	for name, h := range map[string]string{
		"no token":          "Sec-WebSocket-Protocol: httvps.v1\r\n",
		"wrong token":       "Sec-WebSocket-Protocol: httvps.v1\r\nAuthorization: Bearer nope\r\n",
		"not bearer":        "Sec-WebSocket-Protocol: httvps.v1\r\nAuthorization: Basic czNjcmV0\r\n",
		"unknown version":   "Sec-WebSocket-Protocol: httvps.v9\r\nAuthorization: Bearer s3cret\r\n",
		"two tokens":        "Sec-WebSocket-Protocol: httvps.v1\r\nAuthorization: Bearer s3cret\r\nAuthorization: Bearer s3cret\r\n",
		"other subprotocol": "Sec-WebSocket-Protocol: chat\r\nAuthorization: Bearer s3cret\r\n",
		// Found in review: a third header, or Basic then Bearer, was let in.
		"three tokens":  "Sec-WebSocket-Protocol: httvps.v1\r\nAuthorization: Bearer s3cret\r\nAuthorization: Bearer x\r\nAuthorization: Bearer s3cret\r\n",
		"basic, bearer": "Sec-WebSocket-Protocol: httvps.v1\r\nAuthorization: Basic czNjcmV0\r\nAuthorization: Bearer s3cret\r\n",
	} {
		if got := req(h); !bytes.Equal(got, decoy) {
			t.Errorf("%s: %q, want the decoy", name, got)
		}
	}
	if v, s := m.rejected[RejectVersion].Load(), m.rejected[RejectSecret].Load(); v != 3 || s != 6 {
		t.Errorf("rejects: version %d (want 3), secret %d (want 6)", v, s)
	}
	// Newest first: the gateway answers with the newest version it speaks.
	c, err := tryTunnel(g, "s3cret", "httvps.v9", "httvps.v1")
	if err != nil {
		t.Fatalf("httvps.v9, httvps.v1: %v", err)
	}
	c.conn.Close()
}

// TestTunnelTLS: streams over a TLS tunnel (the record layer on the relay
// loop), hashed both ways.
func TestTunnelTLS(t *testing.T) {
	member, _ := echoMember(t)
	g, pool := startTLSGateway(t, member, nil)
	c, err := tryTunnelOpt(g, "s3cret", true, pool, mux.Subprotocol)
	if err != nil {
		t.Fatal(err)
	}
	c.t = t
	defer c.conn.Close()
	parallelEcho(t, c, 50, func(i int) int { return 64<<10 + i*1013 })
	c.check()
}

// TestTunnelMemberFailover: a stream moves on to the route's next member
// when a connect is refused or times out, as the Outline paths do.
func TestTunnelMemberFailover(t *testing.T) {
	echo, _ := echoMember(t)
	for name, first := range map[string]string{"refused": closedPort(t), "timeout": tarpit(t)} {
		t.Run(name, func(t *testing.T) {
			g := startGateway(t, echo, func(c *Config) {
				c.DialTimeout = time.Second
				c.Auth = &accountAuth{route: Route{Upstream: first, Fallbacks: []string{echo}}, acct: &testAccount{key: "k"}}
			})
			c := dialTunnel(t, g, "acct")
			if err := tunnelEcho(c, 300<<10); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestTunnelIdleGoAway: a tunnel with no stream and no frame for the idle
// timeout gets GOAWAY (last stream 0) and close 1001.
func TestTunnelIdleGoAway(t *testing.T) {
	echo, _ := echoMember(t)
	g := startGateway(t, echo, func(c *Config) { c.IdleTimeout = time.Second })
	c := dialTunnel(t, g, "s3cret")
	if code := c.waitClose(); code != ws.StatusGoingAway {
		t.Fatalf("idle tunnel: close %d, want 1001", code)
	}
	c.mu.Lock()
	last := c.goAway
	c.mu.Unlock()
	if last != 0 {
		t.Fatalf("GOAWAY last stream %d, want 0 (none opened)", last)
	}
}

// TestIdleStructSizes guards the memory an idle session and an idle tunnel
// cost (docs/04): the session stays in the 448-byte size class with the
// tunnel pointer, and a tunnel's own state in the 256-byte one.
func TestIdleStructSizes(t *testing.T) {
	if n := unsafe.Sizeof(session{}); n > 448 {
		t.Errorf("session is %d bytes, want at most 448", n)
	}
	if n := unsafe.Sizeof(tunnel{}); n > 256 {
		t.Errorf("tunnel is %d bytes, want at most 256", n)
	}
}

// TestTunnelRelayAllocs: a client read of DATA frames relayed to a stream's
// member, with the WINDOW it earns, and a member read framed for the client
// cost no allocation, plaintext and on TLS.
func TestTunnelRelayAllocs(t *testing.T) {
	for _, withTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", withTLS), func(t *testing.T) {
			g := &Gateway{cfg: Config{MaxControlRate: -1, BufferCap: 1 << 20}, m: nopMetrics{}, tm: nopTunnelMetrics{},
				chunk: 64 << 10, log: slog.New(slog.DiscardHandler)}
			l := &loop{g: g, scratch: make([]byte, 256<<10), iov: make([][]byte, 0, maxIOV)}
			l.out = make([]byte, 0, len(l.scratch)+1024)
			cli, up := socketPair(t), socketPair(t)
			s := &session{l: l, kind: PathTunnel, cfd: int32(cli[0]), ufd: -1, tun: newTunnel(nil)}
			s.rd.Init(codec.Limits{RejectText: true, MaxMessage: math.MaxInt64})
			st := &tstream{id: 1, fd: up[0], recvWin: tunStreamWindow, sendWin: mux.DefaultStreamWindow}
			s.tun.streams = map[uint32]*tstream{1: st}
			s.tun.byFD = map[int32]*tstream{int32(up[0]): st}
			s.tun.gotSettings, s.tun.highest = true, 1
			var client *tls13.Sealer
			if withTLS {
				secretC, secretS := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
				rl, err := newTLS13(tls.TLS_AES_128_GCM_SHA256, secretC, secretS)
				if err != nil {
					t.Fatal(err)
				}
				s.tls = &tlsSession{rl: rl}
				if client, err = tls13.NewSealer(tls.TLS_AES_128_GCM_SHA256, secretC); err != nil {
					t.Fatal(err)
				}
			}
			var frames []byte
			for range 4 {
				frames = mux.AppendData(frames, 1, false, bytes.Repeat([]byte{'u'}, 700))
			}
			const runs = 50
			reads := make([][]byte, runs+1)
			for i := range reads {
				wsf := codec.AppendClientFrame(nil, ws.OpBinary, true, [4]byte{1, 2, 3, 4}, frames)
				if withTLS {
					reads[i], _ = client.Seal(nil, 23, wsf)
				} else {
					reads[i] = wsf
				}
			}
			s.tbuf() // the loop's tunnel buffer, made once per loop
			down := bytes.Repeat([]byte{'d'}, 1000)
			sink := make([]byte, 64<<10)
			member := 0 // bytes the member read
			i := 0
			allocs := testing.AllocsPerRun(runs, func() {
				n := copy(l.scratch, reads[i])
				i++
				if withTLS {
					s.openRecords(l.scratch[:n])
				} else {
					s.consume(l.scratch[:n], l.iov[:0])
				}
				// What tunDone does once the event is handled: the gathered
				// pieces to the member, then the collected frames.
				s.gatherFlush()
				s.tunFlush()
				if n, _ := unix.Read(up[1], sink); n > 0 {
					member += n
				}
				unix.Write(up[1], down)
				s.streamRead(st)
			})
			if s.dead() || s.closeSent() {
				t.Fatal("tunnel failed")
			}
			if allocs != 0 {
				t.Errorf("%v allocations per read", allocs)
			}
			got := make([]byte, 1<<20)
			if member != (runs+1)*4*700 || !st.up.empty() {
				t.Fatalf("member got %d bytes, want %d", member, (runs+1)*4*700)
			}
			n, _ := unix.Read(cli[1], got)
			// Per run one DATA frame (WebSocket header 4, DATA header 9,
			// 1000 bytes), and one WINDOW (2 + 13) once 128 KiB was taken;
			// on TLS each in its own record (5 + 1 + 16 more).
			want := (runs+1)*(4+9+1000) + 2 + 13
			if withTLS {
				want += (runs + 2) * (5 + 1 + 16)
			}
			if n != want {
				t.Fatalf("client got %d bytes, want %d", n, want)
			}
		})
	}
}

// tunConn is a tunnel stream as a testpeer.HalfConn.
type tunConn struct{ *tunStream }

func (c tunConn) Write(p []byte) (int, error) {
	if err := c.tunStream.Write(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c tunConn) Close() error { return nil }

// TestTunnelShadowsocks: Shadowsocks streams and a UDP association through
// a tunnel to a real ss-server, fetching from and uploading to an origin
// and echoing a datagram: the bytes a user relies on, end to end.
func TestTunnelShadowsocks(t *testing.T) {
	const method, password = "chacha20-ietf-poly1305", "tunnel-pw"
	ss := testpeer.SSServer(t, password, method)
	origin := testpeer.StartOrigin(t)
	echo := testpeer.UDPEcho(t)
	cipher, err := testpeer.NewCipher(method, password)
	if err != nil {
		t.Fatal(err)
	}
	g := startTunnelGateway(t, map[string]string{"tok": ss}, nil)
	c := dialTunnel(t, g, "tok")
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sc, err := cipher.NewSSConn(tunConn{c.open(mux.KindTCP, nil)}, origin.Addr)
			if err != nil {
				errs <- err
				return
			}
			n := int64(200<<10 + i*4099)
			if i%2 == 0 {
				sum, got, err := testpeer.HTTPGetSHA256(sc, origin.Addr, "/bytes/"+strconv.FormatInt(n, 10))
				if err == nil && (got != n || sum != testpeer.PseudoRandomSHA256(n, 0)) {
					err = fmt.Errorf("GET: %d bytes, sum %s", got, sum)
				}
				if err != nil {
					errs <- err
				}
				return
			}
			sum, got, err := testpeer.HTTPPostSHA256(sc, origin.Addr, testpeer.PseudoRandom(n, uint64(i)), n)
			if err == nil && (got != n || sum != testpeer.PseudoRandomSHA256(n, uint64(i))) {
				err = fmt.Errorf("POST: %d bytes, sum %s", got, sum)
			}
			if err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	u := c.open(mux.KindUDP, nil)
	pkt, err := cipher.SealPacket(echo, []byte("datagram through the tunnel"))
	if err != nil {
		t.Fatal(err)
	}
	c.send(mux.AppendData(nil, u.id, false, pkt))
	c.mu.Lock()
	c.wait("the udp echo", func() bool { return u.pkts == 1 })
	reply := append([]byte(nil), u.buf...)
	c.mu.Unlock()
	from, payload, err := cipher.OpenPacket(reply)
	if err != nil || from != echo || string(payload) != "datagram through the tunnel" {
		t.Fatalf("udp reply from %q: %q, %v", from, payload, err)
	}
	c.check()
}

// TestTunnelDrainDeadline: a stream still open at DrainTimeout ends with the
// tunnel, which gets close 1001 (after its GOAWAY).
func TestTunnelDrainDeadline(t *testing.T) {
	echo, open := echoMember(t)
	g := startGateway(t, echo, func(c *Config) { c.DrainTimeout = time.Second })
	c := dialTunnel(t, g, "s3cret")
	s := c.open(mux.KindTCP, []byte("e")) // never finished
	io.ReadFull(s, make([]byte, 1))
	done := make(chan error, 1)
	go func() { done <- g.Shutdown(context.Background()) }()
	if code := c.waitClose(); code != ws.StatusGoingAway {
		t.Fatalf("close %d, want 1001", code)
	}
	c.mu.Lock()
	last := c.goAway
	c.mu.Unlock()
	if last != int64(s.id) {
		t.Fatalf("GOAWAY last stream %d, want %d", last, s.id)
	}
	if err := <-done; err == nil {
		t.Fatal("Shutdown reported a clean drain with a stream still open")
	}
	waitFor(t, "the member connection to close", func() bool { return open.Load() == 0 })
}

// TestTunnelUploadToSlowMember: a stream whose member socket stops taking
// bytes for a while (its buffers full) resumes when the member reads again.
// Broke before: the bytes the socket refused were queued without asking
// epoll for room, so the queue was never flushed, the client never got its
// window back, and the upload stalled for good (found by the bench's 512
// MiB tunnel upload).
func TestTunnelUploadToSlowMember(t *testing.T) {
	const n = 32 << 20 // beyond what the kernel buffers of both sockets hold
	member := testpeer.ListenTCP(t, func(c *net.TCPConn) {
		time.Sleep(500 * time.Millisecond) // the gateway's writes hit EAGAIN meanwhile
		h := sha256.New()
		io.Copy(h, c)
		c.Write(h.Sum(nil))
		c.CloseWrite()
	})
	g := startGateway(t, member, nil)
	c := dialTunnel(t, g, "s3cret")
	data := make([]byte, n)
	rand.Read(data)
	want := sha256.Sum256(data)
	s := c.open(mux.KindTCP, nil)
	done := make(chan error, 1)
	go func() {
		if err := s.Write(data); err != nil {
			done <- err
			return
		}
		if err := s.CloseWrite(); err != nil {
			done <- err
			return
		}
		got, err := io.ReadAll(s)
		if err == nil && !bytes.Equal(got, want[:]) {
			err = fmt.Errorf("member hashed %x, sent %x", got, want[:8])
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second): // a failure bound: the upload stalled
		t.Fatal("the upload to a member that paused never completed")
	}
}

// TestTunnelGatheredUpload: DATA frames of several streams interleaved in
// runs within one client message (so one read holds many pieces of each,
// and a run longer than maxIOV) reach every member intact and in order,
// with each FIN after the stream's last bytes: the pieces a read holds for
// one stream go out in one writev.
func TestTunnelGatheredUpload(t *testing.T) {
	member, _ := echoMember(t)
	g := startGateway(t, member, nil)
	c := dialTunnel(t, g, "s3cret")
	const nstreams = 4
	streams := make([]*tunStream, nstreams)
	sent := make([][]byte, nstreams)
	for i := range streams {
		streams[i] = c.open(mux.KindTCP, nil)
	}
	var frames []byte
	add := func(i, n int, fin bool) {
		p := make([]byte, n)
		rand.Read(p)
		sent[i] = append(sent[i], p...)
		frames = mux.AppendData(frames, streams[i].id, fin, p)
	}
	for range 150 { // a run of tiny frames, past maxIOV
		add(0, 37, false)
	}
	for round := range 40 {
		for i := range streams {
			for k := range round%3 + 1 {
				add(i, 500+(round*131+i*977+k*53)%2500, false)
			}
		}
	}
	for i := range streams {
		add(i, 100+i, true)
	}
	if err := c.send(frames); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, nstreams)
	for i, s := range streams {
		go func() {
			h := sha256.New()
			n, err := io.Copy(h, s)
			if err == nil {
				if want := sha256.Sum256(sent[i]); n != int64(len(sent[i])) || !bytes.Equal(h.Sum(nil), want[:]) {
					err = fmt.Errorf("stream %d: %d bytes back of %d, or they differ", s.id, n, len(sent[i]))
				}
			}
			errs <- err
		}()
	}
	for range streams {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	c.check()
}

// TestTunnelSessionWindowFair: streams whose members always have bytes
// share a session window that the client refills a little at a time (its
// stream windows are large, so the session window is what holds them
// back). Every refill feeds the waiting streams in turn (docs/04, "Native
// tunnel"): each stream moves on, none takes the refills for itself, and
// the gateway never overruns a window.
func TestTunnelSessionWindowFair(t *testing.T) {
	member := testpeer.ListenTCP(t, func(c *net.TCPConn) {
		var first [1]byte
		if _, err := io.ReadFull(c, first[:]); err != nil {
			return
		}
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	g := startTunnelGateway(t, map[string]string{"tok": member}, nil)
	c := dialTunnelOpt(t, g, "tok", false)
	const (
		streams   = 16
		streamWin = 8 << 20
		sessWin   = 256 << 10
		refills   = 24
	)
	set := mux.DefaultSettings()
	set.MaxStreams = 0
	set.StreamWindow, set.SessionWindow = streamWin, sessWin
	c.mu.Lock()
	c.recvWin = sessWin
	c.mu.Unlock()
	if err := c.send(mux.AppendSettings(nil, set)); err != nil {
		t.Fatal(err)
	}
	var ss []*tunStream
	for range streams {
		s := c.open(mux.KindTCP, []byte("p"))
		c.mu.Lock()
		s.recvWin += streamWin - mux.DefaultStreamWindow
		c.mu.Unlock()
		ss = append(ss, s)
	}
	for i := 0; i <= refills; i++ {
		c.mu.Lock()
		c.wait("the session window to be used", func() bool { return c.recvWin == 0 || c.overrun != nil })
		if i < refills {
			c.recvWin += sessWin
		}
		c.mu.Unlock()
		if i < refills {
			if err := c.send(mux.AppendWindow(nil, 0, sessWin)); err != nil {
				t.Fatal(err)
			}
		}
	}
	c.check()
	c.mu.Lock()
	defer c.mu.Unlock()
	total, least := int64(0), int64(-1)
	for _, s := range ss {
		total += s.total
		if least < 0 || s.total < least {
			least = s.total
		}
	}
	if want := int64(sessWin * (refills + 1)); total != want {
		t.Fatalf("streams got %d bytes in all, want the session windows granted, %d", total, want)
	}
	// A fair share is total/streams; every stream gets at least a quarter.
	t.Logf("bytes per stream: %v", totals(ss))
	if fair := total / streams; least < fair/4 {
		t.Fatalf("the stream served least got %d bytes; fair share %d (all: %v)", least, fair, totals(ss))
	}
}

func totals(ss []*tunStream) []int64 {
	var out []int64
	for _, s := range ss {
		out = append(out, s.total)
	}
	return out
}
