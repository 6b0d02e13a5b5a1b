package gateway

// A session's life (phase.go): handoff.go adopts it, the relay moves bytes
// client → upstream (toupstream.go) and upstream → client (toclient.go),
// closing.go ends each direction, and finish here ends the session.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/httvps/httvps/bufpool"
	"github.com/httvps/httvps/codec"
)

// session is one WebSocket session and its upstream socket, from the
// hand-off (handoff.go) to the end. Owned by the loop goroutine: every field
// is read and written only there (other goroutines reach a session through
// loop.post).
type session struct {
	l *loop
	// The small fields share words: kind, phase, end and the epoll
	// interest of the client socket; that of the upstream and msgLen.
	kind    PathKind
	ph      phase // changed only by step (phase.go)
	started bool  // the 101 was sent (counted as a session)
	end     End   // why the session is ending (set with the close frame)
	cev     uint32
	uev     uint32
	msgLen  int32 // udp: bytes of msg so far
	cfd     int32 // client socket (int32: the fd limit is far below 2^31, and it keeps the struct in a smaller size class)
	ufd     int32 // upstream socket; -1 once closed

	rd   codec.Reader
	tls  *tlsSession // nil on a plaintext listener
	acct Account     // nil when unaccounted
	up   stream      // client → upstream
	down stream      // upstream → client (framed bytes)

	msg *[]byte // udp: message being assembled across frames

	cause error // the error behind end, logged once when the session ends
	// last is the last activity, deadline when a pending close must have
	// completed (0: none), eofCloseAt when an upstream EOF is passed on as
	// close 1000; all loop clock.
	last       int64
	deadline   int64
	eofCloseAt int64

	hand *handoff // until the upstream is connected
	tun  *tunnel  // the native tunnel's streams (PathTunnel only)
	// ctlAt is the client's control-frame budget as a token bucket kept in
	// one number (the "theoretical arrival time" of GCRA): the loop-clock
	// time at which the bucket would be full again. See controlFrame.
	ctlAt int64

	prev, next *session // loop's live list
}

// handle processes the epoll events of one of the session's fds.
func (s *session) handle(fd int, ev uint32) {
	if s.ph == phConnecting {
		s.handleConnect(fd, ev)
		return
	}
	if s.tun != nil {
		s.handleTunnel(fd, ev)
		return
	}
	if fd == int(s.cfd) {
		s.clientEvent(ev)
	} else {
		if ev&evERR != 0 && s.kind == PathTCP {
			s.upstreamFailed(socketError(int(s.ufd)))
			return
		}
		if ev&evOut != 0 {
			s.flushUp()
		}
		if s.dead() {
			return
		}
		if ev&(evIn|evRDHUP|evHUP|evERR) != 0 {
			if s.down.empty() && s.credited(&s.down) || s.kind == PathUDP && ev&evERR != 0 {
				s.readUpstream()
			} else if ev&evHUP != 0 {
				// Paused (or out of credit) with a hang-up pending:
				// level-triggered HUP would spin, so leave epoll until
				// the client drains (or credit comes: creditResume).
				unix.EpollCtl(s.l.epfd, unix.EPOLL_CTL_DEL, int(s.ufd), nil)
				s.down.parked = true
				s.uev = 0
			}
		}
	}
	if !s.dead() {
		s.setInterest()
	}
}

// clientEvent handles the epoll events of the client socket, for an
// Outline-path session and a tunnel alike.
func (s *session) clientEvent(ev uint32) {
	if ev&evERR != 0 || (ev&evHUP != 0 && ev&evIn == 0) {
		if s.lingering() || s.discarding() && s.end != EndNormal {
			// The client closed first (nothing was lost), or reset
			// after our failure close: the failure is the cause.
			s.finish(s.end, nil)
		} else {
			s.finish(EndClientGone, errClientReset)
		}
		return
	}
	if ev&evOut != 0 {
		s.flushDown()
	}
	if ev&(evIn|evRDHUP|evHUP) != 0 && !s.dead() {
		s.readClient()
	}
}

// setInterest registers what each fd should wait for: the source of a
// direction is read only while that direction's queue is empty.
func (s *session) setInterest() {
	l := s.l
	if s.ph == phConnecting {
		return
	}
	var c uint32
	switch {
	case s.discarding():
		c |= evIn | evRDHUP
	case !s.clientClosed():
		if s.up.empty() && s.down.len() < l.g.cfg.BufferCap && (!s.relaysUp() || s.creditAtHand(&s.up)) {
			c |= evIn | evRDHUP
		}
	case !s.up.eof:
		// After its close frame the client's input is read and dropped
		// (unread input would turn our close into a reset), and its EOF
		// is noticed.
		c |= evIn | evRDHUP
	}
	if !s.down.empty() {
		c |= evOut
	}
	if c != s.cev {
		l.modify(int(s.cfd), c)
		s.cev = c
	}
	if s.ufd < 0 || s.down.parked {
		return
	}
	var u uint32
	if !s.down.eof && !s.closeSent() && s.down.empty() && s.creditAtHand(&s.down) {
		u |= evIn | evRDHUP
	}
	if !s.up.empty() {
		u |= evOut
	}
	if u != s.uev {
		l.modify(int(s.ufd), u)
		s.uev = u
	}
}

// goAway asks the client to leave (close 1001) for drain or idle timeout.
func (s *session) goAway(end End, cause error) {
	if s.dead() {
		return
	}
	if s.ph == phConnecting {
		s.finish(end, cause)
		return
	}
	if s.closeSent() {
		if s.deadline == 0 {
			s.deadline = s.l.now + closeWait
		}
		return
	}
	if s.tun != nil && s.tunGoAway() {
		return // the last stream to end comes back here
	}
	s.sendClose(ws.StatusGoingAway, end, cause)
	s.deadline = s.l.now + closeWait
	if s.clientClosed() {
		s.closeUpstream()
		s.maybeDone()
	} else {
		s.setInterest()
	}
}

// reportUsage hands the bytes counted since the last report to the account.
func (s *session) reportUsage() {
	if s.up.used != 0 || s.down.used != 0 {
		s.acct.AddUsage(s.up.used, s.down.used)
		s.up.used, s.down.used = 0, 0
	}
}

// revoke ends the session because its account was closed (end: EndRevoked
// or EndQuota): close 1008 (policy violation), then the usual close
// handshake under a deadline.
func (s *session) revoke(end End) {
	if s.dead() || s.closeSent() {
		return
	}
	cause := errRevoked
	if end == EndQuota {
		cause = errQuota
	}
	if s.ph == phConnecting {
		s.finish(end, cause)
		return
	}
	s.sendClose(ws.StatusPolicyViolation, end, cause)
	s.deadline = s.l.now + closeWait
	s.closeUpstream()
	if s.clientClosed() {
		s.maybeDone()
	} else {
		s.setInterest()
	}
}

// tick runs the session's timers, from the loop's sweep.
func (s *session) tick(now int64) {
	if s.acct != nil {
		s.reportUsage()
		s.creditTick(now)
	}
	if s.down.eof && !s.closeSent() {
		s.eofClose()
		s.maybeDone()
		if s.dead() {
			return
		}
	}
	if s.ph == phConnecting {
		if now > s.deadline {
			s.connectFailed(errConnectTimeout)
		}
		return
	}
	if s.deadline != 0 && now > s.deadline {
		if s.end == EndNormal && !s.lingering() {
			s.end, s.cause = EndSlowClient, errCloseTimeout
		}
		s.finish(s.end, nil)
		return
	}
	if s.tun != nil {
		if s.tunTick(now); s.dead() {
			return
		}
	}
	idle := s.l.g.idle[s.kind]
	if idle > 0 && now-s.last > idle {
		s.goAway(EndIdle, errIdle)
		return
	}
	if s.tls != nil {
		s.tls.parkIdle(s.l.g, now, s.last)
	}
}

// Causes of session ends that are not errors of a socket or a decoder.
var (
	errClientReset    = errors.New("gateway: client connection reset or hung up")
	errClientEOF      = errors.New("gateway: client connection ended before its close frame")
	errControlFlood   = errors.New("gateway: control frames over the budget")
	errDatagramTooBig = errors.New("gateway: udp message larger than a datagram")
	errCloseTimeout   = errors.New("gateway: close handshake not completed in time")
	errIdle           = errors.New("gateway: idle timeout")
	errRevoked        = errors.New("gateway: account closed")
	errQuota          = errors.New("gateway: account's quota used up")
	errShutdown       = errors.New("gateway: shutting down")
	errConnectTimeout = errors.New("gateway: upstream connect timed out")
)

// closeCodeError is the cause of a session the client closed with an error
// code.
func closeCodeError(code ws.StatusCode) error {
	return fmt.Errorf("gateway: client closed with code %d", code)
}

// socketError is the pending error of a socket epoll reported failed.
func socketError(fd int) error {
	if err := connectResult(fd); err != nil {
		return err
	}
	return errUpstreamFailed
}

var errUpstreamFailed = errors.New("gateway: upstream socket failed")

// finish closes both sockets and frees everything the session holds. It is
// the one end of every session: end is the label the session-end metric
// gets, err (or, if nil, the cause recorded with the close frame) the error
// behind it, logged once here at debug level.
func (s *session) finish(end End, err error) {
	if s.dead() {
		return
	}
	from := s.ph
	s.step(evEnd)
	l := s.l
	if s.tls != nil {
		l.g.m.Buffered(-s.tls.release())
		s.tls.unpark(l.g)
		s.tls.clear()
	}
	l.g.m.Buffered(-s.up.release() - s.down.release())
	if s.msg != nil {
		bufpool.Put(s.msg)
		s.msg = nil
	}
	if s.tun != nil {
		s.tunRelease()
	}
	s.closeUpstream()
	l.forget(int(s.cfd))
	s.cfd = -1
	if s.acct != nil {
		s.reportUsage()
		if ca, ok := s.acct.(Credit); ok {
			s.returnCredit(ca)
		}
		s.acct.Release()
		s.acct = nil
	}
	if err == nil {
		err = s.cause
	}
	s.cause = nil
	if s.started {
		l.g.m.SessionEnd(s.kind, end)
		if log := l.g.log; log.Enabled(context.Background(), slog.LevelDebug) {
			log.Debug("session end", "path", s.kind.String(), "end", end.String(), "phase", from.String(), "err", err)
		}
	}
	// Last: whoever waits for Sessions() to drop sees the end counted.
	l.unlink(s)
	l.g.active.Add(-1)
}
