package gateway

import (
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// A loop is one relay event loop: an epoll instance driven by one goroutine
// that owns every session registered on it. Sessions are only touched by
// their loop's goroutine; other goroutines talk to a loop through post.
//
// Interest is level-triggered and set per fd, which is what gives the relay
// real backpressure: while a destination has unsent bytes the source's
// EPOLLIN is off, so the source's kernel buffer fills and TCP slows the
// sender (netpoll reads eagerly and cannot do this; see docs/04).
type loop struct {
	g    *Gateway // fixed at newLoop, like epfd and evfd
	epfd int
	evfd int // eventfd that wakes the loop for posted tasks
	// epf is epfd as the runtime poller sees it (run parks on it). post
	// also expires its read deadline, which readies the parked loop
	// goroutine at once: on a machine whose Ps are all busy the runtime
	// polls the network only when a P runs dry (or from sysmon, every
	// 10 ms), and a hand-off waited ~0.3 ms on average for that on the
	// 2-core bench machine (docs/04, "Cost of a new TLS session").
	epf *os.File

	mu     sync.Mutex
	tasks  []func() // guarded by mu
	closed bool     // guarded by mu: the loop has stopped
	woken  atomic.Bool

	// Owned by the loop goroutine.
	fds       []*session // fd → session (client and upstream fds both map)
	head      session    // sentinel of the list of live sessions
	count     int
	scratch   []byte // read buffer shared by all sessions of the loop
	out       []byte // TLS records sealed for one write, shared likewise
	iov       [][]byte
	iovec     [maxIOV]unix.Iovec
	tout      []byte   // tunnel frames of one event, sent as one message (tunnelout.go); nil until a tunnel needs it
	towner    *session // the tunnel whose frames tout holds
	gst       *tstream // the tunnel stream whose client bytes giov gathers (tunnelin.go)
	giov      [][]byte // pieces of one client read for gst, sent in one writev
	now       int64    // coarse clock, unix nanoseconds, updated per wake
	draining  bool
	reported  bool // drained() was called
	stopping  bool // stop was posted
	lingering int  // sessions in their lingering close (done for drain)

	done chan struct{}
}

// aLongTimeAgo is a deadline that has passed: setting it wakes a waiter.
var aLongTimeAgo = time.Unix(1, 0)

// sweepEvery is the period, in milliseconds, of the idle and deadline sweep.
const sweepEvery = 500

const (
	evIn    = unix.EPOLLIN
	evOut   = unix.EPOLLOUT
	evRDHUP = unix.EPOLLRDHUP
	evHUP   = unix.EPOLLHUP
	evERR   = unix.EPOLLERR
)

func newLoop(g *Gateway) (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, err
	}
	l := &loop{g: g, epfd: epfd, evfd: evfd, epf: os.NewFile(uintptr(epfd), "relay-epoll"), done: make(chan struct{})}
	l.head.prev, l.head.next = &l.head, &l.head
	// Room for a carried partial TLS record ahead of a full read chunk,
	// and for a whole datagram behind a frame header.
	l.scratch = make([]byte, maxTLSRecord+maxServerHeader+max(g.chunk, 65536))
	if g.tlsConf != nil {
		l.out = make([]byte, 0, sealedLen(len(l.scratch)))
	}
	l.iov = make([][]byte, 0, maxIOV)
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &unix.EpollEvent{Events: evIn, Fd: int32(evfd)}); err != nil {
		l.epf.Close()
		unix.Close(evfd)
		return nil, err
	}
	return l, nil
}

// post runs f on the loop goroutine.
// After the loop stopped, post drops f.
func (l *loop) post(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.tasks = append(l.tasks, f)
	if !l.woken.Swap(true) {
		var one = [8]byte{1}
		unix.Write(l.evfd, one[:])
		// After the eventfd write: run polls epoll after every deadline
		// it sets, so the write is seen whichever deadline wins.
		l.epf.SetReadDeadline(aLongTimeAgo)
	}
}

func (l *loop) runTasks() {
	var b [8]byte
	unix.Read(l.evfd, b[:])
	l.woken.Store(false)
	l.mu.Lock()
	tasks := l.tasks
	l.tasks = nil
	l.mu.Unlock()
	for i, f := range tasks {
		f()
		tasks[i] = nil
	}
}

// run is the loop goroutine. It returns when stop has been posted.
//
// The loop does not block in epoll_wait itself: its epoll fd is registered
// with the Go runtime's poller, so an idle loop is a parked goroutine and a
// wake-up is an ordinary goroutine wake-up, not an OS thread hand-off. Each
// turn drains the ready list with non-blocking epoll_wait calls.
func (l *loop) run() {
	defer close(l.done)
	events := make([]unix.EpollEvent, 256)
	f := l.epf
	rc, err := f.SyscallConn()
	if err != nil {
		l.g.log.Error("relay loop: epoll fd", "err", err)
		return
	}
	lastSweep := time.Now().UnixNano()
	var busy bool
	turn := func(fd uintptr) bool {
		for range 16 {
			n, err := epollWait(int(fd), events, 0)
			if err != nil && err != unix.EINTR {
				l.g.log.Error("relay loop: epoll_wait", "err", err)
				l.stopping = true
				return true
			}
			if n <= 0 {
				return false // park until the runtime poller sees events
			}
			l.handleEvents(events[:n])
			if l.stopping {
				return true
			}
			if l.now-lastSweep >= int64(sweepEvery*time.Millisecond) {
				lastSweep = l.now
				l.sweep()
			}
		}
		busy = true
		return true // let other goroutines run, then come back
	}
	for !l.stopping {
		busy = false
		f.SetReadDeadline(time.Now().Add(sweepEvery * time.Millisecond))
		rc.Read(turn)
		if busy {
			runtime.Gosched()
		}
		if now := time.Now().UnixNano(); now-lastSweep >= int64(sweepEvery*time.Millisecond) {
			l.now = now
			lastSweep = now
			l.sweep()
		}
	}
	f.Close() // closes epfd
	l.mu.Lock()
	l.closed = true
	unix.Close(l.evfd)
	l.tasks = nil
	l.mu.Unlock()
}

func (l *loop) handleEvents(events []unix.EpollEvent) {
	l.now = time.Now().UnixNano()
	for i := range events {
		fd := int(events[i].Fd)
		if fd == l.evfd {
			l.runTasks()
			continue
		}
		if fd < len(l.fds) {
			if s := l.fds[fd]; s != nil {
				s.handle(fd, events[i].Events)
			}
		}
	}
}

// stop ends the loop goroutine, which closes the epoll instance; only
// called after every session ended.
func (l *loop) stop() {
	l.post(func() { l.stopping = true })
}

func (l *loop) register(fd int, s *session, events uint32) error {
	for fd >= len(l.fds) {
		n := 2 * len(l.fds)
		if n < 1024 {
			n = 1024
		}
		for n <= fd {
			n *= 2
		}
		fds := make([]*session, n)
		copy(fds, l.fds)
		l.fds = fds
	}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: events, Fd: int32(fd)}); err != nil {
		return err
	}
	l.fds[fd] = s
	return nil
}

func (l *loop) modify(fd int, events uint32) {
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, fd, &unix.EpollEvent{Events: events, Fd: int32(fd)}); err != nil {
		l.g.log.Error("relay loop: epoll_ctl mod", "err", err)
	}
}

// forget removes fd from the loop and closes it.
func (l *loop) forget(fd int) {
	if fd < 0 {
		return
	}
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	l.fds[fd] = nil
	sysClose(fd)
}

func (l *loop) link(s *session) {
	s.prev, s.next = l.head.prev, &l.head
	l.head.prev.next = s
	l.head.prev = s
	l.count++
}

func (l *loop) unlink(s *session) {
	s.prev.next = s.next
	s.next.prev = s.prev
	s.prev, s.next = nil, nil
	l.count--
	l.g.sessions.Add(-1)
	l.reportDrained()
}

func (l *loop) reportDrained() {
	if l.draining && l.count == l.lingering && !l.reported {
		l.reported = true
		l.g.drained(l)
	}
}

// sweep ends sessions past their idle timeout or close deadline.
func (l *loop) sweep() {
	for s := l.head.next; s != &l.head; {
		next := s.next
		s.tick(l.now)
		s = next
	}
	l.g.reclaim.check(l.now, l.g.active.Load(), l.g.handshakes.Load())
}

// drain asks every session on the loop to go away (close 1001).
func (l *loop) drain() {
	l.draining = true
	for s := l.head.next; s != &l.head; {
		next := s.next
		s.goAway(EndShutdown, errShutdown)
		s = next
	}
	l.reportDrained()
}

// kill ends every session on the loop at once.
func (l *loop) kill() {
	for s := l.head.next; s != &l.head; {
		next := s.next
		if s.tun != nil {
			s.tunKill()
		}
		s.finish(EndShutdown, errShutdown)
		s = next
	}
}
