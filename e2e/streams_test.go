package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/internal/testpeer"
)

// TestConcurrentStreams200: 200 Shadowsocks streams at once, each its own
// WebSocket on the tcp path → gateway → ss-server → duplexPeer, uploading
// and downloading distinct data at the same time, hashed at both ends. Each
// stream ends with the peer's FIN (close 1000 from the gateway), answered by
// the client's close 1000. (ss-server has no half-close, so the client does
// not end its stream first here; TestHalfClose covers that.)
func TestConcurrentStreams200(t *testing.T) {
	const (
		streams = 200
		up      = 200<<10 + 13
		down    = 300<<10 + 7
	)
	ss := testpeer.SSServer(t, testpeer.DefaultPassword, testpeer.DefaultMethod)
	peer := duplexPeer(t)
	const secret = "concurrent-secret"
	m := &countMetrics{}
	g, gw := startGateway(t, gateway.Config{Metrics: m}, map[string]string{secret: ss})
	c, err := testpeer.NewCipher(testpeer.DefaultMethod, testpeer.DefaultPassword)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	deadline, _ := ctx.Deadline()
	start := make(chan struct{})
	errs := make(chan error, streams)
	var wg sync.WaitGroup
	var open sync.WaitGroup
	open.Add(streams)
	for i := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ws, err := testpeer.DialWS(ctx, wsURL(gw, secret, "tcp"))
			open.Done()
			if err != nil {
				errs <- fmt.Errorf("stream %d: dial: %w", i, err)
				return
			}
			defer ws.Close()
			ws.NetConn().SetDeadline(deadline)
			<-start
			sc, err := c.NewSSConn(ws, peer)
			if err != nil {
				errs <- fmt.Errorf("stream %d: %w", i, err)
				return
			}
			if err := duplexExchange(sc, uint64(i)*1000, up, down, false); err != nil {
				errs <- fmt.Errorf("stream %d: %w", i, err)
				return
			}
			if code, _, ok := ws.CloseCode(); !ok || code != 1000 {
				errs <- fmt.Errorf("stream %d: close code %d (received %v), want 1000", i, code, ok)
				return
			}
			if err := ws.WaitEOF(10 * time.Second); err != nil {
				errs <- fmt.Errorf("stream %d: %w", i, err)
			}
		}()
	}
	open.Wait()
	// A session is counted from its hand-off, before its 101 can leave,
	// so the count agrees with the clients at once.
	if n := g.Sessions(); n != streams && len(errs) == 0 {
		t.Errorf("gateway reports %d sessions with %d open", n, streams)
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if failed < 10 {
			t.Error(err)
		}
		failed++
	}
	if failed > 0 {
		t.Fatalf("%d of %d streams failed; session ends:%s", failed, streams, m.endsString())
	}
	t.Logf("%d streams × (%d up + %d down) in %v; ends:%s", streams, up, down, time.Since(t0).Round(time.Millisecond), m.endsString())
	deadlineSessions := time.Now().Add(waitFor)
	for g.Sessions() != 0 && time.Now().Before(deadlineSessions) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := g.Sessions(); n != 0 {
		t.Errorf("%d sessions still live after every stream ended", n)
	}
	if n := m.ends[gateway.EndNormal].Load(); n != streams {
		t.Errorf("%d sessions ended normally, want %d (ends:%s)", n, streams, m.endsString())
	}
}
