package gateway

import "testing"

// TestPhaseTransitions lists every (phase, event) pair: the phase a session
// moves to, or "-" where the event cannot happen in that phase (the phase
// then stays). docs/04-gateway-design.md draws the same table.
func TestPhaseTransitions(t *testing.T) {
	const no = phase(255) // the event is refused
	// Columns: evConnected, evClientClose, evCloseSent, evFail, evLinger, evEnd.
	table := map[phase][numPhaseEvents]phase{
		phConnecting: {phOpen, no, no, no, phLingering, phDead},
		phOpen:       {no, phClientDone, phServerDone, phFailing, no, phDead},
		phClientDone: {no, no, phClosing, phFailing, no, phDead},
		phServerDone: {no, phClosing, no, phFailing, no, phDead},
		phClosing:    {no, no, no, phFailing, phLingering, phDead},
		phFailing:    {no, no, no, phFailing, no, phDead},
		phLingering:  {no, no, no, no, no, phDead},
		phDead:       {no, no, no, no, no, no},
	}
	if len(table) != int(numPhases) {
		t.Fatalf("table has %d phases, want %d", len(table), numPhases)
	}
	for from, row := range table {
		for e := phaseEvent(0); e < numPhaseEvents; e++ {
			got, ok := next(from, e)
			want := row[e]
			if want == no {
				if ok || got != from {
					t.Errorf("%v on %v: moved to %v (ok %v), want refused", from, e, got, ok)
				}
				continue
			}
			if !ok || got != want {
				t.Errorf("%v on %v: %v (ok %v), want %v", from, e, got, ok, want)
			}
		}
	}
}

// TestPhaseQuestions checks what the relay reads off each phase.
func TestPhaseQuestions(t *testing.T) {
	cases := []struct {
		p                                           phase
		clientClosed, closeSent, discarding, linger bool
	}{
		{phConnecting, false, false, false, false},
		{phOpen, false, false, false, false},
		{phClientDone, true, false, false, false},
		{phServerDone, false, true, false, false},
		{phClosing, true, true, false, false},
		{phFailing, true, true, true, false},
		{phLingering, true, true, true, true},
		{phDead, true, true, true, false},
	}
	for _, c := range cases {
		s := &session{ph: c.p}
		if s.clientClosed() != c.clientClosed || s.closeSent() != c.closeSent ||
			s.discarding() != c.discarding || s.lingering() != c.linger || s.dead() != (c.p == phDead) {
			t.Errorf("%v: clientClosed %v closeSent %v discarding %v lingering %v dead %v",
				c.p, s.clientClosed(), s.closeSent(), s.discarding(), s.lingering(), s.dead())
		}
	}
}

// TestStepCountsLingering: the loop's count of lingering sessions (done for
// drain) follows the phase, whichever way a session gets there or leaves.
func TestStepCountsLingering(t *testing.T) {
	l := &loop{}
	a, b := &session{l: l}, &session{l: l}
	a.step(evLinger) // connect failed: the decoy
	b.step(evConnected)
	b.step(evClientClose)
	b.step(evCloseSent)
	b.step(evLinger)
	if l.lingering != 2 || a.ph != phLingering || b.ph != phLingering {
		t.Fatalf("lingering %d, phases %v %v", l.lingering, a.ph, b.ph)
	}
	a.step(evFail) // refused: stays lingering
	a.step(evEnd)
	b.step(evEnd)
	b.step(evEnd)
	if l.lingering != 0 || a.ph != phDead || b.ph != phDead {
		t.Fatalf("lingering %d after both ended, phases %v %v", l.lingering, a.ph, b.ph)
	}
}
