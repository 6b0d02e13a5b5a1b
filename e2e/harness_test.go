// Package e2e runs the gateway in-process on loopback against real peers:
// ss-server, ss-local with v2ray-plugin, curl, and this package's own raw TCP
// and UDP servers. Every test bounds its time and cleans up its processes.
package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/internal/testpeer"
)

// startGateway runs a gateway with cfg on 127.0.0.1:0 and shuts it down at
// test end. routes maps secret → upstream "host:port".
func startGateway(t testing.TB, cfg gateway.Config, routes map[string]string) (*gateway.Gateway, string) {
	t.Helper()
	auth, err := gateway.NewStaticAuth(routes)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Auth = auth
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 2 * time.Second
	}
	if cfg.Logger == nil {
		level := slog.LevelError + 1
		if os.Getenv("E2E_GATEWAY_LOG") != "" {
			level = slog.LevelDebug
		}
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	g, err := gateway.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr := testpeer.ServeGateway(t, g)
	return g, addr
}

func wsURL(gw, secret, kind string) string {
	return "ws://" + gw + "/" + secret + "/" + kind
}

func dialWS(t testing.TB, url string) *testpeer.WSConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := testpeer.DialWS(ctx, url)
	if err != nil {
		if ctx.Err() != nil {
			logGoroutines(t)
		}
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// logGoroutines logs every goroutine's stack: a dial to an in-process
// gateway that times out leaves the only evidence of where it stalled there.
func logGoroutines(t testing.TB) {
	t.Helper()
	buf := make([]byte, 4<<20)
	t.Logf("goroutines at the timeout:\n%s", buf[:runtime.Stack(buf, true)])
}

// countMetrics is a gateway.Metrics that keeps totals and the high-water mark
// of buffered bytes.
type countMetrics struct {
	handshakeOK  atomic.Int64
	rejected     [gateway.NumRejects]atomic.Int64
	sessionStart atomic.Int64
	ends         [gateway.NumEnds]atomic.Int64
	up, down     atomic.Int64
	dialErrors   atomic.Int64
	dropped      atomic.Int64
	buffered     atomic.Int64
	maxBuffered  atomic.Int64
	tlsOK        atomic.Int64
	tlsResumed   atomic.Int64
}

func (m *countMetrics) HandshakeOK(gateway.PathKind)                 { m.handshakeOK.Add(1) }
func (m *countMetrics) HandshakeRejected(r gateway.Reject)           { m.rejected[r].Add(1) }
func (m *countMetrics) SessionStart(gateway.PathKind)                { m.sessionStart.Add(1) }
func (m *countMetrics) SessionEnd(_ gateway.PathKind, e gateway.End) { m.ends[e].Add(1) }
func (m *countMetrics) BytesUp(n int)                                { m.up.Add(int64(n)) }
func (m *countMetrics) BytesDown(n int)                              { m.down.Add(int64(n)) }
func (m *countMetrics) UpstreamDialError(gateway.PathKind)           { m.dialErrors.Add(1) }
func (m *countMetrics) Dropped(_ gateway.Drop, n int)                { m.dropped.Add(int64(n)) }
func (m *countMetrics) TLSHandshake(_, _ uint16, resumed bool) {
	m.tlsOK.Add(1)
	if resumed {
		m.tlsResumed.Add(1)
	}
}
func (m *countMetrics) Buffered(delta int) {
	v := m.buffered.Add(int64(delta))
	for {
		max := m.maxBuffered.Load()
		if v <= max || m.maxBuffered.CompareAndSwap(max, v) {
			return
		}
	}
}

func (m *countMetrics) endsString() string {
	s := ""
	for e := gateway.End(0); e < gateway.NumEnds; e++ {
		if n := m.ends[e].Load(); n > 0 {
			s += fmt.Sprintf(" %s=%d", e, n)
		}
	}
	return s
}

// goroutineBaseline lets the runtime settle and returns the goroutine count.
func goroutineBaseline() int {
	time.Sleep(100 * time.Millisecond)
	return runtime.NumGoroutine()
}

// waitFor is how long the wait helpers give a condition before failing:
// generous, since on a busy machine timers and closes run late; a wait
// that succeeds returns at once.
const waitFor = 20 * time.Second

// waitGoroutines waits up to waitFor for the goroutine count to come back
// to within tol of base.
func waitGoroutines(t testing.TB, base, tol int, what string) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		n := runtime.NumGoroutine()
		if n <= base+tol {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%s: %d goroutines, baseline %d (+%d allowed)\n%s", what, n, base, tol, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// duplexPeer is a raw TCP upstream for full-duplex hash checks. The client
// sends [8-byte seed][8-byte down][8-byte up] and then up bytes; the peer at
// once sends PseudoRandom(down, seed) while hashing the up bytes it receives,
// and when both are done sends [32-byte SHA-256][8-byte count] of what it
// received, sends FIN, and reads until the client's EOF. The peer does not
// wait for the client's EOF before its receipt because ss-server
// (shadowsocks-libev) has no half-close: a FIN from either side tears down
// both directions.
func duplexPeer(t testing.TB) string {
	return testpeer.ListenTCP(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(2 * time.Minute))
		var hdr [24]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		seed := binary.BigEndian.Uint64(hdr[:8])
		down, up := int64(binary.BigEndian.Uint64(hdr[8:])), int64(binary.BigEndian.Uint64(hdr[16:]))
		sent := make(chan error, 1)
		go func() {
			_, err := io.CopyBuffer(c, testpeer.PseudoRandom(down, seed), make([]byte, 32<<10))
			sent <- err
		}()
		h := sha256.New()
		got, err := io.CopyBuffer(h, io.LimitReader(c, up), make([]byte, 32<<10))
		if sendErr := <-sent; sendErr != nil || err != nil {
			return
		}
		c.Write(binary.BigEndian.AppendUint64(h.Sum(nil), uint64(got)))
		c.CloseWrite()
		io.Copy(io.Discard, c)
	})
}

// duplexExchange runs one duplexPeer exchange over rw: it uploads up bytes of
// PseudoRandom(up, seed+1) and downloads down bytes of PseudoRandom(down,
// seed) at the same time, checks both hashes and then the peer's end of
// stream. With halfClose it ends its own stream as soon as the upload is
// done; otherwise only after the peer's end.
func duplexExchange(rw testpeer.HalfConn, seed uint64, up, down int64, halfClose bool) error {
	hdr := binary.BigEndian.AppendUint64(nil, seed)
	hdr = binary.BigEndian.AppendUint64(hdr, uint64(down))
	hdr = binary.BigEndian.AppendUint64(hdr, uint64(up))
	if _, err := rw.Write(hdr); err != nil {
		return err
	}
	sent := make(chan error, 1)
	go func() {
		_, err := io.CopyBuffer(rw, testpeer.PseudoRandom(up, seed+1), make([]byte, 16<<10))
		if err == nil && halfClose {
			err = rw.CloseWrite()
		}
		sent <- err
	}()
	h := sha256.New()
	if _, err := io.CopyN(h, rw, down); err != nil {
		return fmt.Errorf("download: %w", err)
	}
	if got, want := hex.EncodeToString(h.Sum(nil)), testpeer.PseudoRandomSHA256(down, seed); got != want {
		return fmt.Errorf("download hash %s, want %s", got, want)
	}
	var tail [40]byte
	if _, err := io.ReadFull(rw, tail[:]); err != nil {
		return fmt.Errorf("upload receipt: %w", err)
	}
	if err := <-sent; err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	if got, want := hex.EncodeToString(tail[:32]), testpeer.PseudoRandomSHA256(up, seed+1); got != want {
		return fmt.Errorf("upload hash %s (%d bytes), want %s (%d)", got, binary.BigEndian.Uint64(tail[32:]), want, up)
	}
	if n, err := rw.Read(tail[:1]); n != 0 || !errors.Is(err, io.EOF) {
		return fmt.Errorf("after receipt: %d bytes, %v; want EOF", n, err)
	}
	if !halfClose {
		return rw.CloseWrite()
	}
	return nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	return b
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
