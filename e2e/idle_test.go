package e2e

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/internal/testpeer"
)

// holdUpstream accepts connections and keeps them open without a goroutine
// each, so it adds nothing to the goroutine count being measured.
func holdUpstream(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String()
}

// TestIdleSessionsNoGoroutines: 500 established, idle sessions on the tcp
// path do not add goroutines in the gateway.
func TestIdleSessionsNoGoroutines(t *testing.T) {
	const warm, total = 20, 500
	up := holdUpstream(t)
	const secret = "idle-secret"
	m := &countMetrics{}
	g, gw := startGateway(t, gateway.Config{Metrics: m}, map[string]string{secret: up})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var conns []*testpeer.WSConn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	open := func(n int) {
		t.Helper()
		for range n {
			c, err := testpeer.DialWS(ctx, wsURL(gw, secret, "tcp"))
			if err != nil {
				t.Fatalf("session %d: %v", len(conns), err)
			}
			conns = append(conns, c)
		}
	}
	base0 := goroutineBaseline()
	open(warm)
	waitSessions(t, g, warm)
	// The dials' own goroutines end a moment later (later on a busy
	// machine): wait for the count, do not sample it once.
	waitGoroutines(t, base0, goroutineTolerance, fmt.Sprintf("with %d idle sessions", warm))
	base := runtime.NumGoroutine()
	open(total - warm)
	waitSessions(t, g, total)
	waitGoroutines(t, base, goroutineTolerance, fmt.Sprintf("with %d idle sessions", total))
	t.Logf("goroutines: %d before any session, %d with %d sessions, %d with %d", base0, base, warm, runtime.NumGoroutine(), total)

	for _, c := range conns {
		c.Close()
	}
	waitSessions(t, g, 0)
	waitGoroutines(t, base0, goroutineTolerance, "after closing the idle sessions")
}
