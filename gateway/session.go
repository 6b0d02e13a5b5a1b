package gateway

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

// maxServerHeader is the largest unmasked server frame header; reads from
// the upstream land this far into the loop's scratch buffer so the header can
// be written in front of the payload without a copy.
const maxServerHeader = 10

// maxIOV bounds the pieces gathered for one writev to the upstream.
const maxIOV = 64

// closeWait is how long the gateway waits for a close handshake (or for a
// queued close frame to be read) before it drops the connection.
const closeWait = 5e9 // ns

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
	cfd     int   // client socket
	ufd     int   // upstream socket; -1 once closed

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
	// ctlAt is the client's control-frame budget as a token bucket kept in
	// one number (the "theoretical arrival time" of GCRA): the loop-clock
	// time at which the bucket would be full again. See controlFrame.
	ctlAt int64

	prev, next *session // loop's live list
}

// handle processes the epoll events of one of the session's fds.
func (s *session) handle(fd int, ev uint32) {
	if s.hand != nil {
		s.handleConnect(fd, ev)
		return
	}
	if fd == s.cfd {
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
	} else {
		if ev&evERR != 0 && s.kind == PathTCP {
			s.upstreamFailed(socketError(s.ufd))
			return
		}
		if ev&evOut != 0 {
			s.flushUp()
		}
		if s.dead() {
			return
		}
		if ev&(evIn|evRDHUP|evHUP|evERR) != 0 {
			if s.down.empty() || s.kind == PathUDP && ev&evERR != 0 {
				s.readUpstream()
			} else if ev&evHUP != 0 {
				// Paused with a hang-up pending: level-triggered HUP
				// would spin, so leave epoll until the client drains.
				unix.EpollCtl(s.l.epfd, unix.EPOLL_CTL_DEL, s.ufd, nil)
				s.down.parked = true
				s.uev = 0
			}
		}
	}
	if !s.dead() {
		s.setInterest()
	}
}

// setInterest registers what each fd should wait for: the source of a
// direction is read only while that direction's queue is empty.
func (s *session) setInterest() {
	l := s.l
	if s.hand != nil {
		return
	}
	var c uint32
	switch {
	case s.discarding():
		c |= evIn | evRDHUP
	case !s.clientClosed():
		if s.up.empty() && s.down.len() < l.g.cfg.BufferCap {
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
		l.modify(s.cfd, c)
		s.cev = c
	}
	if s.ufd < 0 || s.down.parked {
		return
	}
	var u uint32
	if !s.down.eof && !s.closeSent() && s.down.empty() {
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
	n, err := sysRead(s.cfd, l.scratch[:s.up.readSize(l.g.chunk)])
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
	if pg.due && !s.dead() {
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
	if s.discarding() {
		return false
	}
	s.up.took(n)
	return true
}

// clientEOF handles a read that returned no bytes: EOF (or close_notify),
// an error, or nothing to read yet.
func (s *session) clientEOF(err error) {
	if err == unix.EAGAIN || err == unix.EINTR {
		return
	}
	if s.discarding() || s.closeSent() {
		s.finish(s.end, nil)
		return
	}
	if s.clientClosed() {
		// EOF (or close_notify) after the client's close frame: either it
		// only half-closed and still reads what the upstream sends, or it
		// closed its socket. Stop reading and send a ping: a closed socket
		// answers it with a reset, which ends the session; a half-closed one
		// keeps receiving.
		s.up.eof = true
		s.sendFrame(ws.OpPing, nil)
		return
	}
	if err == nil {
		err = errClientEOF
	}
	s.finish(EndClientGone, err)
}

// consume handles the frames of one read's plaintext p (see frames) and
// answers its last ping. The caller sends the pieces gathered in iov.
func (s *session) consume(p []byte, iov [][]byte) ([][]byte, bool) {
	var pg pong
	iov, ok := s.frames(p, iov, &pg)
	if ok {
		s.answer(&pg)
		ok = !s.dead()
	}
	return iov, ok
}

// frames parses client frames from plaintext p (unmasking in place) and
// handles them; stream payload pieces are gathered in iov for one writev,
// and the latest ping's answer is left due in pg for the caller to send
// once the whole read is handled. It reports false if the session ended or
// failed (iov is then spent).
func (s *session) frames(p []byte, iov [][]byte, pg *pong) ([][]byte, bool) {
	for len(p) > 0 && !s.clientClosed() {
		ev, k, err := s.rd.Next(p)
		p = p[k:]
		if err != nil {
			s.flushPieces(iov)
			s.fail(codec.CloseCode(err), EndProtocol, err)
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
					s.fail(ws.StatusPolicyViolation, EndFlood, errControlFlood)
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
		if s.dead() {
			return nil, false
		}
	}
	return iov, true
}

// flushPieces sends payload pieces to the upstream, queueing what the socket
// does not take. It reports false if the session ended.
func (s *session) flushPieces(iov [][]byte) bool {
	if len(iov) == 0 || s.dead() {
		return !s.dead()
	}
	payload := 0
	for _, p := range iov {
		payload += len(p)
	}
	s.l.g.m.BytesUp(payload)
	s.up.used += int64(payload)
	if !s.up.empty() {
		s.l.g.m.Buffered(s.up.push(iov...))
		return true
	}
	n, err := writev(s.ufd, iov, s.l.iovec[:])
	if n < 0 {
		n = 0
	}
	if err != nil && err != unix.EAGAIN {
		s.upstreamFailed(err)
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
	if int(s.msgLen)+len(ev.Payload) > maxUDPPayload {
		s.fail(ws.StatusMessageTooBig, EndProtocol, errDatagramTooBig)
		return false
	}
	s.msgLen += int32(copy((*s.msg)[s.msgLen:], ev.Payload))
	if ev.MessageEnd {
		s.sendDatagram((*s.msg)[:s.msgLen])
		bufpool.Put(s.msg)
		s.msg = nil
	}
	return true
}

func (s *session) sendDatagram(p []byte) {
	s.l.g.m.BytesUp(len(p))
	s.up.used += int64(len(p))
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
		size = s.down.readSize(size)
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
		s.upstreamFailed(err)
		return
	}
	if n == 0 && s.kind == PathTCP {
		s.down.eof = true
		s.eofCloseAt = l.now + l.g.eofGrace
		if s.down.parked || s.up.shut {
			s.closeUpstream()
		}
		s.eofClose()
		s.maybeDone()
		return
	}
	s.last = l.now
	l.g.m.BytesDown(n)
	s.down.used += int64(n)
	s.down.took(n)
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
			s.finish(EndProtocol, err)
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
		s.finish(EndClientGone, err)
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
	if !s.down.eof || s.closeSent() || s.dead() || !s.down.empty() {
		return
	}
	if s.clientClosed() || s.l.now >= s.eofCloseAt {
		s.sendClose(ws.StatusNormalClosure, EndNormal, nil)
	}
}

// sendFrame sends a small control frame (at most 125 bytes of payload).
func (s *session) sendFrame(op ws.OpCode, payload []byte) {
	if s.closeSent() {
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
		s.finish(EndProtocol, err)
		return
	}
	s.writeRaw(out)
}

// sendClose queues our close frame; after it no data frame may follow. end
// and cause are what the session will end with (see finish).
func (s *session) sendClose(code ws.StatusCode, end End, cause error) {
	if s.closeSent() || s.dead() {
		return
	}
	var b [16]byte
	s.writeControl(codec.AppendClose(b[:0], code, ""))
	s.step(evCloseSent)
	s.end, s.cause = end, cause
	if s.deadline == 0 && !s.clientClosed() {
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
func (s *session) fail(code ws.StatusCode, end End, cause error) {
	s.sendClose(code, end, cause)
	s.stopRelaying()
}

// stopRelaying ends a session whose close (or alert) is on its way to the
// client: the upstream is closed, client input is read and dropped, and the
// session ends when the client closes or closeWait has passed.
func (s *session) stopRelaying() {
	s.step(evFail)
	s.deadline = s.l.now + closeWait
	s.closeUpstream()
	s.maybeDone()
}

// onClientClose handles the client's close frame: code 1000 (or none) is the
// end of the client's stream; anything else aborts the session.
func (s *session) onClientClose(payload []byte) {
	code, _, err := codec.ParseClose(payload)
	if err != nil {
		s.fail(codec.CloseCode(err), EndProtocol, err)
		return
	}
	s.step(evClientClose)
	s.eofClose()
	normal := code == ws.StatusNormalClosure || code == ws.StatusNoStatusRcvd
	if s.kind == PathUDP || !normal {
		if !normal && s.end == EndNormal {
			s.end, s.cause = EndClientGone, closeCodeError(code)
		}
		s.sendClose(ws.StatusNormalClosure, s.end, s.cause)
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
	if s.up.shut || s.ufd < 0 {
		return
	}
	s.up.shut = true
	unix.Shutdown(s.ufd, unix.SHUT_WR)
	if s.down.eof {
		s.closeUpstream()
	}
}

func (s *session) closeUpstream() {
	if s.ufd < 0 {
		return
	}
	s.l.g.m.Buffered(-s.up.release())
	if s.down.parked {
		s.l.fds[s.ufd] = nil
		unix.Close(s.ufd)
	} else {
		s.l.forget(s.ufd)
	}
	s.ufd = -1
	s.down.parked = false
	s.uev = 0
}

// upstreamFailed ends the session after the upstream socket failed with err.
func (s *session) upstreamFailed(err error) {
	s.closeUpstream()
	if s.closeSent() {
		s.finish(EndUpstream, err)
		return
	}
	s.sendClose(ws.StatusInternalServerError, EndUpstream, err)
	s.stopRelaying()
}

func (s *session) flushDown() {
	if s.down.empty() {
		return
	}
	n, err := s.down.flush(s.cfd)
	s.l.g.m.Buffered(-n)
	if err != nil {
		s.finish(EndClientGone, err)
		return
	}
	if n > 0 {
		s.last = s.l.now
	}
	if !s.down.empty() {
		return
	}
	s.down.drained(s.l.now)
	s.eofClose()
	if s.down.parked && !s.dead() {
		// The upstream hung up while paused; drain it without epoll
		// (a hung-up socket never blocks: it has data or returns EOF).
		for i := 0; i < 64 && s.ufd >= 0 && s.down.empty() && !s.dead() && !s.closeSent(); i++ {
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
		s.upstreamFailed(err)
		return
	}
	if s.up.empty() {
		s.up.drained(s.l.now)
		if s.clientClosed() && !s.discarding() {
			s.shutUpstream()
		}
	}
	s.maybeDone()
}

// maybeDone finishes the session once both ends are done and our last bytes
// reached the client's socket.
func (s *session) maybeDone() {
	if s.dead() || !s.down.empty() || !s.closeSent() || !s.clientClosed() {
		return
	}
	if s.discarding() {
		// Our failure close is out; send FIN after it so the client reads
		// it, and close when the client closes (or at the deadline).
		if !s.down.shut {
			s.down.shut = true
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
		if s.dead() {
			return
		}
	}
	s.closeUpstream()
	s.step(evLinger)
	s.l.reportDrained()
	s.deadline = s.l.now + lingerWait
	s.maybeDone()
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

// revoke ends the session because its account was closed: close 1008
// (policy violation), then the usual close handshake under a deadline.
func (s *session) revoke() {
	if s.dead() || s.closeSent() {
		return
	}
	if s.ph == phConnecting {
		s.finish(EndRevoked, errRevoked)
		return
	}
	s.sendClose(ws.StatusPolicyViolation, EndRevoked, errRevoked)
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
	s.closeUpstream()
	l.forget(s.cfd)
	s.cfd = -1
	l.unlink(s)
	if s.acct != nil {
		s.reportUsage()
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
	l.g.active.Add(-1)
}
