package gateway

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// resolveUpstream turns "ip:port" (or, off the hot path, "name:port") into
// an address.
func resolveUpstream(addr string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return ap, nil
	}
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return ta.AddrPort(), nil
}

// rawSockaddr is a socket address in the kernel's layout, for the raw
// connect below (unix.Sockaddr keeps its conversion to itself).
type rawSockaddr struct {
	family int
	v4     unix.RawSockaddrInet4
	v6     unix.RawSockaddrInet6
}

func sockaddr(ap netip.AddrPort) rawSockaddr {
	ip := ap.Addr().Unmap()
	port := ap.Port()
	be := uint16(port>>8) | uint16(port<<8) // network byte order
	if ip.Is4() {
		return rawSockaddr{family: unix.AF_INET, v4: unix.RawSockaddrInet4{Family: unix.AF_INET, Port: be, Addr: ip.As4()}}
	}
	return rawSockaddr{family: unix.AF_INET6, v6: unix.RawSockaddrInet6{Family: unix.AF_INET6, Port: be, Addr: ip.As16()}}
}

// The relay loop's system calls are raw (RawSyscall: the runtime is not
// told that the thread is in a system call). Every one of them is on a
// non-blocking socket and returns at once, but some do real work inline —
// a connect on loopback runs the whole TCP handshake in softirq, a close
// sends the FIN — and a call announced to the runtime that lasts past a
// sysmon tick (20 µs) has its P taken and handed to another thread, after
// which the loop must win a P back; each such retake also keeps sysmon
// waking every 20 µs (measured: a tenth of the gateway's CPU in sysmon's
// nanosleep while streams were opened on a tunnel). Blocking calls
// (epoll_wait with a timeout) keep the ordinary path.

// sysConnect is connect(2) on a non-blocking socket.
func sysConnect(fd int, sa *rawSockaddr) error {
	var p unsafe.Pointer
	var n uintptr
	if sa.family == unix.AF_INET {
		p, n = unsafe.Pointer(&sa.v4), unsafe.Sizeof(sa.v4)
	} else {
		p, n = unsafe.Pointer(&sa.v6), unsafe.Sizeof(sa.v6)
	}
	_, _, e := unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(p), n)
	if e != 0 {
		return e
	}
	return nil
}

// sysClose is close(2) of a socket (no SO_LINGER: it does not block).
func sysClose(fd int) {
	unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
}

// sysShutdown is shutdown(2).
func sysShutdown(fd, how int) {
	unix.RawSyscall(unix.SYS_SHUTDOWN, uintptr(fd), uintptr(how), 0)
}

// sysSetsockoptInt and sysGetsockoptInt are setsockopt(2) and
// getsockopt(2) of an int option.
func sysSetsockoptInt(fd, level, opt, v int) {
	x := int32(v)
	unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(unsafe.Pointer(&x)), 4, 0)
}

func sysGetsockoptInt(fd, level, opt int) (int, error) {
	var x int32
	l := uint32(4)
	_, _, e := unix.RawSyscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(unsafe.Pointer(&x)), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return 0, e
	}
	return int(x), nil
}

// connectTCP starts a non-blocking connect and returns the socket; the
// relay loop learns the outcome from EPOLLOUT and connectResult. No
// goroutine waits and the Go runtime never sees the socket.
func connectTCP(ap netip.AddrPort) (int, error) {
	sa := sockaddr(ap)
	fd, err := unix.Socket(sa.family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	sysSetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if err := sysConnect(fd, &sa); err != nil && err != unix.EINPROGRESS {
		sysClose(fd)
		return -1, fmt.Errorf("connect: %w", err)
	}
	return fd, nil
}

// connectResult is the outcome of a non-blocking connect once the socket
// reported writable or an error.
func connectResult(fd int) error {
	v, err := sysGetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return err
	}
	if v != 0 {
		return syscall.Errno(v)
	}
	return nil
}

// upstreamReady reports whether a non-blocking connect has completed
// without an error (POLLOUT with no error pending, from a zero-timeout
// ppoll): a nearby upstream (the same host, the same rack) usually is by
// the time the request has been answered. A connect still in flight, or
// failed, is the relay loop's to wait for and to retry; its error is left
// in SO_ERROR for connectResult there.
func upstreamReady(fd int) bool {
	pfd := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	var zero unix.Timespec
	n, _, e := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd[0])), 1, uintptr(unsafe.Pointer(&zero)), 0, 0, 0)
	if e != 0 || n != 1 || pfd[0].Revents&(unix.POLLERR|unix.POLLHUP) != 0 || pfd[0].Revents&unix.POLLOUT == 0 {
		return false
	}
	return connectResult(fd) == nil
}

// dialUDP opens a connected, non-blocking UDP socket to ap.
func dialUDP(ap netip.AddrPort) (int, error) {
	sa := sockaddr(ap)
	fd, err := unix.Socket(sa.family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := sysConnect(fd, &sa); err != nil {
		sysClose(fd)
		return -1, fmt.Errorf("connect udp: %w", err)
	}
	return fd, nil
}

// writev writes the pieces with one system call. iov is caller scratch with
// room for len(pieces) entries, so the call does not allocate.
func writev(fd int, pieces [][]byte, iov []unix.Iovec) (int, error) {
	k := 0
	for _, p := range pieces {
		if len(p) == 0 {
			continue
		}
		iov[k].Base = &p[0]
		iov[k].SetLen(len(p))
		k++
	}
	if k == 0 {
		return 0, nil
	}
	for {
		n, _, e := unix.RawSyscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(k))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(n), nil
	}
}

// epollWait is epoll_wait(2). A zero timeout is a raw system call (it cannot
// block, so the scheduler need not hand the P off); otherwise the ordinary
// blocking path.
func epollWait(epfd int, events []unix.EpollEvent, msec int) (int, error) {
	if msec != 0 {
		return unix.EpollWait(epfd, events, msec)
	}
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
