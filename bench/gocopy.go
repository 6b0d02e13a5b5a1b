package bench

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// GoCopyRelay is the reference peer: a plain TCP relay with one goroutine
// and one io.Copy per direction, passing half-close on with CloseWrite. It is
// what a straightforward goroutine-per-connection Go server costs.
//
// Between two TCP conns io.Copy splices on Linux (no user-space copy, a pipe
// per blocked copy). With Buffered set it copies through a 32 KiB user-space
// buffer per direction instead, as any relay that must look at or frame the
// bytes (a WebSocket relay) has to.
type GoCopyRelay struct {
	Target      string        // upstream address
	DialTimeout time.Duration // 0 means 5s
	Buffered    bool

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// Serve accepts on ln until it is closed.
func (r *GoCopyRelay) Serve(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if !r.track(c) {
			c.Close()
			return nil
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer r.untrack(c)
			r.relay(c)
		}()
	}
}

// Close closes every relayed connection and waits for their goroutines.
func (r *GoCopyRelay) Close() {
	r.mu.Lock()
	r.closed = true
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

func (r *GoCopyRelay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	if r.conns == nil {
		r.conns = map[net.Conn]struct{}{}
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *GoCopyRelay) untrack(c net.Conn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
}

func (r *GoCopyRelay) relay(down net.Conn) {
	defer down.Close()
	dt := r.DialTimeout
	if dt == 0 {
		dt = 5 * time.Second
	}
	up, err := net.DialTimeout("tcp", r.Target, dt)
	if err != nil {
		return
	}
	if !r.track(up) {
		up.Close()
		return
	}
	defer r.untrack(up)
	defer up.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.copy(up, down)
		closeWrite(up)
	}()
	r.copy(down, up)
	closeWrite(down)
	<-done
}

func (r *GoCopyRelay) copy(dst, src net.Conn) {
	if !r.Buffered {
		io.Copy(dst, src)
		return
	}
	// Hiding ReadFrom/WriteTo makes io.Copy use its 32 KiB buffer.
	io.Copy(struct{ io.Writer }{dst}, struct{ io.Reader }{src})
}
