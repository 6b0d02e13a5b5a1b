package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/internal/testpeer"
)

// twoGateways starts gateways A and B (plaintext, their own metrics) in
// front of one ss-server, and `httvps connect` with a key listing A, then B.
func twoGateways(t *testing.T, drain time.Duration) (gA *gateway.Gateway, mA, mB *countMetrics, c *connectProc, origin *testpeer.Origin) {
	t.Helper()
	needNativePeers(t, "curl", "ss-server")
	origin = testpeer.StartOrigin(t)
	ss := testpeer.SSServer(t, testpeer.DefaultPassword, testpeer.DefaultMethod)
	const token = "native-two-gateways-token"
	routes := map[string]string{token: ss}
	mA, mB = &countMetrics{}, &countMetrics{}
	gA, addrA := startGateway(t, gateway.Config{Metrics: mA, DrainTimeout: drain}, routes)
	_, addrB := startGateway(t, gateway.Config{Metrics: mB, DrainTimeout: drain}, routes)
	c = startNativeConnect(t, nativeKey{token: token, cipher: testpeer.DefaultMethod, secret: testpeer.DefaultPassword,
		gateways: []string{addrA, addrB}})
	return gA, mA, mB, c, origin
}

// TestNativeFailover: the client uses the first gateway; when it stops,
// the client reconnects to the second and new connections work there.
func TestNativeFailover(t *testing.T) {
	gA, mA, mB, c, origin := twoGateways(t, 2*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := curlDown(ctx, socksProxy(c), origin, 4<<20, 1); err != nil {
		t.Fatal(err)
	}
	if mA.down.Load() < 4<<20 || mB.handshakeOK.Load() != 0 {
		t.Fatalf("before the stop: A carried %d bytes down, B took %d upgrades; want the first gateway only", mA.down.Load(), mB.handshakeOK.Load())
	}

	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := gA.Shutdown(sctx); err != nil {
		t.Fatalf("stopping A: %v", err)
	}
	for i, proxy := range [][]string{socksProxy(c), httpProxy(c), socksProxy(c)} {
		if err := curlDown(ctx, proxy, origin, 8<<20, uint64(10+i)); err != nil {
			t.Fatalf("after A stopped, curl %d: %v\n%s", i, err, c.Output())
		}
	}
	if mB.handshakeOK.Load() == 0 || mB.down.Load() < 3*8<<20 {
		t.Fatalf("after A stopped: B took %d upgrades and carried %d bytes down", mB.handshakeOK.Load(), mB.down.Load())
	}
	if !strings.Contains(c.Output(), `msg="tunnel: failed over" gateway=`+"127.0.0.1") {
		t.Errorf("connect did not log the failover:\n%s", c.Output())
	}
}

// progressCurl is a curl download whose progress is watched: reached is
// closed once at bytes have arrived, done gets the result.
type progressCurl struct {
	reached chan struct{}
	done    chan error
}

func startProgressCurl(ctx context.Context, proxy []string, url string, n int64, seed uint64, at int64, extra ...string) *progressCurl {
	p := &progressCurl{reached: make(chan struct{}), done: make(chan error, 1)}
	args := append(append(append([]string{"-sS", "--fail", "--max-time", "60"}, proxy...), extra...), url)
	cmd := exec.CommandContext(ctx, "curl", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		p.done <- err
		return p
	}
	go func() {
		h := sha256.New()
		var got atomic.Int64
		buf := make([]byte, 64<<10)
		signalled := false
		var rerr error
		for {
			k, err := out.Read(buf)
			h.Write(buf[:k])
			if got.Add(int64(k)) >= at && !signalled {
				signalled = true
				close(p.reached)
			}
			if err != nil {
				if err != io.EOF {
					rerr = err
				}
				break
			}
		}
		if err := cmd.Wait(); err != nil {
			p.done <- fmt.Errorf("curl: %w: %s", err, stderr.String())
			return
		}
		if rerr != nil {
			p.done <- rerr
			return
		}
		if sum, want := hex.EncodeToString(h.Sum(nil)), testpeer.PseudoRandomSHA256(n, seed); got.Load() != n || sum != want {
			p.done <- fmt.Errorf("download: %d bytes sha256 %s, want %d %s", got.Load(), sum, n, want)
			return
		}
		p.done <- nil
	}()
	return p
}

// TestNativeGoAwayDuringTransfer: the gateway in use drains (GOAWAY) while
// a download runs through it; the download completes intact on its
// tunnel, and new connections go to the other gateway meanwhile.
func TestNativeGoAwayDuringTransfer(t *testing.T) {
	gA, mA, mB, c, origin := twoGateways(t, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// 32 MiB at 6 MB/s: about 5 s in flight, the drain starts after 1 MiB.
	const n = 32 << 20
	inflight := startProgressCurl(ctx, socksProxy(c), origin.URL(fmt.Sprintf("/bytes/%d?seed=7", n)), n, 7, 1<<20, "--limit-rate", "6M")
	select {
	case <-inflight.reached:
	case err := <-inflight.done:
		t.Fatalf("the download ended before 1 MiB: %v", err)
	}
	if mB.handshakeOK.Load() != 0 {
		t.Fatal("B took an upgrade before the drain: the client did not start on the first gateway")
	}
	drained := make(chan error, 1)
	drainStart := time.Now()
	go func() {
		sctx, scancel := context.WithTimeout(context.Background(), 40*time.Second)
		defer scancel()
		drained <- gA.Shutdown(sctx)
	}()
	deadline := time.Now().Add(waitFor)
	for !strings.Contains(c.Output(), `msg="tunnel: gateway going away"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no GOAWAY seen by connect:\n%s", c.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-inflight.done:
		t.Fatalf("the download ended before the GOAWAY arrived (%v): the test did not drain under a transfer", err)
	default:
	}

	// New connections while A drains: through B, intact.
	for i, proxy := range [][]string{socksProxy(c), httpProxy(c)} {
		if err := curlDown(ctx, proxy, origin, 4<<20, uint64(20+i)); err != nil {
			t.Fatalf("during the drain, curl %d: %v\n%s", i, err, c.Output())
		}
	}
	if mB.down.Load() < 2*4<<20 {
		t.Fatalf("during the drain B carried %d bytes down, want ≥ %d", mB.down.Load(), 2*4<<20)
	}
	select {
	case err := <-drained:
		t.Fatalf("A finished draining (%v) before the download in flight ended", err)
	default:
	}

	if err := <-inflight.done; err != nil {
		t.Fatalf("the download in flight during the drain: %v", err)
	}
	if err := <-drained; err != nil {
		t.Fatalf("A's drain: %v (after %v)", err, time.Since(drainStart))
	}
	if mA.down.Load() < n {
		t.Fatalf("A carried %d bytes down, want ≥ %d (the download stayed on its tunnel)", mA.down.Load(), n)
	}
	t.Logf("A drained %v after the drain began", time.Since(drainStart).Round(time.Millisecond))
}
