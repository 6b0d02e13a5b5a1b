package gateway

// How a tunnel's streams end (FIN both ways, a RESET either way, the
// tunnel's own end), and how a tunnel goes away: GOAWAY, then close 1001
// once its last stream ended (drain) or at once (idle).

import (
	"context"
	"log/slog"
	"slices"

	"github.com/gobwas/ws"

	"github.com/httvps/httvps/bufpool"
	"github.com/httvps/httvps/codec/mux"
)

// endStream ends st: a RESET with code to the client (0: none), its member
// socket closed, and the client's session credit given back for every byte
// of it the member will never take (queued, or still to come in the frame
// being received). Every stream that was accepted ends here once.
func (s *session) endStream(st *tstream, why StreamEnd, code mux.ResetCode, cause error) {
	t, l := s.tun, s.l
	if st.done {
		return
	}
	st.done = true
	if st.draining {
		st.draining = false
		t.draining--
	}
	if code != 0 && !t.ending {
		s.emitReset(st.id, code)
	}
	gathered := s.gatherDrop(st)
	if !st.udp {
		t.credit += int64(st.up.len()) + gathered
		if t.cur == st {
			t.credit += t.curLeft
		}
	}
	if t.cur == st {
		t.cur = nil
	}
	if st.isBlocked {
		// Off the list of streams waiting for the window, which so stays
		// within the open streams (review finding 3: ended streams stayed
		// on it, and every event of the tunnel walked them).
		if i := slices.Index(t.blocked, st); i >= 0 {
			last := len(t.blocked) - 1
			t.blocked[i] = t.blocked[last]
			t.blocked[last] = nil
			t.blocked = t.blocked[:last]
		}
		st.isBlocked = false
	}
	l.g.m.Buffered(-st.up.release())
	if st.pkt != nil {
		s.releasePacket(st)
	}
	if st.fd >= 0 {
		delete(t.byFD, int32(st.fd))
		if st.parked {
			l.fds[st.fd] = nil
			sysClose(st.fd)
		} else {
			l.forget(st.fd)
		}
		st.fd = -1
	}
	delete(t.streams, st.id)
	if st.udp {
		s.rememberUDP(st.id)
	}
	l.g.tm.StreamEnded(why)
	if log := l.g.log; log.Enabled(context.Background(), slog.LevelDebug) {
		log.Debug("tunnel stream end", "stream", st.id, "udp", st.udp, "end", why.String(), "err", cause)
	}
	if t.ending {
		return
	}
	s.sessionCredit()
	s.last = l.now
	if len(t.streams) == 0 {
		// Idle again: the tunnel holds no map and no list.
		t.streams, t.byFD, t.blocked = nil, nil, nil
		if t.goAway {
			s.goAway(EndShutdown, errShutdown)
		}
	}
}

func (s *session) releasePacket(st *tstream) {
	bufpool.Put(st.pkt)
	st.pkt, st.pktLen = nil, 0
	s.l.g.m.Buffered(-mux.MaxUDPPacket)
}

// tunEndStreams ends every stream with the tunnel (closeUpstream calls it
// for a tunnel): their member sockets close and no frame is sent for them.
func (s *session) tunEndStreams() {
	t := s.tun
	t.ending = true
	for _, st := range t.streams {
		s.endStream(st, StreamTunnelEnd, 0, nil)
	}
	t.streams, t.byFD, t.blocked, t.draining = nil, nil, nil, 0
}

// tunGoAway sends GOAWAY (once) with the highest stream id accepted. It
// reports true while streams are still open: they go on to their end (or
// the drain deadline), and the last one to end sends the close 1001.
func (s *session) tunGoAway() bool {
	t := s.tun
	if !t.goAway {
		t.goAway = true
		if b := s.tbuf(); b != nil {
			s.l.tout = mux.AppendGoAway(b, t.highest, mux.GoAwayNoError)
		}
	}
	s.tunFlush()
	return len(t.streams) > 0 && !s.dead()
}

// tunRelease drops the tunnel's frames not yet flushed, when it ends.
func (s *session) tunRelease() {
	if l := s.l; l.towner == s {
		l.towner = nil
		l.tout = l.tout[:maxServerHeader]
	}
}

// tunKill is the drain deadline for a tunnel: close 1001 (best effort: one
// non-blocking write) before the sockets close.
func (s *session) tunKill() {
	s.sendClose(ws.StatusGoingAway, EndShutdown, errShutdown)
}
