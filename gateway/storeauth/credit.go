package storeauth

// Quota credit (docs/04, "Quotas that hold"): the account of a token with
// a quota is a gateway.Credit. Sessions take credit from the account's pool
// with one atomic operation; the pool is this gateway's slice of the quota,
// leased from the store (store.LeaseQuota) by the credit goroutine, which
// asks for more before the pool runs dry, wakes sessions that waited, gives
// back what lies idle, and ends the token's sessions once the store says
// the quota is used up.

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/store"
)

const (
	// overshootBase and overshootPercent: the bound on what a token may
	// relay beyond its quota when a gateway dies or the store is away
	// (docs/04); the slice a gateway leases at a time and the usage it
	// may leave unflushed follow from it.
	overshootBase    = 1 << 20
	overshootPercent = 1
	minSlice         = 64 << 10
	maxSlice         = 16 << 20
	// creditRetryEvery is how often accounts whose sessions wait are
	// retried while other gateways hold what is left of the quota.
	creditRetryEvery = 100 * time.Millisecond
	// creditIdleFor is how long a pool lies untouched before it goes back
	// to the store, for the other gateways.
	creditIdleFor = 250 * time.Millisecond
)

// overshoot is the budget of a quota (see overshootBase).
func overshoot(quota int64) int64 { return overshootBase + quota/100*overshootPercent }

// sliceFor is what a gateway leases at a time: a quarter of the budget,
// within [minSlice, maxSlice].
func sliceFor(quota int64) int64 { return min(max(overshoot(quota)/4, minSlice), maxSlice) }

// credit is the quota slice state of one account.
type credit struct {
	pool     atomic.Int64 // leased, not yet taken by a session (< 0: sessions owe it)
	consumed atomic.Int64 // flushed to the store, not yet taken off the slice there
	leased   atomic.Bool  // the store may hold a slice for us
	lastTake atomic.Int64 // unix ns of the last take that found credit
	queued   atomic.Bool  // on the credit queue

	mu      sync.Mutex
	waiters map[gateway.CreditWaiter]struct{} // guarded by mu
}

func (cr *credit) idle() bool {
	return cr.pool.Load() == 0 && cr.consumed.Load() == 0 && !cr.queued.Load() && cr.waiting() == 0
}

func (cr *credit) waiting() int {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	return len(cr.waiters)
}

// wake calls every waiter once.
func (cr *credit) wake() {
	cr.mu.Lock()
	w := cr.waiters
	cr.waiters = nil
	cr.mu.Unlock()
	for s := range w {
		s.CreditReady()
	}
}

// unlimited reports whether sessions relay without credit: no quota, or
// the store is down and the slice in hand is spent (the fallback of
// docs/04: relaying as before quotas held, closed after the next flush).
func (c *account) unlimited() bool {
	return c.quota.Load() <= 0 || c.a.storeDown.Load() && c.credit.pool.Load() <= 0
}

// TakeCredit implements gateway.Credit.
func (c *account) TakeCredit(want int64) int64 {
	if c.unlimited() {
		return gateway.UnlimitedCredit
	}
	cr := &c.credit
	for {
		p := cr.pool.Load()
		if want == 0 {
			return max(p, 0)
		}
		if p <= 0 {
			c.needCredit()
			return 0
		}
		g := min(want, p)
		if cr.pool.CompareAndSwap(p, p-g) {
			cr.lastTake.Store(time.Now().UnixNano())
			if p-g < sliceFor(c.quota.Load())/2 {
				c.needCredit() // lease more before it runs dry
			}
			return g
		}
	}
}

// ReturnCredit implements gateway.Credit. What comes back serves the
// sessions that wait for it.
func (c *account) ReturnCredit(n int64) {
	if c.credit.pool.Add(n) > 0 && n > 0 && c.credit.waiting() > 0 {
		c.credit.wake()
	}
}

// WaitCredit implements gateway.Credit.
func (c *account) WaitCredit(w gateway.CreditWaiter) {
	cr := &c.credit
	cr.mu.Lock()
	if cr.waiters == nil {
		cr.waiters = make(map[gateway.CreditWaiter]struct{})
	}
	cr.waiters[w] = struct{}{}
	cr.mu.Unlock()
	// A lease that landed between the take and this wait woke nobody.
	if cr.pool.Load() > 0 || c.unlimited() {
		cr.wake()
		return
	}
	c.needCredit()
}

// The sessions of a token with a device limit are charged to their device
// (devices.go), which takes its token's credit.
var (
	_ gateway.Credit = (*account)(nil)
	_ gateway.Credit = (*device)(nil)
)

// TakeCredit implements gateway.Credit.
func (d *device) TakeCredit(want int64) int64 { return d.acc.TakeCredit(want) }

// ReturnCredit implements gateway.Credit.
func (d *device) ReturnCredit(n int64) { d.acc.ReturnCredit(n) }

// WaitCredit implements gateway.Credit.
func (d *device) WaitCredit(w gateway.CreditWaiter) { d.acc.WaitCredit(w) }

// needCredit queues the account for the credit goroutine.
func (c *account) needCredit() {
	if c.credit.queued.CompareAndSwap(false, true) {
		c.a.cq.push(c)
	}
}

// creditQueue holds accounts with credit work for the credit goroutine.
type creditQueue struct {
	mu   sync.Mutex
	q    []*account // guarded by mu
	kick chan struct{}
}

func (q *creditQueue) push(c *account) {
	q.mu.Lock()
	q.q = append(q.q, c)
	q.mu.Unlock()
	kick(q.kick)
}

func (q *creditQueue) take() []*account {
	q.mu.Lock()
	defer q.mu.Unlock()
	l := q.q
	q.q = nil
	return l
}

// creditLoop leases slices until ctx ends. One goroutine makes every
// LeaseQuota call of this gateway, so an account's calls never overlap.
func (a *Auth) creditLoop(ctx context.Context) {
	retry := time.NewTicker(creditRetryEvery)
	defer retry.Stop()
	idle := time.NewTicker(creditIdleFor)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.cq.kick:
		case <-retry.C:
		case <-idle.C:
			a.returnIdleCredit(ctx, time.Now().UnixNano())
		}
		for _, c := range a.cq.take() {
			c.credit.queued.Store(false)
			if !a.leaseCredit(ctx, c) {
				c.needCredit() // again at the next retry tick
			}
		}
	}
}

// leaseCredit settles one account's slice with the store: what was
// flushed comes off it, and it grows back to a slice when the pool is low.
// False means the account still waits (others hold what is left).
func (a *Auth) leaseCredit(ctx context.Context, c *account) bool {
	cr := &c.credit
	q := c.quota.Load()
	if q <= 0 {
		cr.consumed.Store(0)
		cr.wake()
		return true
	}
	want := max(sliceFor(q)-cr.pool.Load(), 0)
	if cr.pool.Load() >= sliceFor(q)/2 {
		want = 0
	}
	consumed := cr.consumed.Swap(0)
	if want == 0 && consumed == 0 {
		return true
	}
	if a.storeDown.Load() && a.isDown(a.now().UnixNano()) {
		cr.consumed.Add(consumed)
		cr.wake() // the fallback: they relay without credit
		return true
	}
	cctx, cancel := context.WithTimeout(ctx, storeTimeout)
	l, err := a.st.LeaseQuota(cctx, c.id, a.cfg.GatewayID, a.now(), q, consumed, want)
	cancel()
	switch {
	case errors.Is(err, store.ErrNotFound):
		cr.wake() // deleted: revalidation closes its sessions
		return true
	case err != nil:
		cr.consumed.Add(consumed)
		if ctx.Err() == nil {
			a.storeFailed(err)
		}
		cr.wake()
		return true
	}
	a.storeOK()
	a.stats.quotaLeases.Add(1)
	if l.Granted > 0 {
		cr.leased.Store(true)
		cr.pool.Add(l.Granted)
		cr.wake()
		return true
	}
	if cr.pool.Load() > 0 || cr.waiting() == 0 {
		return true
	}
	if l.Exhausted(q) {
		c.storeTotal.Store(l.Used)
		a.quotaExceeded(ctx, c, a.now().UnixNano())
		cr.wake()
		return true
	}
	if c.up.Load()+c.down.Load() > 0 {
		// What our sessions used is still in our slice: flush it now, so
		// the store can tell whether the quota is used up.
		kick(a.flushKick)
	}
	return false
}

// consumedFlushed books usage the flusher wrote for a token with a quota:
// it comes off the slice in the store at the next lease call.
func (c *account) consumedFlushed(n int64) {
	if c.credit.leased.Load() {
		c.credit.consumed.Add(n)
		c.needCredit()
	}
}

// returnIdleCredit gives back the pools no session took from lately, so
// the other gateways can lease them.
func (a *Auth) returnIdleCredit(ctx context.Context, now int64) {
	if a.storeDown.Load() {
		return
	}
	var idle []*account
	a.accMu.Lock()
	for _, c := range a.accounts {
		cr := &c.credit
		if c.quota.Load() > 0 && cr.pool.Load() > 0 && now-cr.lastTake.Load() >= int64(creditIdleFor) {
			idle = append(idle, c)
		}
	}
	a.accMu.Unlock()
	for _, c := range idle {
		cr := &c.credit
		q := c.quota.Load()
		p := cr.pool.Swap(0)
		if p <= 0 {
			cr.pool.Add(p)
			continue
		}
		consumed := cr.consumed.Swap(0)
		cctx, cancel := context.WithTimeout(ctx, storeTimeout)
		_, err := a.st.LeaseQuota(cctx, c.id, a.cfg.GatewayID, a.now(), q, consumed, -p)
		cancel()
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			cr.pool.Add(p)
			cr.consumed.Add(consumed)
			a.storeFailed(err)
			return
		}
	}
}
