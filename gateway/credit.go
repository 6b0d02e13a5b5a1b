package gateway

// Credit: how a quota holds at any speed (docs/04, "Quotas that hold").
// Each direction of a session relays only out of credit it took from its
// account in chunks; when the account has none at hand, that direction's
// source leaves epoll (like a paused reader) until the account wakes the
// session or closes it. Sessions of accounts without a quota get unlimited
// credit once and pay one predictable branch per read.

import "math"

// Credit is implemented by an Account with a data quota. Its methods are
// called from relay loops and must be cheap and safe for concurrent use.
type Credit interface {
	// TakeCredit grants up to want bytes a session may relay (want > 0),
	// or reports what is at hand without granting it (want 0). It returns
	// 0 when nothing is at hand now (WaitCredit then says when to ask
	// again), or UnlimitedCredit or more when the account has no quota.
	TakeCredit(want int64) int64
	// ReturnCredit gives back credit a session took and did not use (at
	// its end, or while it idles). n < 0 is a debt: bytes relayed beyond
	// what was granted (a datagram, or a TLS record carried over from an
	// earlier read, cannot be split).
	ReturnCredit(n int64)
	// WaitCredit asks for w.CreditReady to be called once, from any
	// goroutine, when credit may be at hand again. Waiting twice with the
	// same w is one wait.
	WaitCredit(w CreditWaiter)
}

// CreditWaiter is woken by a Credit account (see WaitCredit).
type CreditWaiter interface {
	CreditReady()
}

// UnlimitedCredit is what TakeCredit returns (or more) for an account
// without a quota.
const UnlimitedCredit int64 = 1 << 62

const (
	// creditChunk is what a direction takes from its account at a time:
	// large enough that taking costs nothing measurable (one atomic
	// operation per chunk), small enough that what sessions hold and do
	// not use is little.
	creditChunk = 128 << 10
	// creditUnlimited is a stream's credit when its account has no quota;
	// reads do not count it down.
	creditUnlimited = math.MaxInt32
	// creditIdle is how long a session relays nothing before its credit
	// goes back to the account, so a quiet session does not sit on what a
	// busy one (here or on another gateway) could use.
	creditIdle = int64(1e9)
)

// charge counts n relayed bytes against the stream's credit.
func (st *stream) charge(n int) {
	if st.credit != creditUnlimited {
		st.credit -= int32(n)
	}
}

// creditAtHand reports whether st may be read: it has credit, or its
// account has some at hand (taken by the read: credited). With none the
// session waits for the account's CreditReady, and the caller leaves the
// source out of epoll. Interest asks this, not credited, so a direction
// that is not read (the upload of a download) takes no credit.
func (s *session) creditAtHand(st *stream) bool {
	return st.credit > 0 || s.creditAtHandSlow(st)
}

func (s *session) creditAtHandSlow(st *stream) bool {
	ca, ok := s.acct.(Credit)
	if !ok {
		st.credit = creditUnlimited
		return true
	}
	switch n := ca.TakeCredit(0); {
	case n >= UnlimitedCredit:
		st.credit = creditUnlimited
		return true
	case n > 0 || s.other(st).credit > 0:
		return true
	}
	s.reportUsage() // the account decides on what it has heard of
	ca.WaitCredit(s)
	return false
}

// other is the session's other direction.
func (s *session) other(st *stream) *stream {
	if st == &s.up {
		return &s.down
	}
	return &s.up
}

// credited reports whether st may relay now, taking a chunk from the
// account when its credit is spent. With none at hand the session waits
// for the account's CreditReady; the caller leaves the source out of epoll.
func (s *session) credited(st *stream) bool {
	return st.credit > 0 || s.takeCredit(st)
}

// takeCredit is credited's way when st's credit is spent.
func (s *session) takeCredit(st *stream) bool {
	ca, ok := s.acct.(Credit)
	if !ok {
		st.credit = creditUnlimited
		return true
	}
	// Usage goes with each take, so what the account has not heard of is
	// at most a chunk (a gateway that dies loses no more of it).
	s.reportUsage()
	// The chunk also covers a debt (credit < 0).
	got := ca.TakeCredit(creditChunk - int64(st.credit))
	switch {
	case got >= UnlimitedCredit:
		st.credit = creditUnlimited
		return true
	case got > 0:
		st.credit += int32(got)
	}
	if o := s.other(st); st.credit <= 0 && o.credit > 0 {
		// The account has none: the other direction's credit serves this
		// one (an echo's last bytes must not starve behind its upload).
		st.credit += o.credit
		o.credit = 0
	}
	if st.credit > 0 {
		return true
	}
	ca.WaitCredit(s)
	return false
}

// CreditReady implements CreditWaiter: the session looks again on its loop.
func (s *session) CreditReady() {
	s.l.g.cm.CreditWait()
	s.l.post(s.creditResume)
}

// creditResume reads again what waited for credit.
func (s *session) creditResume() {
	if s.dead() || s.ph == phConnecting {
		return
	}
	if s.tun != nil {
		s.tunDone()
		return
	}
	if s.down.parked {
		s.drainParked()
		if s.dead() {
			return
		}
	}
	s.setInterest()
}

// relaysUp reports whether client input is still relayed (and so waits
// for credit): not after a failure or a revocation, whose close handshake
// must go on whatever the credit.
func (s *session) relaysUp() bool { return s.end == EndNormal && !s.discarding() }

// clientReadSize is how much the next client read may take: the read
// chunk (or less toward a slow receiver), and no more than the credit
// while client input is relayed. 0: no read now.
func (s *session) clientReadSize() int {
	n := s.up.readSize(s.l.g.chunk)
	if s.relaysUp() {
		if !s.credited(&s.up) {
			return 0
		}
		n = min(n, int(s.up.credit))
	}
	return n
}

// creditTick runs on the sweep for a session of a Credit account: a quiet
// session gives its credit back, and one holding unlimited credit drops it
// once its account has a quota (set on the live token).
func (s *session) creditTick(now int64) {
	ca, ok := s.acct.(Credit)
	if !ok {
		return
	}
	if s.up.credit == creditUnlimited || s.down.credit == creditUnlimited {
		if ca.TakeCredit(0) < UnlimitedCredit {
			for _, st := range [2]*stream{&s.up, &s.down} {
				if st.credit == creditUnlimited {
					st.credit = 0
				}
			}
		}
		return
	}
	if now-s.last > creditIdle {
		s.returnCredit(ca)
	}
}

// returnCredit gives the account back what the session holds (or owes).
func (s *session) returnCredit(ca Credit) {
	for _, st := range [2]*stream{&s.up, &s.down} {
		if st.credit != 0 && st.credit != creditUnlimited {
			ca.ReturnCredit(int64(st.credit))
			st.credit = 0
		}
	}
}
