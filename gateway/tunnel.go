package gateway

// The native tunnel (/v1/tunnel, docs/03): one session whose WebSocket
// carries many streams, each forwarded to the token's member on its own
// socket registered on the same loop. The session's client side (TLS record
// layer, WebSocket reader, the queue toward the client, the close handshake,
// control-frame budget, idle timeout, revoke, drain, accounting) is the
// Outline paths' own; this file holds the tunnel's state and its dispatch,
// tunnelin.go the client's frames, tunnelout.go the members' bytes toward
// the client and the frames the gateway sends, tunnelend.go how streams and
// the tunnel end.

import (
	"net/netip"

	"github.com/httvps/httvps/codec/mux"
	"golang.org/x/sys/unix"
)

// Gateway-side tunnel parameters (docs/03, "Limits"). The windows and
// MAX_FRAME are the protocol defaults, so a client that sends before our
// SETTINGS arrive never overruns them.
const (
	tunStreamWindow  = mux.DefaultStreamWindow
	tunSessionWindow = mux.DefaultSessionWindow
	tunMaxFrame      = mux.DefaultMaxFrame
	// deadUDPMemory is how many udp streams the gateway ended itself are
	// remembered, so a packet still on its way on one of them is not
	// charged to the session window (udp is not flow-controlled).
	deadUDPMemory = 8
)

// tunnel is the native-tunnel state of a session (session.tun). Owned by
// the session's loop goroutine. An idle tunnel (no open stream) holds no
// map and no buffer: the parser, the windows and the members' addresses.
type tunnel struct {
	p       mux.Parser
	streams map[uint32]*tstream // open streams by id; nil while there is none
	byFD    map[int32]*tstream  // the same streams by member socket
	ups     []netip.AddrPort    // the token's members, resolved at the handshake
	blocked []*tstream          // streams whose member read waits for the tunnel (queue or session window)

	highest uint32 // highest stream id the client opened (our GOAWAY's last stream id)

	// draining counts the streams whose FINs have crossed both ways while
	// client bytes still wait for their member: done for the client (which
	// frees its slot on the two FINs), so not counted against MAX_STREAMS,
	// but still holding a member socket, so all streams stay within twice
	// MAX_STREAMS.
	draining int

	// Flow control (docs/03): recvWin is what the client may still send
	// (tcp DATA/OPEN payload), sendWin what we may still send it; credit
	// is what members took (or the gateway dropped) since our last session
	// WINDOW.
	recvWin int64
	sendWin int64
	credit  int64

	peerMaxFrame  uint32 // the client's MAX_FRAME: our DATA payloads stay within it
	peerStreamWin uint32 // the client's STREAM_WINDOW: every stream's initial send window

	// The DATA/OPEN frame being received: its stream (nil: its bytes are
	// dropped), whether it ends with FIN, and whether a frame is open.
	cur     *tstream
	curLeft int64 // payload bytes of the frame still to come (credited back if cur ends)
	curFIN  bool
	inFrame bool

	gotSettings bool // the client's SETTINGS arrived (its first frame)
	goAway      bool // our GOAWAY is out: new streams are refused
	ending      bool // the tunnel is ending: streams close without frames

	deadUDP [deadUDPMemory]uint32
	deadN   uint8
}

// tstream is one stream of a tunnel and its member socket. up holds client
// bytes the member has not taken (bounded by the stream window); down's
// queue is unused (the tunnel's frames toward the client share the
// session's down queue), only its end-of-stream state is.
type tstream struct {
	id   uint32
	fd   int // member socket; -1 once closed
	udp  bool
	ev   uint32 // epoll interest of fd
	next uint8  // index in tunnel.ups of the next member to try

	connecting bool // the TCP connect is in flight
	done       bool // ended (endStream)
	parked     bool // fd left epoll after a hang-up while its read was paused
	isBlocked  bool // on tunnel.blocked
	draining   bool // counted in tunnel.draining

	up   stream // client → member: up.eof is the client's FIN, up.shut our FIN to the member
	down stream // member → client: down.eof is the member's EOF, down.shut our DATA FIN

	recvWin int64 // what the client may still send on the stream
	sendWin int64 // what we may still send on it
	credit  int64 // bytes the member took since our last WINDOW for the stream

	deadline int64 // loop clock: the connect must complete by then
	last     int64 // loop clock: last traffic (the stream idle timeout)

	pkt    *[]byte // udp: a packet split across reads, being assembled
	pktLen int32
}

// newTunnel is the tunnel state of a session adopted on path /v1/tunnel.
func newTunnel(ups []netip.AddrPort) *tunnel {
	t := &tunnel{
		ups:           ups,
		recvWin:       tunSessionWindow,
		sendWin:       mux.DefaultSessionWindow,
		peerMaxFrame:  mux.DefaultMaxFrame,
		peerStreamWin: mux.DefaultStreamWindow,
	}
	t.p.MaxFrame = tunMaxFrame
	return t
}

// handleTunnel is session.handle for a tunnel: the client socket as on the
// Outline paths, or one of the streams' member sockets.
func (s *session) handleTunnel(fd int, ev uint32) {
	if fd == int(s.cfd) {
		s.clientEvent(ev)
	} else if st := s.tun.byFD[int32(fd)]; st != nil {
		s.streamEvent(st, ev)
	}
	if s.dead() {
		return
	}
	s.tunDone()
}

// tunDone ends the handling of one event (or task) on a tunnel: the frames
// it produced go out, streams waiting for room toward the client resume if
// there is room now, and the client socket's interest is set.
func (s *session) tunDone() {
	// Client bytes gathered for a member go out before the read they
	// point into is over (a stream that ended dropped its own).
	s.gatherFlush()
	if s.dead() {
		return
	}
	s.tunFlush()
	if s.dead() {
		return
	}
	if t := s.tun; len(t.blocked) > 0 && s.queueRoom() {
		s.serveBlocked()
		if s.dead() {
			return
		}
	}
	s.setInterest()
}

// serveRounds bounds how many times serveBlocked reads each waiting stream
// in one turn of the loop before it hands the rest back to epoll.
const serveRounds = 4

// serveBlocked feeds the streams waiting for room toward the client
// (tunnel.blocked) once there is room again: round robin from the head of
// the list, each read straight from its member socket (streamRead), the
// stream then back at the tail, until the room (queue or session window)
// is used up. A waiting stream left epoll's read interest once, when it
// had to wait, and stays out of it while it has bytes and waits its turn,
// so a drained queue or a session WINDOW costs reads for as many streams
// as the room feeds, not an epoll_ctl for every blocked stream twice;
// every waiting stream moves on in turn (a stream that cannot go on — its
// own window, or the session window for tcp — does not hold up the others).
// A stream with nothing to read goes back to epoll. If the loop's share of
// reads is spent with room left (a client that keeps up), the streams still
// waiting go back to epoll too, so nothing waits for an event that does
// not come.
func (s *session) serveBlocked() {
	t := s.tun
	budget := serveRounds * len(t.blocked)
	skipped := 0 // tcp streams passed over at the head while the session window is closed
	for budget > 0 && len(t.blocked) > skipped && s.queueRoom() {
		st := t.blocked[skipped]
		if !st.udp && t.sendWin <= 0 {
			// Only udp streams may go on; the others wait for the
			// client's WINDOW on stream 0, in their order.
			skipped++
			continue
		}
		copy(t.blocked[skipped:], t.blocked[skipped+1:])
		t.blocked[len(t.blocked)-1] = nil
		t.blocked = t.blocked[:len(t.blocked)-1]
		st.isBlocked = false
		budget--
		if st.fd < 0 {
			continue
		}
		if !s.streamCanRead(st) {
			// Its own window, or on the list again (at its tail).
			s.streamInterest(st)
			continue
		}
		more := s.streamRead(st)
		if s.dead() {
			return
		}
		if st.fd < 0 {
			continue
		}
		if more && s.streamCanRead(st) {
			// It may have more: its next turn is at the tail.
			st.isBlocked = true
			t.blocked = append(t.blocked, st)
			continue
		}
		s.streamInterest(st)
	}
	if budget == 0 && s.queueRoom() {
		// Room left after the loop's share of reads: back to epoll.
		b := t.blocked
		t.blocked = b[:0]
		for i, st := range b {
			b[i] = nil
			if !st.udp && t.sendWin <= 0 {
				st.isBlocked = true
				t.blocked = append(t.blocked, st)
				continue
			}
			st.isBlocked = false
			if st.fd >= 0 {
				s.streamInterest(st)
			}
		}
	}
}

// queueRoom reports whether the tunnel may read members toward the client:
// the queue toward it is empty (as on the Outline paths, which read the
// upstream only then: a read goes straight to the socket instead of being
// copied to the queue behind others, and a client that stops reading pins
// at most one read), no close frame is out, and there is credit (credit.go;
// without it the streams wait on tunnel.blocked for the account's wake).
func (s *session) queueRoom() bool {
	return s.down.empty() && !s.closeSent() && s.creditAtHand(&s.down)
}

// streamCanRead reports whether st's member may be read now. The reason it
// may not is either the stream's own window (a WINDOW for it resumes it)
// or the tunnel's (st goes on tunnel.blocked, resumed by tunDone).
func (s *session) streamCanRead(st *tstream) bool {
	if st.down.eof || st.connecting {
		return false
	}
	if !st.udp && st.sendWin <= 0 {
		return false
	}
	if !s.queueRoom() || !st.udp && s.tun.sendWin <= 0 {
		if !st.isBlocked {
			st.isBlocked = true
			s.tun.blocked = append(s.tun.blocked, st)
		}
		return false
	}
	return true
}

// streamInterest sets what st's member socket waits for: the connect, room
// for queued client bytes, and bytes to read while streamCanRead.
func (s *session) streamInterest(st *tstream) {
	var e uint32
	if st.connecting {
		e = evOut
	} else {
		if s.streamCanRead(st) {
			e |= evIn
		}
		if !st.up.empty() {
			e |= evOut
		}
	}
	if st.parked {
		if e == 0 {
			return
		}
		// Back in epoll once it is to be read again (level-triggered: the
		// pending hang-up or bytes are reported at once).
		if err := unix.EpollCtl(s.l.epfd, unix.EPOLL_CTL_ADD, st.fd, &unix.EpollEvent{Events: e, Fd: int32(st.fd)}); err != nil {
			s.l.g.log.Error("relay loop: epoll_ctl add", "err", err)
			return
		}
		st.parked, st.ev = false, e
		return
	}
	if e != st.ev {
		s.l.modify(st.fd, e)
		st.ev = e
	}
}

// streamEvent handles the epoll events of one stream's member socket.
func (s *session) streamEvent(st *tstream, ev uint32) {
	if st.connecting {
		if ev&(evOut|evERR|evHUP) == 0 {
			return
		}
		if err := connectResult(st.fd); err != nil {
			s.streamDialNext(st, err)
			return
		}
		s.streamConnected(st)
		return
	}
	if ev&evERR != 0 {
		if !st.udp {
			s.endStream(st, StreamUpstream, mux.ResetUpstream, socketError(st.fd))
			return
		}
		// An ICMP error for an earlier packet: clear it, or a paused
		// socket would report it again and again.
		connectResult(st.fd)
	}
	if ev&evOut != 0 {
		s.streamFlush(st)
		if st.fd < 0 {
			return
		}
	}
	if ev&(evIn|evRDHUP|evHUP|evERR) != 0 {
		if s.streamCanRead(st) {
			s.streamRead(st)
			if st.fd < 0 {
				return
			}
		} else if ev&evHUP != 0 {
			// Paused with a hang-up pending: level-triggered HUP would
			// spin, so leave epoll until the stream may be read again.
			unix.EpollCtl(s.l.epfd, unix.EPOLL_CTL_DEL, st.fd, nil)
			st.parked, st.ev = true, 0
			return
		}
	}
	s.streamInterest(st)
}

// tunTick runs a tunnel's timers from the loop's sweep: member connects past
// DialTimeout move on to the next member, streams idle past the idle
// timeout are reset, and a tunnel with open streams is not idle.
func (s *session) tunTick(now int64) {
	t := s.tun
	if len(t.streams) == 0 {
		return
	}
	s.last = now
	g := s.l.g
	for _, st := range t.streams {
		switch {
		case st.connecting:
			if now > st.deadline {
				s.streamDialNext(st, errConnectTimeout)
			}
		case st.udp:
			if idle := g.idle[PathUDP]; idle > 0 && now-st.last > idle {
				s.endStream(st, StreamIdle, mux.ResetCancel, errIdle)
			}
		default:
			if idle := g.idle[PathTCP]; idle > 0 && now-st.last > idle {
				s.endStream(st, StreamIdle, mux.ResetCancel, errIdle)
			}
		}
		if s.dead() {
			return
		}
	}
	s.tunDone()
}
