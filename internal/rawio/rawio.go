// Package rawio reads and writes non-blocking sockets with raw system calls.
//
// A read or write of a non-blocking socket returns at once (EAGAIN when it
// would block), so it never needs what the Go runtime does around an
// ordinary system call: entersyscall, and sysmon handing the P to another
// thread when the call outlasts its 20 µs tick (a 64 KiB copy on loopback
// does). At high rates those hand-offs — sysmon polling every 20 µs, a
// thread woken for the P, the caller waiting for one back — cost as much
// CPU as the copies. Issued raw, the goroutine keeps its P; the runtime
// still preempts it as it does any running goroutine.
//
// The gateway's relay loops call Read and Write on their own fds; Conn
// gives a *net.TCPConn the same system calls while keeping the runtime's
// poller for waits and deadlines (syscall.RawConn).
package rawio

import (
	"io"
	"net"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Read is read(2) issued raw: n ≥ 0 bytes, or -1 and the errno (EAGAIN when
// nothing is there). An empty p reads nothing.
func Read(fd int, p []byte) (int, error) { return call(unix.SYS_READ, fd, p) }

// Write is write(2) issued raw: n ≥ 0 bytes, or -1 and the errno (EAGAIN
// when the socket buffer is full). An empty p writes nothing.
func Write(fd int, p []byte) (int, error) { return call(unix.SYS_WRITE, fd, p) }

func call(trap uintptr, fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

// Conn is a TCP connection whose Read and Write are raw system calls; waits
// (EAGAIN) go to the runtime's poller, so deadlines, Close from another
// goroutine and the errors for them (os.ErrDeadlineExceeded, net.ErrClosed)
// are those of the net.Conn. Other errors are *os.SyscallError. Conn has no
// ReadFrom or WriteTo: copies go through Read and Write.
type Conn struct {
	tc *net.TCPConn
	rc syscall.RawConn
}

// Wrap returns c as a *Conn if it is a *net.TCPConn, else c unchanged.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	return &Conn{tc: tc, rc: rc}
}

func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	var serr error
	err := c.rc.Read(func(fd uintptr) bool {
		for {
			k, e := Read(int(fd), p)
			switch e {
			case nil:
				n = k
				return true
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false
			}
			serr = os.NewSyscallError("read", e)
			return true
		}
	})
	switch {
	case err != nil:
		return 0, err
	case serr != nil:
		return 0, serr
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (c *Conn) Write(p []byte) (int, error) {
	total := 0
	var serr error
	for len(p) > 0 {
		err := c.rc.Write(func(fd uintptr) bool {
			for len(p) > 0 {
				k, e := Write(int(fd), p)
				switch e {
				case nil:
					total += k
					p = p[k:]
					continue
				case unix.EINTR:
					continue
				case unix.EAGAIN:
					return false
				}
				serr = os.NewSyscallError("write", e)
				return true
			}
			return true
		})
		if err != nil {
			return total, err
		}
		if serr != nil {
			return total, serr
		}
	}
	return total, nil
}

func (c *Conn) Close() error                       { return c.tc.Close() }
func (c *Conn) CloseWrite() error                  { return c.tc.CloseWrite() }
func (c *Conn) CloseRead() error                   { return c.tc.CloseRead() }
func (c *Conn) LocalAddr() net.Addr                { return c.tc.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr               { return c.tc.RemoteAddr() }
func (c *Conn) SetDeadline(t time.Time) error      { return c.tc.SetDeadline(t) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.tc.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.tc.SetWriteDeadline(t) }

// TCP returns the connection underneath (for socket options).
func (c *Conn) TCP() *net.TCPConn { return c.tc }
