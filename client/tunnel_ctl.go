package client

import (
	"errors"
	"fmt"

	"github.com/httvps/httvps/codec/mux"
)

// ErrControlOverflow: the control frames waiting for the gateway to read
// passed their bound; the tunnel is closed.
var ErrControlOverflow = errors.New("client: control frames to the gateway over their bound")

// ctlMaxBytes bounds the control frames queued for the gateway while it
// does not read. With WINDOW coalesced per stream and one PING ACK kept,
// the queue holds about one frame per stream; this is far above that.
const ctlMaxBytes = 64 << 10

// windowFrameLen, pingFrameLen: encoded sizes.
const (
	windowFrameLen = mux.HeaderLen + 4
	pingFrameLen   = mux.HeaderLen + 8
)

// ctlQueue holds the control frames for the gateway until the writer (or
// the next OPEN) takes them; guarded by tunSession.ctlMu. WINDOW increments
// add up per stream and only the latest PING ACK is kept, so a gateway that
// floods PINGs or DATA and does not read cannot grow it; RESETs and our
// PING (one out at a time) go in frames.
type ctlQueue struct {
	frames   []byte
	win      map[uint32]uint64
	winOrder []uint32
	ack      [8]byte
	hasAck   bool
	over     bool // the bound was passed: the tunnel is being closed
}

// size is what take would append.
func (q *ctlQueue) size() int {
	n := len(q.frames) + len(q.winOrder)*windowFrameLen
	if q.hasAck {
		n += pingFrameLen
	}
	return n
}

// take appends the queued frames to b and empties the queue: WINDOWs
// first, then the PING ACK, then RESETs and PINGs in their order.
func (q *ctlQueue) take(b []byte) []byte {
	for _, id := range q.winOrder {
		inc := q.win[id]
		for inc > 0 { // never more than MaxWindow in one frame
			k := min(inc, mux.MaxWindow)
			b = mux.AppendWindow(b, id, uint32(k))
			inc -= k
		}
	}
	clear(q.win)
	q.winOrder = q.winOrder[:0]
	if q.hasAck {
		b = mux.AppendPing(b, q.ack, true)
		q.hasAck = false
	}
	b = append(b, q.frames...)
	q.frames = q.frames[:0]
	return b
}

// queueWindow queues a WINDOW increment for stream id (0: the session).
func (s *tunSession) queueWindow(id uint32, inc uint32) {
	s.ctlMu.Lock()
	q := &s.ctl
	if q.win == nil {
		q.win = make(map[uint32]uint64)
	}
	if _, ok := q.win[id]; !ok {
		q.winOrder = append(q.winOrder, id)
	}
	q.win[id] += uint64(inc)
	s.queuedLocked()
}

// queuePingAck queues the answer to the gateway's PING id, replacing one
// not yet sent (the gateway needs the latest only).
func (s *tunSession) queuePingAck(id [8]byte) {
	s.ctlMu.Lock()
	s.ctl.ack, s.ctl.hasAck = id, true
	s.queuedLocked()
}

// queue appends other control frames (built by add: RESET, our PING).
func (s *tunSession) queue(add func([]byte) []byte) {
	s.ctlMu.Lock()
	s.ctl.frames = add(s.ctl.frames)
	s.queuedLocked()
}

// queuedLocked checks the bound, releases ctlMu and wakes the writer. Past
// the bound the tunnel closes, from a goroutine of its own: callers may
// hold a stream's lock, which close takes.
func (s *tunSession) queuedLocked() {
	over := false
	if s.ctl.size() > ctlMaxBytes && !s.ctl.over {
		s.ctl.over, over = true, true
	}
	s.ctlMu.Unlock()
	if over {
		go s.close(fmt.Errorf("%w: %w (%d bytes)", ErrTunnelLost, ErrControlOverflow, ctlMaxBytes))
		return
	}
	select {
	case s.ctlSig <- struct{}{}:
	default:
	}
}
