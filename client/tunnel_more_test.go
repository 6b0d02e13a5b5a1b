package client

import (
	"context"
	"errors"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/httvps/httvps/codec/mux"
	"github.com/httvps/httvps/internal/testpeer"
)

// TestTunnelSmallWindows: with small receive windows announced by the
// client, the server keeps within them and the client gives credit back as
// it reads; transfers complete intact.
func TestTunnelSmallWindows(t *testing.T) {
	peer, reports := hashPeer(t)
	srv := startTunServer(t, tunToken, peer, "", serverSettings(100))
	tun := newTestTunnel(t, 1, func(c *TunnelConfig) {
		c.StreamWindow, c.SessionWindow, c.MaxFrame = mux.MinMaxFrame, 4*mux.MinMaxFrame, mux.MinMaxFrame
	}, srv.Addr())
	var mu sync.Mutex
	want := map[string]int{}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := tun.DialStream(dialCtx(t))
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			sum, err := exchange(s, uint64(70+i), 2<<20, 512<<10, 7000)
			if err != nil {
				errs <- err
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
	if v := srv.clientViolations.Load(); v > 0 {
		t.Fatalf("the server sent beyond the client's windows %d times", v)
	}
}

// TestTunnelResetConnect: a member that cannot be reached ends the stream
// with RESET CONNECT, not retried.
func TestTunnelResetConnect(t *testing.T) {
	srv := startTunServer(t, tunToken, testpeer.DeadAddr(t), "", serverSettings(100))
	tun := newTestTunnel(t, 1, nil, srv.Addr())
	s, err := tun.DialStream(dialCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	var re *StreamResetError
	if _, err := s.Read(make([]byte, 8)); !errors.As(err, &re) || re.Code != mux.ResetConnect || !errors.Is(err, ErrStreamReset) {
		t.Fatalf("read %v, want RESET CONNECT", err)
	}
	if _, err := s.Write([]byte("more")); !errors.As(err, &re) {
		t.Fatalf("write after the reset: %v", err)
	}
}

// TestTunnelDeadlinesAndClose: a read deadline ends a blocked Read; Close
// ends a Write blocked on flow control; the tunnel goes on.
func TestTunnelDeadlinesAndClose(t *testing.T) {
	hold := make(chan struct{})
	defer close(hold)
	sink := testpeer.ListenTCP(t, func(c *net.TCPConn) { <-hold }) // never reads, never answers
	srv := startTunServer(t, tunToken, sink, "", serverSettings(100))
	tun := newTestTunnel(t, 1, nil, srv.Addr())
	s, err := tun.DialStream(dialCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	s.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := s.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its deadline: %v", err)
	}
	// A Read before any Write sent the OPEN.
	waitUntil(t, "the OPEN of a stream that read first", func() bool { return srv.opened.Load() == 1 })
	wrote := make(chan error, 1)
	go func() {
		_, err := s.Write(make([]byte, 256<<20)) // more than the sink's socket buffers take
		wrote <- err
	}()
	waitUntil(t, "the writer blocked on credit", func() bool {
		st := s.(*tunStream)
		st.mu.Lock()
		defer st.mu.Unlock()
		return st.id != 0 && st.sendWin == 0
	})
	s.Close()
	select {
	case err := <-wrote:
		if !errors.Is(err, ErrStreamClosed) {
			t.Fatalf("blocked write after Close: %v, want ErrStreamClosed", err)
		}
	case <-time.After(waitLong):
		t.Fatal("Close did not end the blocked Write")
	}
	if _, err := s.Read(make([]byte, 1)); !errors.Is(err, ErrStreamClosed) {
		t.Fatalf("read after Close: %v", err)
	}
	// The tunnel serves new streams.
	s2, err := tun.DialStream(dialCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	s2.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := s2.Write(make([]byte, 64<<20)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write past its deadline: %v", err)
	}
}

// TestTunnelCloseEndsEverything: Close ends the tunnels, their goroutines
// and the streams on them; DialStream then fails.
func TestTunnelCloseEndsEverything(t *testing.T) {
	srv := startTunServer(t, tunToken, testpeer.EchoServer(t), "", serverSettings(100))
	base := runtime.NumGoroutine()
	tun := newTestTunnel(t, 2, nil, srv.Addr())
	var streams []StreamConn
	for range 10 {
		s, err := tun.DialStream(dialCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		streams = append(streams, s)
	}
	waitUntil(t, "two tunnels", func() bool { return srv.accepted.Load() == 2 })
	tun.Close()
	for i, s := range streams {
		if _, err := s.Read(make([]byte, 2)); err == nil {
			// the echo of "x" may be buffered; the next read must fail
			_, err = s.Read(make([]byte, 2))
			if err == nil {
				t.Fatalf("stream %d still reads after Close", i)
			}
		}
	}
	if _, err := tun.DialStream(context.Background()); !errors.Is(err, ErrTunnelClosed) {
		t.Fatalf("DialStream after Close: %v", err)
	}
	deadline := time.Now().Add(waitLong)
	for runtime.NumGoroutine() > base+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Close, %d before\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st := tun.Status(); st.Connected {
		t.Fatalf("status %+v after Close", st)
	}
}

// TestTunnelUnusedStreams: streams closed before they sent anything never
// reach the gateway and give their slot back (more of them than
// MAX_STREAMS, one after another, on one tunnel).
func TestTunnelUnusedStreams(t *testing.T) {
	srv := startTunServer(t, tunToken, testpeer.EchoServer(t), "", serverSettings(8))
	tun := newTestTunnel(t, 1, nil, srv.Addr())
	for i := range 40 {
		s, err := tun.DialStream(dialCtx(t))
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		s.Close()
	}
	// Slots are whole: 8 streams at once still open and echo.
	var streams []StreamConn
	for i := range 8 {
		s, err := tun.DialStream(dialCtx(t))
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		defer s.Close()
		streams = append(streams, s)
	}
	for i, s := range streams {
		if _, err := s.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		if _, err := s.Read(b); err != nil || b[0] != byte(i) {
			t.Fatalf("stream %d echo %v %v", i, b, err)
		}
	}
	if n := srv.opened.Load(); n != 8 {
		t.Fatalf("server saw %d OPENs, want 8", n)
	}
}

// TestTunnelRevoked: a tunnel closed with 1008 ends its streams with that
// code (ErrTunnelLost, a *CloseError 1008), and once the gateway refuses
// the token the Status says ErrRefused (the caller then asks the control
// plane why).
func TestTunnelRevoked(t *testing.T) {
	srv := startTunServer(t, tunToken, testpeer.EchoServer(t), "", serverSettings(100))
	tun := newTestTunnel(t, 1, nil, srv.Addr())
	s, err := tun.DialStream(dialCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := s.Read(b); err != nil {
		t.Fatal(err)
	}
	srv.Revoke()
	_, err = s.Read(b)
	var ce *CloseError
	if !errors.Is(err, ErrTunnelLost) || !errors.As(err, &ce) || ce.Code != 1008 {
		t.Fatalf("read after revocation: %v, want ErrTunnelLost with close 1008", err)
	}
	waitUntil(t, "ErrRefused in the status", func() bool { return errors.Is(tun.Status().Err, ErrRefused) })
	if _, err := tun.DialStream(dialCtx(t)); !errors.Is(err, ErrRefused) {
		t.Fatalf("DialStream after revocation: %v, want ErrRefused", err)
	}
}
