package gateway

// Client → members on a tunnel: the WebSocket payload pieces of one client
// read (toupstream.go's frames hands them here, unmasked in place in the
// loop's scratch buffer) are decoded into mux frames; stream bytes are
// written straight to the stream's member socket, and only what the socket
// does not take is queued in the stream's up stream, within its window.

import (
	"errors"
	"fmt"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/httvps/httvps/bufpool"
	"github.com/httvps/httvps/codec/mux"
	"github.com/httvps/httvps/internal/rawio"
)

// tunInput decodes one WebSocket payload piece. It reports false once the
// tunnel failed or ended (the rest of the read is then dropped).
func (s *session) tunInput(p []byte) bool {
	t := s.tun
	for len(p) > 0 {
		ev, n, err := t.p.Next(p)
		p = p[n:]
		if err != nil {
			return s.tunFail(err)
		}
		switch ev.Kind {
		case mux.EventFrame:
			if !s.tunControl(ev) {
				return false
			}
		case mux.EventOpen:
			if !s.tunOpen(ev) {
				return false
			}
		case mux.EventData:
			if !t.inFrame && !s.tunDataStart(ev.Header) {
				return false
			}
			s.tunPiece(ev)
		}
		if s.dead() || s.discarding() {
			return false
		}
	}
	return true
}

// tunFail closes the tunnel for a frame that breaks docs/03: the close code
// mux gives the error (1002, 1008 or 1009). It returns false for tunInput.
func (s *session) tunFail(err error) bool {
	end := EndProtocol
	if errors.Is(err, mux.ErrControlBudget) {
		end = EndFlood
	}
	s.fail(ws.StatusCode(mux.CloseCode(err)), end, err)
	return false
}

// tunControl handles a whole frame other than DATA and OPEN.
func (s *session) tunControl(ev mux.Event) bool {
	t, h := s.tun, ev.Header
	if h.Type == mux.TypeSettings {
		if t.gotSettings {
			return s.tunFail(mux.ErrSettingsOrder)
		}
		set, err := mux.ParseSettings(ev.Payload)
		if err != nil {
			return s.tunFail(err)
		}
		t.gotSettings = true
		t.peerMaxFrame = set.MaxFrame
		t.peerStreamWin = set.StreamWindow
		t.sendWin = int64(set.SessionWindow)
		return true
	}
	if !t.gotSettings {
		return s.tunFail(mux.ErrSettingsOrder)
	}
	switch h.Type {
	case mux.TypePing:
		// Tunnel PINGs share the WebSocket control-frame budget.
		if !s.controlFrame() {
			return s.tunFail(mux.ErrControlBudget)
		}
		id, err := mux.ParsePing(ev.Payload)
		if err != nil {
			return s.tunFail(err)
		}
		if h.Flags&mux.FlagACK == 0 {
			if b := s.tbuf(); b != nil {
				s.l.tout = mux.AppendPing(b, id, true)
			}
		}
	case mux.TypeWindow:
		inc, err := mux.ParseWindow(ev.Payload)
		if err != nil {
			return s.tunFail(err)
		}
		if h.Stream == 0 {
			if t.sendWin+int64(inc) > mux.MaxWindow {
				return s.tunFail(mux.ErrWindowOverflow)
			}
			t.sendWin += int64(inc)
			return true
		}
		st, ok := s.tunStream(h.Stream)
		if !ok {
			return false
		}
		if st == nil || st.udp { // udp is not flow-controlled
			return true
		}
		if st.sendWin+int64(inc) > mux.MaxWindow {
			s.endStream(st, StreamFlowControl, mux.ResetFlowControl, errStreamWindow)
			return true
		}
		st.sendWin += int64(inc)
		s.streamInterest(st)
	case mux.TypeReset:
		if _, err := mux.ParseReset(ev.Payload); err != nil {
			return s.tunFail(err)
		}
		st, ok := s.tunStream(h.Stream)
		if !ok {
			return false
		}
		if st != nil {
			s.endStream(st, StreamClientReset, 0, errStreamReset)
		}
	case mux.TypeGoAway:
		// In v1 only clients open streams, so a client's GOAWAY changes
		// nothing here; it is checked and otherwise ignored.
		if _, _, err := mux.ParseGoAway(ev.Payload); err != nil {
			return s.tunFail(err)
		}
	}
	return true
}

// tunStream finds the open stream id names. A nil stream with ok is one
// that was open and is not any more (its frames are ignored); !ok means the
// id was never opened, and the tunnel has failed.
func (s *session) tunStream(id uint32) (*tstream, bool) {
	t := s.tun
	if id > t.highest {
		s.tunFail(fmt.Errorf("%w: stream %d", mux.ErrUnknownStream, id))
		return nil, false
	}
	return t.streams[id], true
}

// tunOpen handles an OPEN: the stream is accepted and its member dialled,
// or it is answered with the RESET docs/03 names. Its first data, if any,
// follows as EventData pieces.
func (s *session) tunOpen(ev mux.Event) bool {
	t, h := s.tun, ev.Header
	if !t.gotSettings {
		return s.tunFail(mux.ErrSettingsOrder)
	}
	if h.Stream <= t.highest {
		return s.tunFail(fmt.Errorf("%w: %d after %d", mux.ErrStreamOrder, h.Stream, t.highest))
	}
	t.highest = h.Stream
	n := int64(h.Length) - 1 // first data
	t.cur, t.curFIN, t.inFrame = nil, h.Flags&mux.FlagFIN != 0, n > 0
	tm := s.l.g.tm
	var code mux.ResetCode
	var why StreamEnd
	switch {
	case ev.Open != mux.KindTCP && ev.Open != mux.KindUDP,
		ev.Open == mux.KindUDP && n > mux.MaxUDPPacket: // as for a DATA frame
		code, why = mux.ResetProtocol, StreamProtocol
	case t.goAway || len(t.streams)-t.draining >= s.l.g.tunMaxStreams || len(t.streams) >= 2*s.l.g.tunMaxStreams:
		code, why = mux.ResetRefused, StreamRefused
	case len(t.ups) == 0:
		code, why = mux.ResetConnect, StreamConnect
	}
	udp := ev.Open == mux.KindUDP
	if code != 0 {
		tm.StreamOpened(udp)
		tm.StreamEnded(why)
		s.emitReset(h.Stream, code)
		if ev.Open == mux.KindTCP && !s.chargeDropped(n) {
			return false
		}
		if udp {
			s.rememberUDP(h.Stream)
		}
		return true
	}
	if !udp && n > t.recvWin {
		return s.tunFail(mux.ErrSessionWindow)
	}
	st := &tstream{id: h.Stream, fd: -1, udp: udp, last: s.l.now,
		recvWin: tunStreamWindow, sendWin: int64(t.peerStreamWin)}
	if !udp {
		t.recvWin -= n
		st.recvWin -= n
	}
	if t.streams == nil {
		t.streams = make(map[uint32]*tstream)
		t.byFD = make(map[int32]*tstream)
	}
	t.streams[st.id] = st
	tm.StreamOpened(udp)
	t.cur, t.curLeft = st, n
	if !s.streamDial(st) {
		// Not even a socket: the stream has ended (RESET CONNECT), and
		// its first data, dropped, was credited back (endStream).
		return !s.dead() && !s.discarding()
	}
	if n == 0 {
		// No data follows: the OPEN's FIN applies now.
		t.cur = nil
		if t.curFIN {
			s.clientFIN(st)
		}
	}
	return true
}

// chargeDropped books n bytes of a tcp frame whose stream is gone: they
// count against the session window (docs/03) and are credited back at once.
func (s *session) chargeDropped(n int64) bool {
	t := s.tun
	if n > t.recvWin {
		return s.tunFail(mux.ErrSessionWindow)
	}
	t.recvWin -= n
	t.credit += n
	s.sessionCredit()
	return true
}

// tunDataStart checks a DATA frame's header against the stream and the
// windows, and picks where its bytes go (t.cur; nil drops them).
func (s *session) tunDataStart(h mux.Header) bool {
	t := s.tun
	if !t.gotSettings {
		return s.tunFail(mux.ErrSettingsOrder)
	}
	st, ok := s.tunStream(h.Stream)
	if !ok {
		return false
	}
	n := int64(h.Length)
	t.cur, t.curFIN, t.inFrame = nil, h.Flags&mux.FlagFIN != 0, true
	if st == nil {
		if s.wasUDP(h.Stream) {
			return true
		}
		return s.chargeDropped(n)
	}
	if st.up.eof {
		// DATA after the client's FIN.
		s.endStream(st, StreamProtocol, mux.ResetProtocol, errDataAfterFIN)
		if st.udp {
			return true
		}
		return s.chargeDropped(n)
	}
	if st.udp {
		if n > mux.MaxUDPPacket {
			s.endStream(st, StreamProtocol, mux.ResetProtocol, errDatagramTooBig)
			return true
		}
		t.cur = st
		return true
	}
	if n > t.recvWin {
		return s.tunFail(mux.ErrSessionWindow)
	}
	if n > st.recvWin {
		s.endStream(st, StreamFlowControl, mux.ResetFlowControl, errStreamWindow)
		return s.chargeDropped(n)
	}
	t.recvWin -= n
	st.recvWin -= n
	t.cur, t.curLeft = st, n
	return true
}

// tunPiece passes one piece of a DATA (or OPEN) payload to its stream, and
// applies the frame's FIN after its last piece.
func (s *session) tunPiece(ev mux.Event) {
	t := s.tun
	st := t.cur
	// The piece leaves curLeft before it is written: from here on it is
	// the stream's (written, gathered or queued), and a stream that ends
	// credits those; counted in both, a write failure at the gather limit
	// credited it twice (review finding 4).
	if st != nil {
		t.curLeft -= int64(len(ev.Payload))
	}
	if st != nil && st.fd >= 0 {
		if st.udp {
			s.udpPacketPiece(st, ev.Payload, ev.Last)
		} else if len(ev.Payload) > 0 {
			st.last = s.l.now
			s.streamWrite(st, ev.Payload)
		}
	}
	if ev.Last {
		t.inFrame, t.cur = false, nil
		if st != nil && st.fd >= 0 && t.curFIN {
			s.clientFIN(st)
		}
	}
}

// streamWrite sends client bytes to the member, queueing what the socket
// does not take (and everything while the connect is in flight): the
// stream's window bounds the queue. Pieces of one stream that follow each
// other in a client read (a client writes 16 KiB, so a read holds many
// DATA frames of a busy stream) are gathered in l.giov and written with one
// writev (gatherFlush) when the read is handled, another stream's piece
// comes, or the stream's FIN is due: one system call per stream and read,
// as on the Outline paths, instead of one per frame.
func (s *session) streamWrite(st *tstream, p []byte) {
	l, g := s.l, s.l.g
	g.m.BytesUp(len(p))
	s.up.used += int64(len(p))
	s.up.charge(len(p))
	if st.connecting || !st.up.empty() {
		g.m.Buffered(st.up.push(p))
		return
	}
	if l.gst != st {
		s.gatherFlush()
		if l.giov == nil {
			l.giov = make([][]byte, 0, maxIOV)
		}
		l.gst = st
	}
	l.giov = append(l.giov, p)
	if len(l.giov) == maxIOV {
		s.gatherFlush()
	}
}

// gatherFlush writes the pieces gathered for l.gst to its member socket in
// one writev; what the socket does not take is queued, and the member then
// waits for room. The pieces point into the client read (the loop's
// scratch buffer), so they go out before the read is done with.
func (s *session) gatherFlush() {
	l := s.l
	st, iov := l.gst, l.giov
	if st == nil {
		return
	}
	l.gst, l.giov = nil, l.giov[:0]
	total := 0
	for _, p := range iov {
		total += len(p)
	}
	n, err := writev(st.fd, iov, l.iovec[:])
	if err != nil && err != unix.EAGAIN {
		// Queued, the bytes are credited back as the stream ends.
		l.g.m.Buffered(st.up.push(iov...))
		s.endStream(st, StreamUpstream, mux.ResetUpstream, err)
		return
	}
	if n > 0 {
		s.streamTook(st, n)
	}
	if n >= total {
		return
	}
	for _, p := range iov {
		if n >= len(p) {
			n -= len(p)
			continue
		}
		l.g.m.Buffered(st.up.push(p[n:]))
		n = 0
	}
	s.streamInterest(st) // the queue was empty: wait for room
}

// gatherDrop forgets the pieces gathered for st, which ends: like its
// queue, they are credited back to the session (endStream).
func (s *session) gatherDrop(st *tstream) int64 {
	l := s.l
	if l.gst != st {
		return 0
	}
	var n int64
	for _, p := range l.giov {
		n += int64(len(p))
	}
	l.gst, l.giov = nil, l.giov[:0]
	return n
}

// udpPacketPiece adds a piece of a udp DATA frame to its packet and sends
// the packet once whole. A packet the socket does not take is dropped and
// counted (udp is not flow-controlled).
func (s *session) udpPacketPiece(st *tstream, p []byte, last bool) {
	st.last = s.l.now
	if st.pkt == nil && last {
		s.sendPacket(st, p)
		return
	}
	if st.pkt == nil {
		st.pkt = bufpool.Get(mux.MaxUDPPacket)
		st.pktLen = 0
		s.l.g.m.Buffered(mux.MaxUDPPacket)
	}
	st.pktLen += int32(copy((*st.pkt)[st.pktLen:], p))
	if last {
		s.sendPacket(st, (*st.pkt)[:st.pktLen])
		s.releasePacket(st)
	}
}

func (s *session) sendPacket(st *tstream, p []byte) {
	if len(p) == 0 {
		return // an empty DATA (FIN) carries no packet
	}
	g := s.l.g
	g.m.BytesUp(len(p))
	s.up.used += int64(len(p))
	s.up.charge(len(p))
	if _, err := rawio.Write(st.fd, p); err != nil {
		g.m.Dropped(DropTunnelUDP, len(p))
	}
}

// clientFIN is the client's end of a stream: for tcp the member gets a FIN
// once the queued bytes are out; a udp association just ends.
func (s *session) clientFIN(st *tstream) {
	st.up.eof = true
	if s.l.gst == st {
		// The bytes before the FIN go first.
		s.gatherFlush()
		if st.done {
			return
		}
	}
	if st.udp {
		s.emitFIN(st)
		s.endStream(st, StreamNormal, 0, nil)
		return
	}
	if !st.connecting && st.up.empty() {
		s.shutMember(st)
	}
	s.noteDraining(st)
}

// noteDraining counts st in tunnel.draining once both FINs have crossed
// while its client bytes still wait for the member (see tunnel.draining).
func (s *session) noteDraining(st *tstream) {
	if st.up.eof && st.down.eof && !st.done && !st.draining {
		st.draining = true
		s.tun.draining++
	}
}

// shutMember passes the client's FIN on to the member.
func (s *session) shutMember(st *tstream) {
	if st.up.shut {
		return
	}
	st.up.shut = true
	sysShutdown(st.fd, unix.SHUT_WR)
	if st.down.shut {
		s.endStream(st, StreamNormal, 0, nil)
	}
}

// rememberUDP notes a udp stream that ended, so packets still on their way
// on it are not charged to the session window.
func (s *session) rememberUDP(id uint32) {
	t := s.tun
	t.deadUDP[t.deadN%deadUDPMemory] = id
	t.deadN++
}

func (s *session) wasUDP(id uint32) bool {
	for _, d := range s.tun.deadUDP {
		if d == id && id != 0 {
			return true
		}
	}
	return false
}

// Causes of stream ends (logged at debug level with the stream).
var (
	errStreamWindow = errors.New("gateway: tunnel stream window exceeded")
	errStreamReset  = errors.New("gateway: tunnel stream reset by the client")
	errDataAfterFIN = errors.New("gateway: tunnel DATA after FIN")
)
