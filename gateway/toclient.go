package gateway

// Upstream → client: a read from the upstream socket lands behind room for
// the frame header, is framed in place (and sealed on TLS, tlsrecord.go),
// and written to the client; what the client does not take is queued in the
// down stream (stream.go), which pauses reading the upstream.

import (
	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/httvps/httvps/codec"
	"github.com/httvps/httvps/internal/rawio"
)

// maxServerHeader is the largest unmasked server frame header; reads from
// the upstream land this far into the loop's scratch buffer so the header can
// be written in front of the payload without a copy.
const maxServerHeader = 10

// readUpstream reads one chunk (tcp) or datagram (udp) and frames it for the
// client.
func (s *session) readUpstream() {
	l := s.l
	size := l.g.upChunk(s.kind)
	if s.kind == PathTCP {
		if !s.credited(&s.down) {
			return // setInterest leaves the upstream out of epoll
		}
		size = min(s.down.readSize(size), int(s.down.credit))
	}
	buf := l.scratch[maxServerHeader : maxServerHeader+size]
	n, err := rawio.Read(int(s.ufd), buf)
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
	s.down.charge(n)
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
			s.finish(EndProtocol, err) // logged there, once
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
	n, err := rawio.Write(int(s.cfd), p)
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
		s.finish(EndProtocol, err) // logged there, once
		return
	}
	s.writeRaw(out)
}

func (s *session) flushDown() {
	if s.down.empty() {
		return
	}
	n, err := s.down.flush(int(s.cfd))
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
		s.drainParked()
	}
	s.maybeDone()
}

// drainParked reads an upstream that hung up while paused, without epoll
// (a hung-up socket never blocks: it has data or returns EOF), while the
// client takes it and there is credit.
func (s *session) drainParked() {
	for i := 0; i < 64 && s.ufd >= 0 && s.down.empty() && !s.dead() && !s.closeSent() && s.credited(&s.down); i++ {
		s.readUpstream()
	}
}
