package gateway

// phase is where a session is in its life. It changes only in
// session.step, through next; docs/04-gateway-design.md draws the diagram.
//
// The client → upstream stream ends with the client's close frame (or a
// failure); the upstream → client stream ends with our close frame. A
// session is half-closed while only one of them has ended.
type phase uint8

const (
	phConnecting phase = iota // upstream connect in flight; the 101 is held back
	phOpen                    // relaying both ways
	phClientDone              // the client's close frame came: relaying upstream → client only
	phServerDone              // our close frame is out: relaying client → upstream only
	phClosing                 // both closes exchanged: our last bytes are flushing
	phFailing                 // our error close is out: client input is dropped until it closes
	phLingering               // all sent: FIN, then client input dropped until it closes
	phDead                    // both sockets closed, everything released
	numPhases
)

var phaseNames = [numPhases]string{"connecting", "open", "client_done", "server_done", "closing", "failing", "lingering", "dead"}

func (p phase) String() string { return nameOf(p, phaseNames[:]) }

// phaseEvent is what moves a session from one phase to the next.
type phaseEvent uint8

const (
	evConnected   phaseEvent = iota // the upstream connect completed; the 101 goes out
	evClientClose                   // the client's close frame arrived
	evCloseSent                     // our close frame is queued
	evFail                          // a failure: our close is out, the upstream is closed
	evLinger                        // everything is sent (or the decoy replaced the 101)
	evEnd                           // the session is finished
	numPhaseEvents
)

var phaseEventNames = [numPhaseEvents]string{"connected", "client_close", "close_sent", "fail", "linger", "end"}

func (e phaseEvent) String() string { return nameOf(e, phaseEventNames[:]) }

// next is the phase a session in p moves to on e; ok is false when e cannot
// happen in p (the phase then stays as it is).
func next(p phase, e phaseEvent) (to phase, ok bool) {
	if e == evEnd {
		return phDead, p != phDead
	}
	switch p {
	case phConnecting:
		switch e {
		case evConnected:
			return phOpen, true
		case evLinger: // no upstream: the decoy instead of the 101
			return phLingering, true
		}
	case phOpen:
		switch e {
		case evClientClose:
			return phClientDone, true
		case evCloseSent:
			return phServerDone, true
		case evFail:
			return phFailing, true
		}
	case phClientDone:
		switch e {
		case evCloseSent:
			return phClosing, true
		case evFail:
			return phFailing, true
		}
	case phServerDone:
		switch e {
		case evClientClose:
			return phClosing, true
		case evFail:
			return phFailing, true
		}
	case phClosing:
		switch e {
		case evFail:
			return phFailing, true
		case evLinger:
			return phLingering, true
		}
	case phFailing:
		if e == evFail {
			return phFailing, true
		}
	}
	return p, false
}

// step is the one place a session's phase changes. It keeps the loop's count
// of lingering sessions (they are done as far as drain is concerned).
func (s *session) step(e phaseEvent) {
	to, ok := next(s.ph, e)
	if !ok {
		return
	}
	if s.ph == phLingering {
		s.l.lingering--
	}
	if to == phLingering {
		s.l.lingering++
	}
	s.ph = to
}

// Questions the relay asks of the phase.

func (s *session) dead() bool { return s.ph == phDead }

// clientClosed: the client's stream has ended (its close frame came, or its
// input is ignored).
func (s *session) clientClosed() bool {
	return s.ph == phClientDone || s.ph >= phClosing
}

// closeSent: our close frame is queued; no frame may follow it.
func (s *session) closeSent() bool { return s.ph >= phServerDone }

// discarding: client input is read and dropped.
func (s *session) discarding() bool { return s.ph >= phFailing }

func (s *session) lingering() bool { return s.ph == phLingering }
