package gateway

import (
	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/httvps/httvps/bufpool"
	"github.com/httvps/httvps/codec"
)

// maxServerHeader is the largest unmasked server frame header; reads from
// the upstream land this far into the loop's scratch buffer so the header can
// be written in front of the payload without a copy.
const maxServerHeader = 10

// maxIOV bounds the pieces gathered for one writev to the upstream.
const maxIOV = 64

// closeWait is how long the gateway waits for a close handshake (or for a
// queued close frame to be read) before it drops the connection.
const closeWait = 5e9 // ns

// session is one established WebSocket session and its upstream socket.
// Every field is owned by the session's loop goroutine.
type session struct {
	l    *loop
	kind PathKind
	cfd  int // client socket
	ufd  int // upstream socket; -1 once closed

	cev, uev uint32 // registered epoll interest

	rd   codec.Reader
	tls  *tlsSession // nil on a plaintext listener
	acct Account     // nil when unaccounted
	// Payload bytes not yet reported to acct.
	usedUp, usedDown int64
	up               outq // bytes for the upstream (tcp)
	down             outq // framed bytes for the client

	msg    *[]byte // udp: message being assembled across frames
	msgLen int

	cliClosed bool // the client's close frame arrived or its input is ignored
	discard   bool // read and drop client input (after a failure close)
	closeSent bool // our close frame is queued
	upEOF     bool // the upstream sent FIN (tcp)
	upShut    bool // we sent FIN to the upstream (tcp)
	upParked  bool // upstream fd removed from epoll while paused after HUP
	cliShut   bool // we sent FIN to the client after a failure close
	cliEOF    bool // the client's EOF or close_notify came after its close frame
	lingering bool // both ends done; waiting for the client to close
	dead      bool // finished
	started   bool // the 101 was sent (counted as a session)
	// Read sizes follow each receiver's rate (see readSize): upMark /
	// downMark is when the upstream / client queue last drained (loop
	// clock), upBytes / downBytes the bytes read for that side since. At
	// the next drain their ratio is the rate the receiver really took
	// (its socket buffer is full at both drains), and upSmall / downSmall
	// say it was under slowRate: reads feeding it then take minRead instead
	// of the read chunk, so a slow receiver pins little in its queue while
	// a fast one gets large, cheap reads.
	upMark     int64
	downMark   int64
	upBytes    int64
	downBytes  int64
	upSmall    bool
	downSmall  bool
	end        End   // why the session is ending (set with the close frame)
	last       int64 // last activity, loop clock
	deadline   int64 // when a pending close must have completed; 0 = none
	eofCloseAt int64 // upstream EOF: send close 1000 from then on

	pend *pending // until the upstream is connected
	// ctlAt is the client's control-frame budget as a token bucket kept in
	// one number (the "theoretical arrival time" of GCRA): the loop-clock
	// time at which the bucket would be full again. See controlFrame.
	ctlAt int64

	prev, next *session // loop's live list
}

// handle processes the epoll events of one of the session's fds.
func (s *session) handle(fd int, ev uint32) {
	if s.pend != nil {
		s.handleConnect(fd, ev)
		return
	}
	if fd == s.cfd {
		if ev&evERR != 0 || (ev&evHUP != 0 && ev&evIn == 0) {
			if s.lingering || s.discard && s.end != EndNormal {
				// The client closed first (nothing was lost), or reset
				// after our failure close: the failure is the cause.
				s.finish(s.end)
			} else {
				s.finish(EndClientGone)
			}
			return
		}
		if ev&evOut != 0 {
			s.flushDown()
		}
		if ev&(evIn|evRDHUP|evHUP) != 0 && !s.dead {
			s.readClient()
		}
	} else {
		if ev&evERR != 0 && s.kind == PathTCP {
			s.upstreamFailed()
			return
		}
		if ev&evOut != 0 {
			s.flushUp()
		}
		if s.dead {
			return
		}
		if ev&(evIn|evRDHUP|evHUP|evERR) != 0 {
			if s.down.empty() || s.kind == PathUDP && ev&evERR != 0 {
				s.readUpstream()
			} else if ev&evHUP != 0 {
				// Paused with a hang-up pending: level-triggered HUP
				// would spin, so leave epoll until the client drains.
				unix.EpollCtl(s.l.epfd, unix.EPOLL_CTL_DEL, s.ufd, nil)
				s.upParked = true
				s.uev = 0
			}
		}
	}
	if !s.dead {
		s.setInterest()
	}
}

// setInterest registers what each fd should wait for: the source of a
// direction is read only while that direction's queue is empty.
func (s *session) setInterest() {
	l := s.l
	if s.pend != nil {
		return
	}
	var c uint32
	switch {
	case s.discard:
		c |= evIn | evRDHUP
	case !s.cliClosed:
		if s.up.empty() && s.down.len() < l.g.cfg.BufferCap {
			c |= evIn | evRDHUP
		}
	case !s.cliEOF:
		// After its close frame the client's input is read and dropped
		// (unread input would turn our close into a reset), and its EOF
		// is noticed.
		c |= evIn | evRDHUP
	}
	if !s.down.empty() {
		c |= evOut
	}
	if c != s.cev {
		l.modify(s.cfd, c)
		s.cev = c
	}
	if s.ufd < 0 || s.upParked {
		return
	}
	var u uint32
	if !s.upEOF && !s.closeSent && s.down.empty() {
		u |= evIn | evRDHUP
	}
	if !s.up.empty() {
		u |= evOut
	}
	if u != s.uev {
		l.modify(s.ufd, u)
		s.uev = u
	}
}

// readClient reads one chunk from the client and relays the frames in it.
func (s *session) readClient() {
	if s.tls != nil {
		s.readClientTLS()
		return
	}
	l := s.l
	n, err := sysRead(s.cfd, l.scratch[:readSize(l.g.chunk, s.upSmall)])
	if n <= 0 {
		s.clientEOF(err)
		return
	}
	if !s.clientBytes(n) {
		return
	}
	if iov, ok := s.consume(l.scratch[:n], l.iov[:0]); ok {
		s.flushPieces(iov)
	}
}

// pong is the answer due to the pings of one client read. RFC 6455 §5.5.3
// lets an endpoint answer only the most recent of several pings, so a read
// that brought many of them costs one frame: one write, one TLS record. It
// lives on the reading goroutine's stack, not in the session.
type pong struct {
	due bool
	n   uint8
	b   [codec.MaxControlPayload]byte
}

// answer sends the pong a read left due, if any.
func (s *session) answer(pg *pong) {
	if pg.due && !s.dead {
		pg.due = false
		s.sendFrame(ws.OpPong, pg.b[:pg.n])
	}
}

// Control-frame budget defaults (Config.MaxControlRate, MaxControlBurst).
// Clients ping every few seconds at most (or never: browsers do not); a
// sustained 10 per second with 100 at once is far beyond any of them.
const (
	defaultMaxControlRate  = 10
	defaultMaxControlBurst = 100
)

// controlBudget is the control-frame token bucket of cfg as GCRA
// parameters: every is the time one frame's token takes to come back (0:
// no limit), span the time a full bucket takes to fill.
func (c *Config) controlBudget() (every, span int64) {
	rate, burst := c.MaxControlRate, c.MaxControlBurst
	switch {
	case rate < 0:
		return 0, 0
	case rate == 0:
		rate = defaultMaxControlRate
	}
	if burst <= 0 {
		burst = defaultMaxControlBurst
	}
	every = max(int64(1e9)/int64(rate), 1)
	return every, every * int64(burst)
}

// controlFrame books a ping or pong from the client against its budget and
// reports whether the frame was within it. The bucket is kept as ctlAt, the
// time at which it would be full again: a frame takes one token (ctlAt moves
// one period later, from now at the earliest) and is over budget when that
// would put ctlAt more than a full bucket's time ahead of now.
func (s *session) controlFrame() bool {
	every, span := s.l.g.cfg.controlBudget()
	if every == 0 {
		return true
	}
	now := s.l.now
	at := max(s.ctlAt, now) + every
	if at-now > span {
		return false
	}
	s.ctlAt = at
	return true
}

// clientBytes books n bytes read from the client; false means they are to
// be dropped (the session is failing).
func (s *session) clientBytes(n int) bool {
	s.last = s.l.now
	if s.discard {
		return false
	}
	s.l.g.m.BytesUp(n)
	s.upBytes += int64(n)
	return true
}

// clientEOF handles a read that returned no bytes: EOF (or close_notify),
// an error, or nothing to read yet.
func (s *session) clientEOF(err error) {
	if err == unix.EAGAIN || err == unix.EINTR {
		return
	}
	if s.discard || s.closeSent {
		s.finish(s.end)
		return
	}
	if s.cliClosed {
		// EOF (or close_notify) after the client's close frame: either it
		// only half-closed and still reads what the upstream sends, or it
		// closed its socket. Stop reading and send a ping: a closed socket
		// answers it with a reset, which ends the session; a half-closed one
		// keeps receiving.
		s.cliEOF = true
		s.sendFrame(ws.OpPing, nil)
		return
	}
	s.finish(EndClientGone)
}

// consume handles the frames of one read's plaintext p (see frames) and
// answers its last ping. The caller sends the pieces gathered in iov.
func (s *session) consume(p []byte, iov [][]byte) ([][]byte, bool) {
	var pg pong
	iov, ok := s.frames(p, iov, &pg)
	if ok {
		s.answer(&pg)
		ok = !s.dead
	}
	return iov, ok
}

// frames parses client frames from plaintext p (unmasking in place) and
// handles them; stream payload pieces are gathered in iov for one writev,
// and the latest ping's answer is left due in pg for the caller to send
// once the whole read is handled. It reports false if the session ended or
// failed (iov is then spent).
func (s *session) frames(p []byte, iov [][]byte, pg *pong) ([][]byte, bool) {
	for len(p) > 0 && !s.cliClosed {
		ev, k, err := s.rd.Next(p)
		p = p[k:]
		if err != nil {
			s.flushPieces(iov)
			s.fail(codec.CloseCode(err), EndProtocol)
			return nil, false
		}
		switch ev.Kind {
		case codec.EventData:
			if s.kind == PathUDP {
				if !s.udpPiece(ev) {
					return nil, false
				}
				continue
			}
			if len(ev.Payload) == 0 {
				continue
			}
			iov = append(iov, ev.Payload)
			if len(iov) == maxIOV {
				if !s.flushPieces(iov) {
					return nil, false
				}
				iov = iov[:0]
			}
		case codec.EventControl:
			switch ev.Op {
			case ws.OpPing, ws.OpPong:
				if !s.controlFrame() {
					s.flushPieces(iov)
					s.fail(ws.StatusPolicyViolation, EndFlood)
					return nil, false
				}
				if ev.Op == ws.OpPing {
					pg.due = true
					pg.n = uint8(copy(pg.b[:], ev.Payload))
				}
			case ws.OpClose:
				if !s.flushPieces(iov) {
					return nil, false
				}
				iov = iov[:0]
				s.answer(pg)
				s.onClientClose(ev.Payload)
			}
		}
		if s.dead {
			return nil, false
		}
	}
	return iov, true
}

// flushPieces sends payload pieces to the upstream, queueing what the socket
// does not take. It reports false if the session ended.
func (s *session) flushPieces(iov [][]byte) bool {
	if len(iov) == 0 || s.dead {
		return !s.dead
	}
	if s.acct != nil {
		for _, p := range iov {
			s.usedUp += int64(len(p))
		}
	}
	if !s.up.empty() {
		s.l.g.m.Buffered(s.up.push(iov...))
		return true
	}
	n, err := writev(s.ufd, iov, s.l.iovec[:])
	if n < 0 {
		n = 0
	}
	if err != nil && err != unix.EAGAIN {
		s.upstreamFailed()
		return false
	}
	for _, p := range iov {
		if n >= len(p) {
			n -= len(p)
			continue
		}
		s.l.g.m.Buffered(s.up.push(p[n:]))
		n = 0
	}
	return true
}

// udpPiece adds a piece of a client message to the datagram being built and
// sends it when the message ends. It reports false if the session ended.
func (s *session) udpPiece(ev codec.Event) bool {
	if s.msg == nil && ev.MessageEnd {
		s.sendDatagram(ev.Payload)
		return true
	}
	if s.msg == nil {
		s.msg = bufpool.Get(maxUDPPayload)
		s.msgLen = 0
	}
	if s.msgLen+len(ev.Payload) > maxUDPPayload {
		s.fail(ws.StatusMessageTooBig, EndProtocol)
		return false
	}
	s.msgLen += copy((*s.msg)[s.msgLen:], ev.Payload)
	if ev.MessageEnd {
		s.sendDatagram((*s.msg)[:s.msgLen])
		bufpool.Put(s.msg)
		s.msg = nil
	}
	return true
}

func (s *session) sendDatagram(p []byte) {
	s.usedUp += int64(len(p))
	_, err := sysWrite(s.ufd, p)
	if err != nil {
		// A full socket buffer or an ICMP error from an earlier datagram:
		// UDP has no backpressure, so the datagram is dropped and counted.
		s.l.g.m.Dropped(DropUDPToUpstream, len(p))
	}
}

// readUpstream reads one chunk (tcp) or datagram (udp) and frames it for the
// client.
func (s *session) readUpstream() {
	l := s.l
	size := l.g.upChunk(s.kind)
	if s.kind == PathTCP {
		size = readSize(size, s.downSmall)
	}
	buf := l.scratch[maxServerHeader : maxServerHeader+size]
	n, err := sysRead(s.ufd, buf)
	if err != nil {
		if err == unix.EAGAIN || err == unix.EINTR {
			return
		}
		if s.kind == PathUDP {
			// ECONNREFUSED and friends from an ICMP error; reading cleared it.
			return
		}
		s.upstreamFailed()
		return
	}
	if n == 0 && s.kind == PathTCP {
		s.upEOF = true
		s.eofCloseAt = l.now + l.g.eofGrace
		if s.upParked || s.upShut {
			s.closeUpstream()
		}
		s.eofClose()
		s.maybeDone()
		return
	}
	s.last = l.now
	l.g.m.BytesDown(n)
	s.usedDown += int64(n)
	s.downBytes += int64(n)
	h := codec.ServerHeaderLen(n)
	start := maxServerHeader - h
	codec.PutServerHeader(l.scratch[start:], ws.OpBinary, n)
	s.writeDown(l.scratch[start : maxServerHeader+n])
}

// writeDown sends WebSocket bytes to the client (sealed into TLS records
// on a TLS session), queueing what the socket does not take, which pauses
// the upstream until the queue drains.
func (s *session) writeDown(p []byte) {
	if s.tls != nil {
		out, err := s.tls.seal(s.l, p)
		if err != nil {
			s.l.g.log.Error("tls seal", "err", err)
			s.finish(EndProtocol)
			return
		}
		p = out
	}
	s.writeRaw(p)
}

// writeRaw sends bytes as they are to the client socket.
func (s *session) writeRaw(p []byte) {
	if !s.down.empty() {
		s.l.g.m.Buffered(s.down.push(p))
		return
	}
	n, err := sysWrite(s.cfd, p)
	if err != nil && err != unix.EAGAIN && err != unix.EINTR {
		s.finish(EndClientGone)
		return
	}
	if n < 0 {
		n = 0
	}
	if n < len(p) {
		s.l.g.m.Buffered(s.down.push(p[n:]))
	}
}

// eofClose passes the upstream's end of stream on as close 1000 once every
// byte before it is out. Unless the client has closed already, it waits up
// to EOFGrace for the client to close first: v2ray-plugin clients drop data
// they still buffer when the server's close arrives first, and a client that
// reads to the end closes by itself.
func (s *session) eofClose() {
	if !s.upEOF || s.closeSent || s.dead || !s.down.empty() {
		return
	}
	if s.cliClosed || s.l.now >= s.eofCloseAt {
		s.sendClose(ws.StatusNormalClosure, EndNormal)
	}
}

// sendFrame sends a small control frame (at most 125 bytes of payload).
func (s *session) sendFrame(op ws.OpCode, payload []byte) {
	if s.closeSent {
		return
	}
	var b [maxServerHeader + 125]byte
	s.writeControl(codec.AppendServerFrame(b[:0], op, payload))
}

// writeControl is writeDown for a control frame built on the caller's
// stack; on TLS it is sealed from a copy, so the frame does not escape to
// the heap (a ping answered costs no allocation).
func (s *session) writeControl(frame []byte) {
	if s.tls == nil {
		s.writeRaw(frame)
		return
	}
	out, err := s.tls.sealControl(s.l, frame)
	if err != nil {
		s.l.g.log.Error("tls seal", "err", err)
		s.finish(EndProtocol)
		return
	}
	s.writeRaw(out)
}

// sendClose queues our close frame; after it no data frame may follow.
func (s *session) sendClose(code ws.StatusCode, end End) {
	if s.closeSent || s.dead {
		return
	}
	var b [16]byte
	s.writeControl(codec.AppendClose(b[:0], code, ""))
	s.closeSent = true
	s.end = end
	if s.deadline == 0 && !s.cliClosed {
		// The client's close (or EOF) must follow, but it may still be
		// sending its last data (end of stream in one direction only), so
		// only an error close gets a deadline here.
		if end != EndNormal {
			s.deadline = s.l.now + closeWait
		}
	}
}

// fail closes the session after a client-side failure: send the close code,
// stop relaying, and drop whatever the client still sends until it closes.
func (s *session) fail(code ws.StatusCode, end End) {
	s.sendClose(code, end)
	s.stopRelaying()
}

// stopRelaying ends a session whose close (or alert) is on its way to the
// client: the upstream is closed, client input is read and dropped, and the
// session ends when the client closes or closeWait has passed.
func (s *session) stopRelaying() {
	s.cliClosed = true
	s.discard = true
	s.deadline = s.l.now + closeWait
	s.closeUpstream()
	s.maybeDone()
}

// onClientClose handles the client's close frame: code 1000 (or none) is the
// end of the client's stream; anything else aborts the session.
func (s *session) onClientClose(payload []byte) {
	code, _, err := codec.ParseClose(payload)
	if err != nil {
		s.fail(codec.CloseCode(err), EndProtocol)
		return
	}
	s.cliClosed = true
	s.eofClose()
	normal := code == ws.StatusNormalClosure || code == ws.StatusNoStatusRcvd
	if s.kind == PathUDP || !normal {
		if !normal && s.end == EndNormal {
			s.end = EndClientGone
		}
		s.sendClose(ws.StatusNormalClosure, s.end)
		s.closeUpstream()
		s.maybeDone()
		return
	}
	if s.up.empty() {
		s.shutUpstream()
	}
	s.maybeDone()
}

// shutUpstream passes the client's end of stream on as a FIN.
func (s *session) shutUpstream() {
	if s.upShut || s.ufd < 0 {
		return
	}
	s.upShut = true
	unix.Shutdown(s.ufd, unix.SHUT_WR)
	if s.upEOF {
		s.closeUpstream()
	}
}

func (s *session) closeUpstream() {
	if s.ufd < 0 {
		return
	}
	s.l.g.m.Buffered(-s.up.release())
	if s.upParked {
		s.l.fds[s.ufd] = nil
		unix.Close(s.ufd)
	} else {
		s.l.forget(s.ufd)
	}
	s.ufd = -1
	s.upParked = false
	s.uev = 0
}

func (s *session) upstreamFailed() {
	s.closeUpstream()
	if s.closeSent {
		s.finish(EndUpstream)
		return
	}
	s.sendClose(ws.StatusInternalServerError, EndUpstream)
	s.stopRelaying()
}

func (s *session) flushDown() {
	if s.down.empty() {
		return
	}
	n, err := s.down.flush(s.cfd)
	s.l.g.m.Buffered(-n)
	if err != nil {
		s.finish(EndClientGone)
		return
	}
	if n > 0 {
		s.last = s.l.now
	}
	if !s.down.empty() {
		return
	}
	s.downSmall, s.downMark, s.downBytes = slowReceiver(s.downBytes, s.downMark, s.l.now), s.l.now, 0
	s.eofClose()
	if s.upParked && !s.dead {
		// The upstream hung up while paused; drain it without epoll
		// (a hung-up socket never blocks: it has data or returns EOF).
		for i := 0; i < 64 && s.ufd >= 0 && s.down.empty() && !s.dead && !s.closeSent; i++ {
			s.readUpstream()
		}
	}
	s.maybeDone()
}

func (s *session) flushUp() {
	if s.up.empty() || s.ufd < 0 {
		return
	}
	n, err := s.up.flush(s.ufd)
	s.l.g.m.Buffered(-n)
	if err != nil {
		s.upstreamFailed()
		return
	}
	if s.up.empty() {
		s.upSmall, s.upMark, s.upBytes = slowReceiver(s.upBytes, s.upMark, s.l.now), s.l.now, 0
		if s.cliClosed && !s.discard {
			s.shutUpstream()
		}
	}
	s.maybeDone()
}

// maybeDone finishes the session once both ends are done and our last bytes
// reached the client's socket.
func (s *session) maybeDone() {
	if s.dead || !s.down.empty() || !s.closeSent || !s.cliClosed {
		return
	}
	if s.discard {
		// Our failure close is out; send FIN after it so the client reads
		// it, and close when the client closes (or at the deadline).
		if !s.cliShut {
			s.cliShut = true
			unix.Shutdown(s.cfd, unix.SHUT_WR)
		}
		return
	}
	if !s.up.empty() {
		return
	}
	s.linger()
}

// lingerWait bounds the lingering close.
const lingerWait = 2e9 // ns

// linger ends a session whose both directions are done. Closing a socket
// with unread input makes the kernel send a reset and drop what is still
// queued for the client, so: close_notify (TLS), FIN after our last bytes,
// then read and drop until the client closes, or lingerWait.
func (s *session) linger() {
	if s.tls != nil {
		if out, err := s.tls.alert(s.l, alertCloseNotify); err == nil {
			s.writeRaw(out)
		}
		if s.dead {
			return
		}
	}
	s.closeUpstream()
	s.lingering = true
	s.l.lingering++
	s.l.reportDrained()
	s.discard = true
	s.deadline = s.l.now + lingerWait
	s.maybeDone()
}

// goAway asks the client to leave (close 1001) for drain or idle timeout.
func (s *session) goAway(end End) {
	if s.dead {
		return
	}
	if s.pend != nil {
		s.finish(end)
		return
	}
	if s.closeSent {
		if s.deadline == 0 {
			s.deadline = s.l.now + closeWait
		}
		return
	}
	s.sendClose(ws.StatusGoingAway, end)
	s.deadline = s.l.now + closeWait
	if s.cliClosed {
		s.closeUpstream()
		s.maybeDone()
	} else {
		s.setInterest()
	}
}

// reportUsage hands the bytes counted since the last report to the account.
func (s *session) reportUsage() {
	if s.usedUp != 0 || s.usedDown != 0 {
		s.acct.AddUsage(s.usedUp, s.usedDown)
		s.usedUp, s.usedDown = 0, 0
	}
}

// revoke ends the session because its account was closed: close 1008
// (policy violation), then the usual close handshake under a deadline.
func (s *session) revoke() {
	if s.dead || s.closeSent {
		return
	}
	if s.pend != nil {
		s.finish(EndRevoked)
		return
	}
	s.sendClose(ws.StatusPolicyViolation, EndRevoked)
	s.deadline = s.l.now + closeWait
	s.closeUpstream()
	if s.cliClosed {
		s.maybeDone()
	} else {
		s.setInterest()
	}
}

// tick runs the session's timers, from the loop's sweep.
func (s *session) tick(now int64) {
	if s.acct != nil {
		s.reportUsage()
	}
	if s.upEOF && !s.closeSent {
		s.eofClose()
		s.maybeDone()
		if s.dead {
			return
		}
	}
	if s.pend != nil {
		if now > s.deadline {
			s.connectFailed() // connect timeout
		}
		return
	}
	if s.deadline != 0 && now > s.deadline {
		if s.end == EndNormal && !s.lingering {
			s.end = EndSlowClient
		}
		s.finish(s.end)
		return
	}
	idle := s.l.g.idle[s.kind]
	if idle > 0 && now-s.last > idle {
		s.goAway(EndIdle)
		return
	}
	if s.tls != nil {
		s.tls.parkIdle(s.l.g, now, s.last)
	}
}

// finish closes both sockets and frees everything the session holds.
func (s *session) finish(end End) {
	if s.dead {
		return
	}
	s.dead = true
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
	s.closeUpstream()
	l.forget(s.cfd)
	s.cfd = -1
	if s.lingering {
		l.lingering--
	}
	l.unlink(s)
	if s.acct != nil {
		s.reportUsage()
		s.acct.Release()
		s.acct = nil
	}
	if s.started {
		l.g.m.SessionEnd(s.kind, end)
	}
	l.g.active.Add(-1)
}
