package gateway

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"sync"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
	"testing"


	"github.com/httvps/httvps/codec/mux"
)

// echoMember is a loopback TCP member that echoes every connection and
// passes the client's FIN on (half-close), counting its connections.
func echoMember(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	var open atomic.Int64
	addr := listenRaw(t, func(c net.Conn) {
		open.Add(1)
		defer open.Add(-1)
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
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

func TestTunnelManyStreamsHashes(t *testing.T) {
	member, _ := echoMember(t)
	m := &countingMetrics{}
	g := startGateway(t, member, func(c *Config) { c.TunnelMaxStreams = 512; c.Metrics = m })
	c := dialTunnel(t, g, "s3cret")
	var wg sync.WaitGroup
	errs := make(chan error, 500)
	for i := 0; i < 500; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := tunnelEcho(c, 16<<10+i*97); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
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
	answers := listenRaw(t, func(c net.Conn) {
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
		c.(*net.TCPConn).CloseWrite()
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

var halfCloseSums = make(chan []byte, 1)

// TestTunnelStalledStream: a client that stops reading one stream, and a
// member that stops reading another, pin at most their windows in the
// gateway; the other streams of the tunnel go on at full speed.
func TestTunnelStalledStream(t *testing.T) {
	var pushed atomic.Int64
	member := listenRaw(t, func(c net.Conn) {
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
			c.(*net.TCPConn).CloseWrite()
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

var stallDone = make(chan struct{})
