package gateway

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// takeFD moves a dialled Go connection's socket out of the Go runtime: it
// duplicates the descriptor (the copy shares the non-blocking file status)
// and closes the original, so the relay loop owns the only reference.
func takeFD(c interface {
	SyscallConn() (syscall.RawConn, error)
	Close() error
}) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return -1, err
	}
	nfd, derr := -1, error(nil)
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		derr = err
	}
	c.Close()
	if derr != nil {
		return -1, derr
	}
	return nfd, nil
}

// dialUDP opens a connected, non-blocking UDP socket to addr ("ip:port").
func dialUDP(addr string) (int, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		ua, rerr := net.ResolveUDPAddr("udp", addr)
		if rerr != nil {
			return -1, rerr
		}
		ap = ua.AddrPort()
	}
	ip := ap.Addr().Unmap()
	var sa unix.Sockaddr
	family := unix.AF_INET
	if ip.Is4() {
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ip.As4()}
	} else {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ip.As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
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

// The relay's sockets are non-blocking, so their reads and writes return at
// once; issuing them as raw system calls keeps the scheduler from handing
// the loop's P to another thread mid-call (the futex and nanosleep churn that
// otherwise costs as much CPU as the copies).

func sysRead(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

func sysWrite(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}
