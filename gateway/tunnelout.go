package gateway

// Members → client on a tunnel, and the frames the gateway sends: a read
// from a member socket lands in the loop's scratch buffer behind room for
// the WebSocket and DATA headers and is written to the client at once (one
// frame, sealed on TLS), within the client's windows for the stream;
// WINDOW, RESET, PING answers and the like are collected per event in the
// loop's tunnel output buffer and go out as one WebSocket message
// (tunFlush). Dialling a stream's member is here too.

import (
	"net/netip"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/httvps/httvps/codec"
	"github.com/httvps/httvps/codec/mux"
	"github.com/httvps/httvps/internal/rawio"
)

// toutCap bounds the frames collected before they are flushed.
const toutCap = 16 << 10

// tbuf is the loop's tunnel output buffer, ready for one more frame of s
// (frames of another session, or a full buffer, are flushed first); the
// caller appends the frame and stores the result in l.tout. It is nil once
// our close frame is out: nothing may follow it.
func (s *session) tbuf() []byte {
	if s.closeSent() || s.dead() {
		return nil
	}
	l := s.l
	if l.tout == nil {
		l.tout = make([]byte, maxServerHeader, maxServerHeader+toutCap+mux.HeaderLen+mux.MaxControl)
	}
	if o := l.towner; o != nil && o != s {
		o.tunFlush()
	}
	if len(l.tout) >= maxServerHeader+toutCap {
		s.tunFlush()
		if s.dead() {
			return nil
		}
	}
	l.towner = s
	return l.tout
}

// tunFlush writes the frames collected for s as one binary message.
func (s *session) tunFlush() {
	l := s.l
	if l.towner != s {
		return
	}
	l.towner = nil
	n := len(l.tout) - maxServerHeader
	if n <= 0 || s.dead() {
		l.tout = l.tout[:maxServerHeader]
		return
	}
	h := codec.ServerHeaderLen(n)
	start := maxServerHeader - h
	codec.PutServerHeader(l.tout[start:], ws.OpBinary, n)
	msg := l.tout[start:]
	l.tout = l.tout[:maxServerHeader]
	s.writeDown(msg)
}

func (s *session) emitReset(id uint32, c mux.ResetCode) {
	s.l.g.tm.ResetSent(c)
	if b := s.tbuf(); b != nil {
		s.l.tout = mux.AppendReset(b, id, c)
	}
}

func (s *session) emitWindow(id uint32, inc int64) {
	if b := s.tbuf(); b != nil {
		s.l.tout = mux.AppendWindow(b, id, uint32(inc))
	}
}

// emitFIN sends the end of the member's direction (an empty DATA with FIN).
func (s *session) emitFIN(st *tstream) {
	st.down.shut = true
	if b := s.tbuf(); b != nil {
		s.l.tout = mux.AppendData(b, st.id, true, nil)
	}
}

// emitSettings sends the gateway's SETTINGS, its first frame.
func (s *session) emitSettings() {
	set := mux.DefaultSettings()
	set.MaxStreams = uint32(s.l.g.tunMaxStreams)
	set.StreamWindow = tunStreamWindow
	set.SessionWindow = tunSessionWindow
	set.MaxFrame = tunMaxFrame
	if b := s.tbuf(); b != nil {
		s.l.tout = mux.AppendSettings(b, set)
	}
}

// streamTook books n client bytes the member socket took: once half a
// window is consumed the client gets the credit back (docs/03).
func (s *session) streamTook(st *tstream, n int) {
	st.credit += int64(n)
	s.tun.credit += int64(n)
	if st.credit >= tunStreamWindow/2 && !st.up.eof {
		st.recvWin += st.credit
		s.emitWindow(st.id, st.credit)
		st.credit = 0
	}
	s.sessionCredit()
}

// sessionCredit gives the client its session credit back once half the
// session window is consumed.
func (s *session) sessionCredit() {
	t := s.tun
	if t.credit >= tunSessionWindow/2 {
		t.recvWin += t.credit
		s.emitWindow(0, t.credit)
		t.credit = 0
	}
}

// streamDial starts the stream's connect to the next member that takes a
// socket (udp: a connected socket, ready at once). It reports false if the
// stream ended instead (RESET CONNECT).
func (s *session) streamDial(st *tstream) bool {
	l, t, g := s.l, s.tun, s.l.g
	kind := PathTCP
	if st.udp {
		kind = PathUDP
	}
	for int(st.next) < len(t.ups) {
		ap := t.ups[st.next]
		st.next++
		fd, err := dialMember(ap, st.udp)
		if err == nil {
			ev := uint32(evOut)
			if st.udp {
				ev = evIn
			}
			if err = l.register(fd, s, ev); err == nil {
				st.fd, st.ev = fd, ev
				st.connecting = !st.udp
				st.deadline = l.now + int64(g.cfg.DialTimeout)
				t.byFD[int32(fd)] = st
				return true
			}
			sysClose(fd)
		}
		g.m.UpstreamDialError(kind)
		g.log.Debug("tunnel member dial failed", "stream", st.id, "upstream", ap.String(), "err", err)
	}
	s.endStream(st, StreamConnect, mux.ResetConnect, errNoUpstream)
	return false
}

func dialMember(ap netip.AddrPort, udp bool) (int, error) {
	if udp {
		return dialUDP(ap)
	}
	return connectTCP(ap)
}

// streamDialNext moves on to the next member after a connect failed.
func (s *session) streamDialNext(st *tstream, err error) {
	l, g := s.l, s.l.g
	g.m.UpstreamDialError(PathTCP)
	g.log.Debug("tunnel member connect failed", "stream", st.id, "err", err)
	delete(s.tun.byFD, int32(st.fd))
	l.forget(st.fd)
	st.fd, st.ev, st.connecting = -1, 0, false
	if s.streamDial(st) {
		s.streamInterest(st)
	}
}

// streamConnected starts relaying a stream whose connect completed: the
// client bytes held meanwhile go out first.
func (s *session) streamConnected(st *tstream) {
	st.connecting = false
	st.last = s.l.now
	s.streamFlush(st)
	if st.fd >= 0 {
		s.streamInterest(st)
	}
}

// streamFlush writes queued client bytes to the member, then passes on the
// client's FIN if it came.
func (s *session) streamFlush(st *tstream) {
	if !st.up.empty() {
		n, err := st.up.flush(st.fd)
		s.l.g.m.Buffered(-n)
		if err != nil {
			s.endStream(st, StreamUpstream, mux.ResetUpstream, err)
			return
		}
		if n > 0 {
			s.streamTook(st, n)
		}
	}
	if st.up.empty() && st.up.eof {
		s.shutMember(st)
	}
}

// streamRead reads the member once and sends what it read to the client as
// one DATA frame, within the client's windows and MAX_FRAME. It reports
// whether the member may have more to read now (the read filled what was
// asked, or took a datagram).
func (s *session) streamRead(st *tstream) bool {
	l, t, g := s.l, s.tun, s.l.g
	if !s.credited(&s.down) {
		return false // streamInterest puts st on tunnel.blocked
	}
	const off = maxServerHeader + mux.HeaderLen
	size := int(t.peerMaxFrame)
	if st.udp {
		size = 65536
	} else {
		size = min(size, g.chunk, int(min(st.sendWin, t.sendWin)), int(s.down.credit))
	}
	n, err := rawio.Read(st.fd, l.scratch[off:off+size])
	if err != nil {
		if err == unix.EAGAIN || err == unix.EINTR || st.udp {
			// udp: ECONNREFUSED and friends from an ICMP error; reading cleared it.
			return false
		}
		s.endStream(st, StreamUpstream, mux.ResetUpstream, err)
		return false
	}
	if n == 0 && !st.udp {
		st.down.eof = true
		s.emitFIN(st)
		if st.up.shut {
			s.endStream(st, StreamNormal, 0, nil)
		} else {
			s.noteDraining(st)
		}
		return false
	}
	if st.udp && n > int(t.peerMaxFrame) {
		g.m.Dropped(DropTunnelUDP, n)
		return true
	}
	st.last, s.last = l.now, l.now
	g.m.BytesDown(n)
	s.down.used += int64(n)
	s.down.charge(n)
	if !st.udp {
		st.sendWin -= int64(n)
		t.sendWin -= int64(n)
	}
	// Frames collected so far go first: a RESET or FIN must not overtake
	// the data before it, nor data the frames before it.
	s.tunFlush()
	if s.dead() {
		return false
	}
	mux.PutHeader(l.scratch[maxServerHeader:], mux.Header{Length: uint32(n), Type: mux.TypeData, Stream: st.id})
	m := mux.HeaderLen + n
	h := codec.ServerHeaderLen(m)
	start := maxServerHeader - h
	codec.PutServerHeader(l.scratch[start:], ws.OpBinary, m)
	s.writeDown(l.scratch[start : off+n])
	return st.udp || n == size
}
