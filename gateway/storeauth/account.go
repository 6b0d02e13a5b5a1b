package storeauth

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/httvps/httvps/store"
)

// account is one token's local state, shared by all its sessions on this
// gateway; it is the gateway.Account of those sessions. AddUsage and Release
// are called from relay loops and only touch atomics (Release may also take
// the lease queue's mutex for an append).
type account struct {
	a  *Auth
	id string

	up, down   atomic.Int64  // usage not yet taken by a flush
	inflight   atomic.Int64  // taken by a flush, not yet confirmed by the store
	storeTotal atomic.Int64  // the store's total of the current period when last read, plus our confirmed flushes since
	periodEnd  atomic.Int64  // unix ns when storeTotal's period ends (roll); 0: no period, or not known yet
	gen        atomic.Uint64 // changes on events about the token, so a flush's stale read is not applied

	quota   atomic.Int64 // from the last lookup; 0 = unlimited
	expires atomic.Int64 // unix ns; 0 = never

	sessions  atomic.Int64 // admitted and not yet released on this gateway
	unleased  atomic.Int64 // admitted sessions holding no store lease yet
	toRelease atomic.Int64 // store leases to give back
	queued    atomic.Bool  // on the lease queue

	devMu   sync.Mutex
	devices map[string]*device // by key (devices.go); guarded by devMu

	lastUsed    atomic.Int64 // unix ns of the last handshake
	closedAt    atomic.Int64 // unix ns of the last local close for quota or expiry
	publishedAt atomic.Int64 // unix ns of the last quota-exceeded event sent

	credit credit // the slice of the quota this gateway holds (credit.go)
}

// Key implements gateway.Account: the token ID.
func (c *account) Key() string { return c.id }

// AddUsage implements gateway.Account. Usage of a token with a quota is
// flushed early once it reaches half its overshoot budget, so a gateway
// that dies loses no more than that (docs/04, "Quotas that hold").
func (c *account) AddUsage(up, down int64) {
	var u, d int64
	if up != 0 {
		u = c.up.Add(up)
	}
	if down != 0 {
		d = c.down.Add(down)
	}
	if q := c.quota.Load(); q > 0 && u+d > 0 && c.up.Load()+c.down.Load() > overshoot(q)/2 {
		kick(c.a.flushKick)
	}
}

// Release implements gateway.Account. A session admitted without a lease
// just gives back its local slot; otherwise the lease is returned to the
// store in the background.
func (c *account) Release() {
	c.sessions.Add(-1)
	if c.claimUnleased() {
		return
	}
	c.toRelease.Add(1)
	c.a.lq.push(c)
}

// claimUnleased takes one unleased session, if there is one.
func (c *account) claimUnleased() bool {
	for {
		u := c.unleased.Load()
		if u <= 0 {
			return false
		}
		if c.unleased.CompareAndSwap(u, u-1) {
			return true
		}
	}
}

// total is the best local estimate of the token's usage fleet-wide.
func (c *account) total() int64 {
	return c.storeTotal.Load() + c.up.Load() + c.down.Load() + c.inflight.Load()
}

// setStoreUsage takes the store's usage as read at now: the period's
// total, and when that period ends. A period that ended before now counts
// nothing (the store rolls it over at its next write); when the next one
// ends is learnt from the next read.
func (c *account) setStoreUsage(u store.Usage, now time.Time) {
	cur := u.At(now)
	var end int64
	if !cur.Until.IsZero() {
		end = cur.Until.UnixNano()
	}
	c.periodEnd.Store(end)
	c.storeTotal.Store(cur.Total())
}

// roll starts the local view of a new period once the current one ended:
// the store's total is zero again (usage not yet flushed stays counted;
// the store puts it in the period of its flush).
func (c *account) roll(now int64) {
	if end := c.periodEnd.Load(); end != 0 && now >= end && c.periodEnd.CompareAndSwap(end, 0) {
		c.storeTotal.Store(0)
	}
}

// idle reports whether the account holds nothing that is not in the store.
func (c *account) idle() bool {
	return c.sessions.Load() == 0 && c.up.Load() == 0 && c.down.Load() == 0 &&
		c.inflight.Load() == 0 && c.unleased.Load() == 0 && c.toRelease.Load() == 0 && !c.queued.Load() &&
		!c.hasDevices() && c.credit.idle()
}

// leaseQueue holds accounts with lease work for the lease goroutine.
type leaseQueue struct {
	mu   sync.Mutex
	q    []*account // guarded by mu
	kick chan struct{}
}

func (q *leaseQueue) push(c *account) {
	if !c.queued.CompareAndSwap(false, true) {
		return
	}
	q.mu.Lock()
	q.q = append(q.q, c)
	q.mu.Unlock()
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

func (q *leaseQueue) take() []*account {
	q.mu.Lock()
	defer q.mu.Unlock()
	l := q.q
	q.q = nil
	return l
}

func (q *leaseQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.q)
}

// leaseLoop gives back and takes leases until ctx ends. One goroutine does
// all lease calls, so an account's acquire and release never overlap.
func (a *Auth) leaseLoop(ctx context.Context) {
	t := time.NewTicker(housekeepingEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.lq.kick:
		case <-t.C:
		}
		a.settleLeases(ctx, false)
	}
}

// settleLeases works through the queue once. Accounts that fail stay
// queued for the next tick. With force it tries even while the store is
// thought to be down (the final pass at shutdown).
func (a *Auth) settleLeases(ctx context.Context, force bool) {
	var retry []*account
	for _, c := range a.lq.take() {
		c.queued.Store(false)
		if (!force && a.isDown(a.now().UnixNano())) || !a.settle(ctx, c) {
			retry = append(retry, c)
		}
	}
	if len(retry) > 0 {
		a.lq.mu.Lock()
		for _, c := range retry {
			if c.queued.CompareAndSwap(false, true) {
				a.lq.q = append(a.lq.q, c)
			}
		}
		a.lq.mu.Unlock()
	}
}

// settle brings one account's store leases in line with its sessions.
func (a *Auth) settle(ctx context.Context, c *account) bool {
	// A lease to give back and a live session without one cancel out: the
	// session keeps the lease.
	for c.toRelease.Load() > 0 && c.claimUnleased() {
		c.toRelease.Add(-1)
	}
	for c.toRelease.Load() > 0 {
		cctx, cancel := context.WithTimeout(ctx, storeTimeout)
		err := a.st.ReleaseSession(cctx, c.id, a.cfg.GatewayID)
		cancel()
		if err != nil {
			a.storeFailed(err)
			return false
		}
		c.toRelease.Add(-1)
	}
	for c.claimUnleased() {
		cctx, cancel := context.WithTimeout(ctx, storeTimeout)
		// max 0: the session is already admitted; this only makes the
		// fleet-wide count right.
		_, err := a.st.AcquireSession(cctx, c.id, a.cfg.GatewayID, 0)
		cancel()
		if err != nil {
			c.unleased.Add(1)
			a.storeFailed(err)
			return false
		}
		a.storeOK()
	}
	return a.settleDevices(ctx, c)
}
