package gateway

import (
	"net/netip"

	"golang.org/x/sys/unix"
)

// pending is a session's state until its upstream is connected: the 101 is
// held back so that it always means a working session. Dropped once
// connected, so an established session does not carry it.
type pending struct {
	resp       []byte // the 101, plaintext
	early      []byte // client bytes that came with the request
	earlyPlain []byte // TLS: plaintext that came with the request
	ups        []netip.AddrPort
}

// handleConnect processes events while the upstream connect is in flight.
func (s *session) handleConnect(fd int, ev uint32) {
	if fd == s.cfd {
		if ev&(evERR|evHUP) != 0 {
			s.finish(EndClientGone)
		}
		return
	}
	if ev&(evOut|evERR|evHUP) == 0 {
		return
	}
	if err := connectResult(fd); err != nil {
		s.l.g.log.Debug("upstream connect failed", "err", err)
		s.connectFailed()
		return
	}
	s.connected()
}

// connected starts relaying: send the 101, then whatever the client sent
// early.
func (s *session) connected() {
	l, g, p := s.l, s.l.g, s.pend
	s.pend = nil
	s.deadline = 0
	s.started = true
	g.m.HandshakeOK(s.kind)
	g.m.SessionStart(s.kind)
	s.writeDown(p.resp)
	if len(p.earlyPlain) > 0 && !s.dead {
		if iov, ok := s.consume(p.earlyPlain, l.iov[:0]); ok {
			s.flushPieces(iov)
		}
	}
	if len(p.early) > 0 && !s.dead {
		if s.tls != nil {
			s.openRecords(p.early)
		} else if iov, ok := s.consume(p.early, l.iov[:0]); ok {
			s.flushPieces(iov)
		}
	}
	if !s.dead {
		s.setInterest()
	}
}

// connectFailed moves on to the next upstream, or answers with the decoy
// when none is left.
func (s *session) connectFailed() {
	l, g := s.l, s.l.g
	g.m.UpstreamDialError(s.kind)
	l.forget(s.ufd)
	s.ufd = -1
	for p := s.pend; len(p.ups) > 0; {
		ap := p.ups[0]
		p.ups = p.ups[1:]
		fd, err := connectTCP(ap)
		if err == nil {
			if err = l.register(fd, s, evOut); err == nil {
				s.ufd, s.uev = fd, evOut
				s.deadline = l.now + int64(g.cfg.DialTimeout)
				return
			}
			unix.Close(fd)
		}
		g.m.UpstreamDialError(s.kind)
	}
	// Like every other failure: the decoy, then a lingering close. The
	// socket has left netpoll, so it is not kept alive as nginx would.
	s.pend = nil
	g.m.HandshakeRejected(RejectUpstream)
	s.writeDown(g.pages.appendAnswer(nil, answer{}))
	if s.tls != nil && !s.dead {
		if out, err := s.tls.alert(l, alertCloseNotify); err == nil {
			s.writeRaw(out)
		}
	}
	if s.dead {
		return
	}
	s.end = EndUpstream
	s.closeSent = true
	s.cliClosed = true
	s.discard = true
	s.lingering = true
	l.lingering++
	s.deadline = l.now + int64(decoyLinger)
	s.maybeDone()
	if !s.dead {
		s.setInterest()
	}
}
