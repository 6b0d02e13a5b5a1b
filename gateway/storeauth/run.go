package storeauth

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/store"
)

// ErrRunning is returned by a second call to Run.
var ErrRunning = errors.New("storeauth: Run already called")

// Run keeps the gateway's fleet membership until ctx ends: it registers and
// heartbeats, follows the event bus (reconnecting by itself), flushes usage
// and enforces quotas, gives back leases, refreshes pool members and closes
// sessions of expired tokens. When ctx ends it flushes usage a last time,
// gives back leases and deregisters the gateway, so its leases stop
// counting at once. Stop Run after the gateway has drained. The error is
// non-nil only when that last flush failed (the usage is lost).
func (a *Auth) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	// Register first: other gateways purge leases of unregistered ones.
	a.heartbeat(ctx)
	a.refreshMembers(ctx)

	fl := &flusher{a: a, pending: make(map[string]store.Usage)}
	var wg sync.WaitGroup
	wg.Go(func() { a.eventLoop(ctx) })
	wg.Go(func() { a.leaseLoop(ctx) })
	wg.Go(func() { a.creditLoop(ctx) })
	wg.Go(func() { a.heartbeatLoop(ctx) })
	wg.Go(func() { a.memberLoop(ctx) })
	wg.Go(func() { fl.loop(ctx) })
	wg.Wait()

	fctx, cancel := context.WithTimeout(context.Background(), shutdownStoreBudget)
	defer cancel()
	ferr := fl.flush(fctx)
	a.settleLeases(fctx, true)
	if err := a.st.RemoveGateway(fctx, a.cfg.GatewayID); err != nil && !errors.Is(err, store.ErrNotFound) {
		a.log.Warn("deregistering the gateway failed; its leases expire with its heartbeat", "err", err)
	}
	if ferr != nil {
		return fmt.Errorf("storeauth: final usage flush: %w", ferr)
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// heartbeatLoop refreshes the registration every HeartbeatEvery.
func (a *Auth) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(a.cfg.HeartbeatEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.heartbeat(ctx)
			a.queueDeviceReports()
		}
	}
}

func (a *Auth) heartbeat(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	// The handshake rate since the previous heartbeat (hsCount and hsAt
	// are owned by the heartbeat's caller: Run, then heartbeatLoop).
	n, at := a.stats.handshakes(), a.now()
	var rate float64
	if !a.hsAt.IsZero() && at.After(a.hsAt) {
		rate = float64(n-a.hsCount) / at.Sub(a.hsAt).Seconds()
	}
	a.hsCount, a.hsAt = n, at
	err := a.st.Heartbeat(cctx, store.Gateway{
		ID:               a.cfg.GatewayID,
		PublicURL:        a.cfg.PublicURL,
		Version:          a.cfg.Version,
		Sessions:         a.gatewaySessions(),
		Started:          a.started,
		HandshakesPerSec: rate,
	}, heartbeatTTLFactor*a.cfg.HeartbeatEvery)
	if err != nil {
		if ctx.Err() == nil {
			a.storeFailed(err)
		}
		return
	}
	a.storeOK()
}

// eventLoop follows the event bus until ctx ends, subscribing again when
// the subscription ends or cannot be made.
func (a *Auth) eventLoop(ctx context.Context) {
	backoff := 100 * time.Millisecond
	lost := false // events may have been missed since the last subscription
	for ctx.Err() == nil {
		ch, err := a.st.Subscribe(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.storeFailed(err)
			lost = true
			if !sleepCtx(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		if lost {
			a.resync()
		}
		a.stats.subscribed.Store(true)
		for e := range ch {
			a.handle(ctx, e)
		}
		a.stats.subscribed.Store(false)
		lost = true
	}
}

func (a *Auth) handle(ctx context.Context, e store.Event) {
	switch e.Kind {
	case store.EventTokenRevoked:
		a.dropToken(e.TokenID, e.Hash)
		a.closeAccount(e.TokenID)
		// A handshake that read the token just before the revocation may
		// establish its session after this close; close again shortly.
		id := e.TokenID
		time.AfterFunc(revokeRecloseAfter, func() {
			if ctx.Err() == nil {
				a.closeAccount(id)
			}
		})
	case store.EventTokenRotated:
		// The old secret (e.Hash) is forgotten; the sessions opened with
		// it are closed, and the new secret is looked up on first use.
		a.dropToken(e.TokenID, e.Hash)
		a.closeAccount(e.TokenID)
	case store.EventQuotaExceeded:
		// Dropping the entry makes the next handshake read usage again.
		a.dropToken(e.TokenID, e.Hash)
		a.closeQuota(e.TokenID)
	case store.EventTokenChanged:
		// Limits, period, assignments or usage (a reset) changed: the next
		// handshake reads the token and its usage again, live sessions are
		// checked against the new limits now.
		a.dropToken(e.TokenID, e.Hash)
		if c := a.lookupAccount(e.TokenID); c != nil {
			c.gen.Add(1)
			if c.sessions.Load() > 0 {
				a.revalidate(e.TokenID)
			}
		}
	case store.EventMemberChanged:
		kick(a.membersKick)
	case store.EventResync:
		a.resync()
	}
}

// resync expires every cached token and re-reads the tokens of live
// sessions, whose revocation may have been missed.
func (a *Auth) resync() {
	a.expireAll()
	kick(a.membersKick)
	for _, c := range a.snapshotAccounts() {
		if c.sessions.Load() > 0 {
			a.revalidate(c.id)
		}
	}
}

func (a *Auth) revalidate(id string) {
	a.revalMu.Lock()
	a.reval[id] = true
	a.revalMu.Unlock()
	kick(a.revalKick)
}

// memberLoop refreshes pool members and re-reads tokens queued by
// revalidate.
func (a *Auth) memberLoop(ctx context.Context) {
	t := time.NewTicker(memberRefreshEvery)
	defer t.Stop()
	retry := time.NewTicker(housekeepingEvery)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.refreshMembers(ctx)
		case <-a.membersKick:
			a.refreshMembers(ctx)
		case <-a.revalKick:
		case <-retry.C:
		}
		a.revalidateQueued(ctx)
	}
}

func (a *Auth) revalidateQueued(ctx context.Context) {
	a.revalMu.Lock()
	if len(a.reval) == 0 {
		a.revalMu.Unlock()
		return
	}
	ids := slices.Collect(maps.Keys(a.reval))
	clear(a.reval)
	a.revalMu.Unlock()
	for i, id := range ids {
		if a.isDown(a.now().UnixNano()) || !a.revalidateOne(ctx, id) {
			for _, id := range ids[i:] {
				a.revalMu.Lock()
				a.reval[id] = true
				a.revalMu.Unlock()
			}
			return
		}
	}
}

// revalidateOne re-reads a token with live sessions and closes them if it
// is gone, revoked, expired or over quota. False means try again later.
func (a *Auth) revalidateOne(ctx context.Context, id string) bool {
	c := a.lookupAccount(id)
	if c == nil || c.sessions.Load() == 0 {
		return true
	}
	cctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	t, err := a.st.GetToken(cctx, id)
	if errors.Is(err, store.ErrNotFound) {
		a.closeAccount(id)
		return true
	}
	if err != nil {
		a.storeFailed(err)
		return false
	}
	e := newEntry(&t)
	c.quota.Store(e.quota)
	c.expires.Store(e.expires)
	nowT := a.now()
	now := nowT.UnixNano()
	if e.revoked || (e.expires != 0 && now >= e.expires) {
		a.closeAccount(id)
		return true
	}
	if e.quota > 0 {
		u, err := a.st.GetUsage(cctx, id)
		if err != nil {
			a.storeFailed(err)
			return errors.Is(err, store.ErrNotFound)
		}
		c.setStoreUsage(u, nowT)
		if c.total() >= e.quota {
			a.closeLocal(c, now, true)
		}
	}
	return true
}

// memberView is the pool's health as last read.
type memberView struct {
	ver  uint64
	down map[string]bool // members whose last health check failed
}

// cachedRoute is a token's route for one memberView version.
type cachedRoute struct {
	ver uint64
	r   gateway.Route
}

func (a *Auth) refreshMembers(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	ms, err := a.st.ListMembers(cctx)
	if err != nil {
		if ctx.Err() == nil {
			a.storeFailed(err)
		}
		return
	}
	down := make(map[string]bool)
	for _, m := range ms {
		// A member never checked is not known to be down.
		if !m.Health.CheckedAt.IsZero() && !m.Health.Up {
			down[m.ID] = true
		}
	}
	old := a.members.Load()
	if maps.Equal(old.down, down) {
		return
	}
	a.members.Store(&memberView{ver: old.ver + 1, down: down})
}

// route orders the token's assignments: members not marked down first, in
// assignment order, then the down ones (better a dial that may work than
// none). The result is shared by the token's sessions and never modified.
func (a *Auth) route(e *tokenEntry) gateway.Route {
	mv := a.members.Load()
	if cr := e.route.Load(); cr != nil && cr.ver == mv.ver {
		return cr.r
	}
	ups := make([]string, 0, len(e.assignments))
	for _, as := range e.assignments {
		if !mv.down[as.MemberID] {
			ups = append(ups, as.Upstream)
		}
	}
	for _, as := range e.assignments {
		if mv.down[as.MemberID] {
			ups = append(ups, as.Upstream)
		}
	}
	r := gateway.Route{Upstream: ups[0]}
	if len(ups) > 1 {
		r.Fallbacks = ups[1:]
	}
	e.route.Store(&cachedRoute{ver: mv.ver, r: r})
	return r
}

// closeLocal closes a token's sessions on this gateway for quota or
// expiry, at most every recloseEvery while they linger.
func (a *Auth) closeLocal(c *account, now int64, quota bool) {
	if now-c.closedAt.Load() < int64(recloseEvery) {
		return
	}
	c.closedAt.Store(now)
	if quota {
		a.closeQuota(c.id)
	} else {
		a.closeAccount(c.id)
	}
}

// flusher writes usage to the store. Owned by the flush goroutine (and by
// Run after it ends).
type flusher struct {
	a       *Auth
	pending map[string]store.Usage // taken from accounts, not yet in the store
}

func (f *flusher) loop(ctx context.Context) {
	ft := time.NewTicker(f.a.cfg.FlushEvery)
	defer ft.Stop()
	ht := time.NewTicker(housekeepingEvery)
	defer ht.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ft.C:
			f.flush(ctx)
		case <-f.a.flushKick:
			f.flush(ctx)
		case <-ht.C:
			f.a.housekeep(f.a.now().UnixNano())
		}
	}
}

// flush moves local usage to the store, then reads back the totals of the
// tokens it touched and enforces their quotas fleet-wide. On failure the
// deltas stay pending for the next flush.
func (f *flusher) flush(ctx context.Context) error {
	a := f.a
	for _, c := range a.snapshotAccounts() {
		u, d := c.up.Swap(0), c.down.Swap(0)
		if u == 0 && d == 0 {
			continue
		}
		c.inflight.Add(u + d)
		a.tokBytes.add(c.id, u, d)
		p := f.pending[c.id]
		p.Up += u
		p.Down += d
		f.pending[c.id] = p
	}
	if len(f.pending) == 0 {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if err := a.st.AddUsage(cctx, a.now(), f.pending); err != nil {
		a.stats.flushErrors.Add(1)
		a.storeFailed(err)
		return err
	}
	a.storeOK()
	var quotaIDs []string
	gens := make(map[string]uint64)
	for id, u := range f.pending {
		c := a.lookupAccount(id)
		if c == nil {
			continue // cannot happen: accounts with inflight usage are kept
		}
		c.inflight.Add(-u.Total())
		c.storeTotal.Add(u.Total())
		if c.quota.Load() > 0 {
			quotaIDs = append(quotaIDs, id)
			gens[id] = c.gen.Load()
			c.consumedFlushed(u.Total())
		}
	}
	clear(f.pending)
	if len(quotaIDs) == 0 {
		return nil
	}
	usages, err := a.st.GetUsages(cctx, quotaIDs)
	if err != nil {
		a.storeFailed(err) // the local estimate still closes sessions
		return nil
	}
	nowT := a.now()
	now := nowT.UnixNano()
	for id, u := range usages {
		c := a.lookupAccount(id)
		if c == nil || c.gen.Load() != gens[id] {
			continue // changed meanwhile (a reset): the read may be older
		}
		c.setStoreUsage(u, nowT)
		if q := c.quota.Load(); q > 0 && u.At(nowT).Total() >= q {
			a.quotaExceeded(ctx, c, now)
		}
	}
	return nil
}

// quotaExceeded tells the fleet and closes the local sessions.
func (a *Auth) quotaExceeded(ctx context.Context, c *account, now int64) {
	a.closeLocal(c, now, true)
	if now-c.publishedAt.Load() < int64(recloseEvery) {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, storeTimeout)
	err := a.st.Publish(cctx, store.Event{Kind: store.EventQuotaExceeded, TokenID: c.id})
	cancel()
	if err != nil {
		a.storeFailed(err)
		return
	}
	c.publishedAt.Store(now)
	a.stats.published.Add(1)
}

// housekeep closes sessions of tokens that expired or ran over quota by
// the local estimate, and forgets accounts idle for long.
func (a *Auth) housekeep(now int64) {
	var gone, overQuota []string
	a.accMu.Lock()
	for id, c := range a.accounts {
		c.roll(now)
		if c.sessions.Load() > 0 {
			exp, q := c.expires.Load(), c.quota.Load()
			expired := exp != 0 && now >= exp
			if expired {
				gone = append(gone, id)
			} else if q > 0 && c.total() >= q {
				overQuota = append(overQuota, id)
			}
			continue
		}
		if c.idle() && now-c.lastUsed.Load() > int64(accountIdleForGC) {
			delete(a.accounts, id)
		}
	}
	a.accMu.Unlock()
	for i, id := range append(gone, overQuota...) {
		if c := a.lookupAccount(id); c != nil {
			a.closeLocal(c, now, i >= len(gone))
		}
	}
}
