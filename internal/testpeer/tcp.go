package testpeer

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// ListenTCP starts a loopback listener that hands each connection to handle
// on its own goroutine and closes it when handle returns. At test end it
// closes the listener and every open connection and waits for the handlers,
// so tests that count goroutines see none of them left.
func ListenTCP(t testing.TB, handle func(c *net.TCPConn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testpeer: listen: %v", err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				handle(c.(*net.TCPConn))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// EchoServer is a TCP upstream that echoes every byte and ends its stream
// (FIN) after the client's; it gives up on a connection after 3 minutes.
func EchoServer(t testing.TB) string {
	t.Helper()
	return ListenTCP(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(3 * time.Minute))
		io.CopyBuffer(c, c, make([]byte, 64<<10))
		c.CloseWrite()
	})
}

// DeadAddr is a loopback TCP address nothing listens on (a port just
// released; the kernel hands out ephemeral ports in turn, so it stays free
// for the test's length in practice).
func DeadAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testpeer: listen: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
