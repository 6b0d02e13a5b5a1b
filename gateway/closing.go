package gateway

// Ending a session's directions: our close frame, the client's close frame,
// FIN each way, failure closes, and the lingering close that ends in finish.

import (
	"time"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/httvps/httvps/codec"
)

// closeWait is how long the gateway waits for a close handshake (or for a
// queued close frame to be read) before it drops the connection.
const closeWait = 5e9 // ns

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

// sendClose queues our close frame; after it no data frame may follow. end
// and cause are what the session will end with (see finish).
func (s *session) sendClose(code ws.StatusCode, end End, cause error) {
	if s.closeSent() || s.dead() {
		return
	}
	if s.tun != nil {
		// The tunnel's frames so far go before the close (nothing after).
		if s.tunFlush(); s.dead() {
			return
		}
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
	if s.kind != PathTCP || !normal {
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
	sysShutdown(int(s.ufd), unix.SHUT_WR)
	if s.down.eof {
		s.closeUpstream()
	}
}

func (s *session) closeUpstream() {
	if s.tun != nil {
		s.tunEndStreams()
	}
	if s.ufd < 0 {
		return
	}
	s.l.g.m.Buffered(-s.up.release())
	if s.down.parked {
		s.l.fds[s.ufd] = nil
		sysClose(int(s.ufd))
	} else {
		s.l.forget(int(s.ufd))
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
			sysShutdown(int(s.cfd), unix.SHUT_WR)
		}
		return
	}
	if !s.up.empty() {
		return
	}
	s.linger()
}

// lingerTime bounds every lingering close: a session's (linger), the
// handshake's after the decoy (handshake.lingerClose) and a relay loop's
// after the decoy (connectFailed). The three differ only in who owns the
// socket: netpoll's timer for the handshake, the loop's deadline after.
const lingerTime = 2 * time.Second

// linger ends a session whose both directions are done. Closing a socket
// with unread input makes the kernel send a reset and drop what is still
// queued for the client, so: close_notify (TLS), FIN after our last bytes,
// then read and drop until the client closes, or lingerTime.
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
	s.deadline = s.l.now + int64(lingerTime)
	s.maybeDone()
}
