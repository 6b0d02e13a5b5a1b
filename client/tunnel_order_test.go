package client

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// echoUpstream is a member server echoing every connection.
func echoUpstream(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
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
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// TestTunnelCloseDuringOpenResetAfterOpen: a Close that lands while the
// first Write is opening the stream (its ID taken, the OPEN not yet
// written) must not put its RESET ahead of the OPEN: the real gateway
// closes the whole tunnel (1002) on a RESET of a stream it never saw. The
// hook closes the stream exactly there; another stream on the same tunnel
// then still echoes.
func TestTunnelCloseDuringOpenResetAfterOpen(t *testing.T) {
	addr, _ := startRealGateway(t, false, map[string]string{"tok-gateway-tunnel": echoUpstream(t)})
	var once sync.Once
	testHookOpened = func(st *tunStream) { once.Do(func() { st.Close() }) }
	t.Cleanup(func() { testHookOpened = nil })
	tun := gatewayTunnel(t, 1, Gateway{Addr: addr})

	first, err := tun.DialStream(dialCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	first.Write([]byte("x")) // closed by the hook under it
	st1 := first.(*tunStream)
	st1.mu.Lock()
	s := st1.sess
	st1.mu.Unlock()

	second, err := tun.DialStream(dialCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	msg := []byte("still here")
	if _, err := second.Write(msg); err != nil {
		t.Fatal(err)
	}
	second.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(second, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("second stream: %q, %v (tunnel ended: RESET went ahead of its OPEN?)", got, err)
	}
	st2 := second.(*tunStream)
	st2.mu.Lock()
	same := st2.sess == s
	st2.mu.Unlock()
	if !same {
		s.mu.Lock()
		dead := s.dead
		s.mu.Unlock()
		t.Fatalf("second stream opened on another tunnel: the first one ended (%v)", dead)
	}
}
