package gateway

import (
	"context"
	"io"
	"net"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/httvps/httvps/codec"
	"github.com/httvps/httvps/internal/testpeer"
)

// readClose reads server frames until a close frame and returns its code.
func readClose(t *testing.T, c net.Conn) ws.StatusCode {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		h, err := ws.ReadHeader(c)
		if err != nil {
			t.Fatalf("reading for close: %v", err)
		}
		body := make([]byte, h.Length)
		if _, err := io.ReadFull(c, body); err != nil {
			t.Fatal(err)
		}
		if h.OpCode == ws.OpClose {
			code, _ := ws.ParseCloseFrameData(body)
			return code
		}
	}
}

func TestPingGetsPong(t *testing.T) {
	g := startGateway(t, testpeer.EchoServer(t), nil)
	c := dialWS(t, g, "/s3cret/tcp")
	defer c.Close()
	c.Write(codec.AppendClientFrame(nil, ws.OpPing, true, [4]byte{1, 2, 3, 4}, []byte("hi")))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	h, err := ws.ReadHeader(c)
	if err != nil || h.OpCode != ws.OpPong || h.Length != 2 {
		t.Fatalf("got %+v %v", h, err)
	}
	b := make([]byte, 2)
	io.ReadFull(c, b)
	if string(b) != "hi" {
		t.Fatalf("pong payload %q", b)
	}
}

func TestTextFrameClosed1003(t *testing.T) {
	g := startGateway(t, testpeer.EchoServer(t), nil)
	c := dialWS(t, g, "/s3cret/tcp")
	defer c.Close()
	wsutil.WriteClientText(c, []byte("text is not a stream"))
	if code := readClose(t, c); code != ws.StatusUnsupportedData {
		t.Fatalf("close code %d, want 1003", code)
	}
}

func TestOversizedFrameClosed1009(t *testing.T) {
	g := startGateway(t, testpeer.EchoServer(t), func(c *Config) { c.MaxFrameSize = 4096 })
	c := dialWS(t, g, "/s3cret/tcp")
	defer c.Close()
	// Only the header: the gateway must refuse on the length alone.
	hdr := ws.Header{Fin: true, OpCode: ws.OpBinary, Length: 1 << 40, Masked: true}
	ws.WriteHeader(c, hdr)
	if code := readClose(t, c); code != ws.StatusMessageTooBig {
		t.Fatalf("close code %d, want 1009", code)
	}
}

func TestShutdownSendsGoingAway(t *testing.T) {
	g := startGateway(t, testpeer.EchoServer(t), nil)
	c := dialWS(t, g, "/s3cret/tcp")
	defer c.Close()
	wsutil.WriteClientBinary(c, []byte("x"))
	for g.Sessions() != 1 {
		time.Sleep(time.Millisecond)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- g.Shutdown(ctx)
	}()
	if code := readClose(t, c); code != ws.StatusGoingAway {
		t.Fatalf("close code %d, want 1001", code)
	}
	// Answer the close: the drain completes without waiting for the deadline.
	ws.WriteFrame(c, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))))
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("shutdown did not finish after the client closed")
	}
	if _, err := net.DialTimeout("tcp", g.Addr().String(), time.Second); err == nil {
		t.Fatal("still accepting after shutdown")
	}
}

func TestIdleTimeoutCloses(t *testing.T) {
	g := startGateway(t, testpeer.EchoServer(t), func(c *Config) { c.IdleTimeout = 700 * time.Millisecond })
	c := dialWS(t, g, "/s3cret/tcp")
	defer c.Close()
	if code := readClose(t, c); code != ws.StatusGoingAway {
		t.Fatalf("close code %d, want 1001", code)
	}
	deadline := time.Now().Add(8 * time.Second)
	for g.Sessions() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g.Sessions() != 0 {
		t.Fatal("idle session not ended")
	}
}

// countingMetrics records the bytes held in session buffers.
type countingMetrics struct {
	nopMetrics
	buffered, peak atomic.Int64
}

func (m *countingMetrics) Buffered(d int) {
	v := m.buffered.Add(int64(d))
	for {
		p := m.peak.Load()
		if v <= p || m.peak.CompareAndSwap(p, v) {
			return
		}
	}
}

// A fast upstream and a client that never reads: the gateway must stop
// reading the upstream instead of buffering it (regression: netpoll reads
// eagerly without bound).
func TestSlowClientBoundsBuffer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var pushed atomic.Int64
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64<<10)
		c.SetWriteDeadline(time.Now().Add(3 * time.Second))
		for {
			n, err := c.Write(buf)
			pushed.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	m := &countingMetrics{}
	g := startGateway(t, ln.Addr().String(), func(c *Config) { c.Metrics = m; c.BufferCap = 64 << 10 })
	c := dialWS(t, g, "/s3cret/tcp")
	defer c.Close()
	time.Sleep(3500 * time.Millisecond)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if p := m.peak.Load(); p > 64<<10+16 {
		t.Fatalf("session buffered %d bytes, cap 64 KiB", p)
	}
	// The upstream was slowed by TCP: it could only fill the kernel buffers.
	if n := pushed.Load(); n > 64<<20 {
		t.Fatalf("upstream pushed %d bytes into a client that never reads", n)
	}
	t.Logf("upstream pushed %d KiB, gateway peak buffered %d KiB, heap in use %d KiB", pushed.Load()>>10, m.peak.Load()>>10, ms.HeapInuse>>10)
}

// A fast upstream and a client that reads slowly, with the default 256 KiB
// read chunk: once the client has fallen behind, reads toward it follow
// what it takes (nextRead), so what the session holds is mostly well under
// a chunk and never over one; and every byte arrives in order.
func TestSlowClientGetsSmallReads(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 251*256)
		for i := range buf {
			buf[i] = byte(i % 251)
		}
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	m := &countingMetrics{}
	g := startGateway(t, ln.Addr().String(), func(c *Config) { c.Metrics = m })
	if g.chunk != 256<<10 {
		t.Fatalf("default read chunk %d, want 256 KiB", g.chunk)
	}
	// Not dialWS: the upstream pushes at once, so the dialer's reader may
	// hold the first frame's bytes after the 101.
	conn, br, _, err := ws.Dialer{Timeout: 5 * time.Second}.Dial(context.Background(), "ws://"+g.Addr().String()+"/s3cret/tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var c io.Reader = conn
	if br != nil {
		c = io.MultiReader(br, conn)
	}
	var got int64
	var samples []int64
	read := func(d time.Duration) {
		end := time.Now().Add(d)
		buf := make([]byte, 4096)
		for time.Now().Before(end) {
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			hdr, err := ws.ReadHeader(c)
			if err != nil {
				t.Fatal(err)
			}
			for left := hdr.Length; left > 0; {
				n, err := c.Read(buf[:min(int64(len(buf)), left)])
				if err != nil {
					t.Fatal(err)
				}
				for _, b := range buf[:n] {
					if b != byte(got%251) {
						t.Fatalf("byte %d is %d, want %d", got, b, got%251)
					}
					got++
				}
				left -= int64(n)
				samples = append(samples, m.buffered.Load())
				time.Sleep(time.Millisecond) // about 4 MB/s at most
			}
		}
	}
	read(time.Second)
	samples = samples[:0]
	read(2 * time.Second)
	if p := m.peak.Load(); p > 256<<10+16 {
		t.Fatalf("session buffered %d bytes, more than a read chunk", p)
	}
	slices.Sort(samples)
	p90 := samples[len(samples)*9/10]
	if p90 > minRead+16 {
		t.Fatalf("a known-slow client: 90th percentile of buffered bytes %d, want ≤ %d", p90, minRead+16)
	}
	t.Logf("read %d KiB; buffered after the first second: p50 %d KiB, p90 %d KiB, peak overall %d KiB",
		got>>10, samples[len(samples)/2]>>10, p90>>10, m.peak.Load()>>10)
}
