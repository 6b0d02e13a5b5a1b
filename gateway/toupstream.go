package gateway

// Client → upstream: a read from the client socket (opened by
// tlsrecord.go on TLS), its WebSocket frames parsed in place (codec), the
// payload gathered into one writev to the upstream, and what the upstream
// does not take queued in the up stream (stream.go).

import (
	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/httvps/httvps/bufpool"
	"github.com/httvps/httvps/codec"
	"github.com/httvps/httvps/internal/rawio"
)

// maxIOV bounds the pieces gathered for one writev to the upstream.
const maxIOV = 64

// readClient reads one chunk from the client and relays the frames in it.
func (s *session) readClient() {
	if s.tls != nil {
		s.readClientTLS()
		return
	}
	l := s.l
	size := s.clientReadSize()
	if size == 0 {
		return // out of credit: setInterest leaves the client out of epoll
	}
	n, err := rawio.Read(int(s.cfd), l.scratch[:size])
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
			if s.kind != PathTCP {
				if s.tun != nil {
					if !s.tunInput(ev.Payload) {
						return nil, false
					}
				} else if !s.udpPiece(ev) {
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
	s.up.charge(payload)
	if !s.up.empty() {
		s.l.g.m.Buffered(s.up.push(iov...))
		return true
	}
	n, err := writev(int(s.ufd), iov, s.l.iovec[:])
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
	s.up.charge(len(p))
	_, err := rawio.Write(int(s.ufd), p)
	if err != nil {
		// A full socket buffer or an ICMP error from an earlier datagram:
		// UDP has no backpressure, so the datagram is dropped and counted.
		s.l.g.m.Dropped(DropUDPToUpstream, len(p))
	}
}

func (s *session) flushUp() {
	if s.up.empty() || s.ufd < 0 {
		return
	}
	n, err := s.up.flush(int(s.ufd))
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
