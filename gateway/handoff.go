package gateway

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cloudwego/netpoll"
	"golang.org/x/sys/unix"

	"github.com/httvps/httvps/internal/rawio"
)

// The hand-off: netpoll's part of a connection ends when the handshake
// closes it there (handshake.detach); its close callback (handshake.closed)
// calls handOff, which takes a descriptor of the socket of its own (ownFD)
// and builds the one handoff value that carries the connection to a relay
// loop. The loop adopts it into a session, which keeps
// it until the upstream connect completes: the 101 is held back so that it
// always means a working session.

// handoff is what a finished handshake gives a relay loop. It is built on
// the netpoll goroutine, then owned by the loop goroutine from post on, and
// dropped once the upstream is connected, so an established session does not
// carry it.
type handoff struct {
	cfd, ufd   int
	kind       PathKind
	tls        *tlsSession
	acct       Account
	resp       []byte           // the 101, plaintext; nil once handOff sent it
	respRest   []byte           // what the socket did not take of the 101 handOff sent (sealed on TLS)
	ready      bool             // the upstream was connected at handOff (upstreamReady)
	early      []byte           // client bytes read from the socket after the request
	earlyPlain []byte           // TLS: plaintext that followed the request in its record
	ups        []netip.AddrPort // further upstreams if the connect fails
}

// ownFD gives the gateway a descriptor of c's socket that netpoll never
// closes: a duplicate, taken in the close callback, before netpoll's own
// callback closes its descriptor (the socket stays open through ours). The
// hand-off used to keep netpoll's descriptor through Detach, which leaves it
// open only if netpoll's close started there: when the client's hang-up made
// the poller close the connection first, netpoll closed the number the relay
// loop then owned, and whatever reused that number (another connection, a
// listener) was closed under its owner.
func ownFD(c netpoll.Connection) (int, error) {
	fd, err := unix.FcntlInt(uintptr(c.(netpoll.Conn).Fd()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("gateway: dup of the client socket: %w", err)
	}
	return fd, nil
}

// maxEarly bounds the early bytes carried into a session.
const maxEarly = 64 << 10

// handOff runs in netpoll's close callback after detach: it takes what the
// handshake leaves and posts it to a relay loop.
func (h *handshake) handOff(c netpoll.Connection) {
	g := h.g
	cfd, err := ownFD(c)
	if err != nil {
		g.log.Debug("gateway: hand-off", "err", err)
		h.abandon()
		return
	}
	// RFC 6455 §4.1 has a client wait for the 101 before it sends, but bytes
	// that came early (raw, and for TLS plaintext past the request) are
	// carried over rather than lost: losing a TLS record would desynchronise
	// the record sequence numbers.
	a := &handoff{cfd: cfd, ufd: h.ufd, kind: h.kind, tls: h.tls, acct: h.route.Account, ups: h.ups}
	a.resp = append([]byte(nil), h.out.buf[:h.out.n]...)
	// The close does not wait for a read the poller is doing; once quiesce
	// has stopped it, what the buffer holds is all there is (fallback.go).
	if !quiesce(c) {
		g.log.Warn("gateway: netpoll internals not found; early bytes of a session may be lost")
	}
	r := c.Reader()
	if n := r.Len(); n > 0 {
		if n > maxEarly {
			g.m.Dropped(DropEarlyData, n)
		} else if b, err := r.Next(n); err == nil {
			a.early = append([]byte(nil), b...)
		}
	}
	if len(h.extra) > 0 {
		a.earlyPlain = append([]byte(nil), h.extra...)
	}
	// Counted before the 101 can leave (Sessions); unlink or adopt's
	// failure uncounts it.
	g.sessions.Add(1)
	// Until the post below, Shutdown waits before it posts the drains: a
	// session whose 101 leaves here is adopted before its loop drains, so
	// it gets close 1001 like any other instead of a silent close.
	g.handingOff.Add(1)
	defer g.handingOff.Add(-1)
	// Not while draining: the loop refuses new sessions then (adopt).
	if a.ready = a.kind != PathTCP || upstreamReady(a.ufd); a.ready && !g.draining.Load() {
		a.send101(a.cfd)
	}
	l := g.pickLoop()
	l.post(func() { l.adopt(a) })
}

// send101 writes the 101 from the hand-off itself when the session is
// ready, so the client's wait for it does not include the relay loop's
// wake-up; the socket belongs to no loop yet, so nothing else writes to it.
// What the socket does not take (or all of it, on an error, which the loop
// then meets on its own write) goes to the loop in respRest.
func (a *handoff) send101(cfd int) {
	out := a.resp
	if a.tls != nil {
		sealed, err := a.tls.sealTo(make([]byte, 0, sealedLen(len(out))), out)
		if err != nil {
			return // the loop seals it again and ends the session on the error
		}
		out = sealed
	}
	n, err := rawio.Write(cfd, out)
	if err != nil || n < 0 {
		n = 0
	}
	if n < len(out) {
		a.respRest = out[n:]
	}
	a.resp = nil
}

// adopt registers an upgraded connection and its upstream on the loop and
// sends the 101.
func (l *loop) adopt(a *handoff) {
	g := l.g
	cfd, ufd, kind := a.cfd, a.ufd, a.kind
	s := &session{l: l, kind: kind, cfd: int32(cfd), ufd: int32(ufd), last: l.now, tls: a.tls, acct: a.acct}
	if s.last == 0 {
		s.last = time.Now().UnixNano()
	}
	s.up.mark, s.down.mark = s.last, s.last
	if _, ok := a.acct.(Credit); !ok {
		// No quota to hold: the reads never ask again (credit.go).
		s.up.credit, s.down.credit = creditUnlimited, creditUnlimited
	}
	lim := g.limits
	if kind == PathUDP {
		lim = g.udpLimits
	}
	if kind == PathTunnel {
		lim = g.tunLimits
		s.tun = newTunnel(a.ups)
	}
	s.rd.Init(lim)
	s.cev, s.uev = evIn|evRDHUP, evIn|evRDHUP
	if kind == PathTCP && !a.ready {
		// Until the upstream connect completes only errors from the
		// client matter.
		s.cev, s.uev = 0, evOut
	}
	fail := func() {
		g.sessions.Add(-1)
		g.active.Add(-1)
		if a.acct != nil {
			a.acct.Release()
		}
		if a.tls != nil {
			a.tls.clear()
		}
	}
	if l.draining || l.stopping {
		sysClose(cfd)
		if ufd >= 0 {
			sysClose(ufd)
		}
		g.m.HandshakeRejected(RejectShutdown)
		fail()
		return
	}
	if err := l.register(cfd, s, s.cev); err != nil {
		sysClose(cfd)
		if ufd >= 0 {
			sysClose(ufd)
		}
		fail()
		return
	}
	// A tunnel has no member socket of its own: its streams dial theirs.
	if kind != PathTunnel {
		if err := l.register(ufd, s, s.uev); err != nil {
			l.forget(cfd)
			sysClose(ufd)
			fail()
			return
		}
	}
	l.link(s)
	s.hand = a
	if a.ready {
		s.connected()
		return
	}
	s.deadline = l.now + int64(g.cfg.DialTimeout)
}

// handleConnect processes events while the upstream connect is in flight.
func (s *session) handleConnect(fd int, ev uint32) {
	if fd == int(s.cfd) {
		if ev&(evERR|evHUP) != 0 {
			s.finish(EndClientGone, errClientReset)
		}
		return
	}
	if ev&(evOut|evERR|evHUP) == 0 {
		return
	}
	if err := connectResult(fd); err != nil {
		s.connectFailed(err)
		return
	}
	s.connected()
}

// connected starts relaying: send the 101, then whatever the client sent
// early.
func (s *session) connected() {
	l, g, p := s.l, s.l.g, s.hand
	s.hand = nil
	s.step(evConnected)
	s.deadline = 0
	s.started = true
	g.m.HandshakeOK(s.kind)
	g.m.SessionStart(s.kind)
	if p.resp != nil {
		s.writeDown(p.resp)
	} else if len(p.respRest) > 0 {
		s.writeRaw(p.respRest)
	}
	if s.tun != nil {
		// SETTINGS is the tunnel's first frame, right behind the 101.
		s.emitSettings()
		s.tunFlush()
	}
	if len(p.earlyPlain) > 0 && !s.dead() {
		if iov, ok := s.consume(p.earlyPlain, l.iov[:0]); ok {
			s.flushPieces(iov)
		}
	}
	if len(p.early) > 0 && !s.dead() {
		if s.tls != nil {
			s.openRecords(p.early)
		} else if iov, ok := s.consume(p.early, l.iov[:0]); ok {
			s.flushPieces(iov)
		}
	}
	if s.tun != nil {
		s.tunDone()
	} else if !s.dead() {
		s.setInterest()
	}
}

// connectFailed moves on to the next upstream after a connect failed with
// err, or answers with the decoy when none is left. A failure followed by
// another try is logged here (it is the member's, not the session's); the
// last one is the session's cause, logged once with its end.
func (s *session) connectFailed(err error) {
	l, g := s.l, s.l.g
	g.m.UpstreamDialError(s.kind)
	l.forget(int(s.ufd))
	s.ufd = -1
	for p := s.hand; len(p.ups) > 0; {
		g.log.Debug("upstream connect failed; trying the next", "path", s.kind.String(), "err", err)
		ap := p.ups[0]
		p.ups = p.ups[1:]
		var fd int
		fd, err = connectTCP(ap)
		if err == nil {
			if err = l.register(fd, s, evOut); err == nil {
				s.ufd, s.uev = int32(fd), evOut
				s.deadline = l.now + int64(g.cfg.DialTimeout)
				return
			}
			sysClose(fd)
		}
		err = fmt.Errorf("%s: %w", ap, err)
		g.m.UpstreamDialError(s.kind)
	}
	// Like every other failure: the decoy (the one answer every refused
	// connection gets, handshake.go's sendAnswer), then a lingering close.
	// The socket has left netpoll, so it is not kept alive as nginx would.
	s.hand = nil
	g.m.HandshakeRejected(RejectUpstream)
	aerr := g.sendAnswer(answer{}, s.tls, true, func(b []byte) error {
		s.writeRaw(b)
		return nil
	})
	if aerr != nil {
		s.finish(EndUpstream, aerr)
		return
	}
	if s.dead() {
		return
	}
	s.end, s.cause = EndUpstream, fmt.Errorf("%w: %w", errNoUpstream, err)
	s.step(evLinger)
	s.deadline = l.now + int64(lingerTime)
	s.maybeDone()
	if !s.dead() {
		s.setInterest()
	}
}

var errNoUpstream = errors.New("gateway: no upstream could be connected")
