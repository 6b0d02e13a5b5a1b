package rawio

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// pair is a loopback TCP connection: the client end wrapped, the server end
// a plain *net.TCPConn.
func pair(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-acc
	if s == nil {
		t.Fatal("accept failed")
	}
	w, ok := Wrap(c).(*Conn)
	if !ok {
		t.Fatal("Wrap left a *net.TCPConn unwrapped")
	}
	t.Cleanup(func() { w.Close(); s.Close() })
	return w, s
}

// 24 MiB each way at once, the reader of each direction slow to start (so
// writes meet a full socket buffer and wait on the poller), hashed at both
// ends; then half-close both ways and EOF.
func TestConnBothWays(t *testing.T) {
	c, s := pair(t)
	const size = 24 << 20
	up, down := make([]byte, size), make([]byte, size)
	rand.Read(up)
	rand.Read(down)
	type res struct {
		sum [32]byte
		err error
	}
	readAll := func(r io.Reader, out chan<- res) {
		time.Sleep(50 * time.Millisecond)
		h := sha256.New()
		_, err := io.CopyBuffer(h, r, make([]byte, 48<<10))
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		out <- res{sum, err}
	}
	atServer, atClient := make(chan res, 1), make(chan res, 1)
	go readAll(s, atServer)
	go readAll(struct{ io.Reader }{c}, atClient)
	werr := make(chan error, 2)
	go func() {
		_, err := c.Write(up)
		if err == nil {
			err = c.CloseWrite()
		}
		werr <- err
	}()
	go func() {
		_, err := s.Write(down)
		if err == nil {
			err = s.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	for range 2 {
		if err := <-werr; err != nil {
			t.Fatal(err)
		}
	}
	if r := <-atServer; r.err != nil || r.sum != sha256.Sum256(up) {
		t.Fatalf("upload: %v, hash match %v", r.err, r.sum == sha256.Sum256(up))
	}
	if r := <-atClient; r.err != nil || r.sum != sha256.Sum256(down) {
		t.Fatalf("download: %v, hash match %v", r.err, r.sum == sha256.Sum256(down))
	}
	// After the peer's FIN: io.EOF, again and again.
	for range 2 {
		if n, err := c.Read(make([]byte, 10)); n != 0 || err != io.EOF {
			t.Fatalf("after FIN: %d, %v", n, err)
		}
	}
}

// Deadlines and Close are the net.Conn's: os.ErrDeadlineExceeded, then the
// connection still works; a Close from another goroutine ends a blocked
// Read with net.ErrClosed; a reset peer is a *os.SyscallError.
func TestConnErrors(t *testing.T) {
	c, s := pair(t)
	c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past deadline: %v", err)
	}
	c.SetReadDeadline(time.Time{})
	s.Write([]byte("after"))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || !bytes.Equal(buf, []byte("after")) {
		t.Fatalf("read after deadline: %q, %v", buf, err)
	}

	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read during Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a blocked Read")
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after Close: %v", err)
	}

	c2, s2 := pair(t)
	s2.(*net.TCPConn).SetLinger(0)
	s2.Close() // RST
	var err error
	for range 100 {
		if _, err = c2.Write(make([]byte, 64<<10)); err != nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	var se *os.SyscallError
	if !errors.As(err, &se) {
		t.Fatalf("write to a reset peer: %v (%T)", err, err)
	}
}

// Wrap leaves anything but a *net.TCPConn alone.
func TestWrapOthers(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if Wrap(a) != a {
		t.Fatal("a net.Pipe end was wrapped")
	}
}
