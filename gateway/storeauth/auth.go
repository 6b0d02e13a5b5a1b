// Package storeauth is the gateway's Authenticator over the shared store:
// tokens are looked up by hash on a cache miss only, usage is batched,
// sessions are leased fleet-wide, and revocations, quota and membership
// changes arrive on the store's event bus. It also keeps the gateway's
// registration alive. The trade-offs when the store is down are described
// in docs/04-gateway-design.md ("Store-backed authentication").
package storeauth

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/store"
)

// Config configures an Auth. Zero values mean the documented defaults.
type Config struct {
	// GatewayID names this gateway in the store (registrations, leases). It
	// must be unique per process start; "" means store.NewID().
	GatewayID string
	// PublicURL is the wss://host:port clients are given for this gateway.
	PublicURL string
	// Version is the binary's version, registered with each heartbeat.
	Version string
	// CacheTTL is how long a looked-up token is trusted without asking the
	// store again. Events drop entries sooner. 0 means 30s.
	CacheTTL time.Duration
	// NegativeTTL is how long an unknown token hash is denied without
	// asking the store again. 0 means 5s.
	NegativeTTL time.Duration
	// FlushEvery is how often usage is written to the store and checked
	// against quotas. 0 means 2s; at most 5s.
	FlushEvery time.Duration
	// HeartbeatEvery is how often the registration is refreshed; it lives
	// for three times as long, and so do the leases of a gateway that died.
	// 0 means 5s.
	HeartbeatEvery time.Duration
	// CacheSize bounds cached tokens, NegativeSize cached unknown hashes.
	// 0 means 100000 each.
	CacheSize    int
	NegativeSize int
	// Logger receives store outages and recoveries. Nil means slog.Default().
	Logger *slog.Logger
	// DeviceGrace is how long a device of a token with a device limit
	// keeps counting after its last session ended (devices.go). 0 means
	// 2m.
	DeviceGrace time.Duration
	// Now is the clock of expiry, cache lifetimes, usage periods and the
	// time usage is recorded at (nil: time.Now). Tests move it to cross a
	// period without waiting for it.
	Now func() time.Time
	// MetricsPerToken, when positive, keeps per-token traffic series
	// (WriteTokenSeries) for at most this many tokens; the traffic of
	// tokens past the cap is counted as token="other". 0: off.
	MetricsPerToken int
}

const (
	defaultCacheTTL     = 30 * time.Second
	defaultNegativeTTL  = 5 * time.Second
	defaultFlushEvery   = 2 * time.Second
	maxFlushEvery       = 5 * time.Second
	defaultHeartbeat    = 5 * time.Second
	defaultCacheSize    = 100000
	heartbeatTTLFactor  = 3
	storeTimeout        = time.Second // one store call on the handshake path
	breakerOpen         = time.Second // after a failure, skip the store this long
	memberRefreshEvery  = 5 * time.Second
	housekeepingEvery   = time.Second
	revokeRecloseAfter  = 2 * time.Second // catches sessions admitted during a revocation
	recloseEvery        = 5 * time.Second // repeat a local close while sessions remain
	accountIdleForGC    = 2 * time.Minute
	shutdownStoreBudget = 3 * time.Second
)

// ErrConfig is returned by New for an invalid Config.
var ErrConfig = errors.New("storeauth: invalid config")

// Gateway is what Auth needs of the gateway it serves (*gateway.Gateway).
type Gateway interface {
	// CloseAccount ends every live session of the token ID (close 1008).
	CloseAccount(key string)
	// Sessions is the number of established sessions, for heartbeats.
	Sessions() int
}

// Auth is a gateway.Authenticator backed by a store.Store.
type Auth struct {
	tokBytes tokenBytes // per-token series (tokenbytes.go); guarded by its mu
	st       store.Store
	cfg      Config
	log      *slog.Logger
	started  time.Time
	// hsCount and hsAt are the handshake count at the last heartbeat and
	// when it was taken. Owned by the heartbeat's caller (Run, then
	// heartbeatLoop).
	hsCount uint64
	hsAt    time.Time
	gwMu    sync.RWMutex // held (read) while calling into gw, so Attach(nil) waits for calls in flight
	gw      Gateway      // guarded by gwMu
	running atomic.Bool

	tokens *ttlCache[*tokenEntry]
	neg    *ttlCache[struct{}]
	// gen changes on every invalidation, so a lookup that raced an event
	// does not put its (maybe stale) answer back into the cache.
	gen atomic.Uint64

	sfMu sync.Mutex
	sf   map[hashKey]*lookupCall // guarded by sfMu

	accMu    sync.Mutex
	accounts map[string]*account // guarded by accMu

	members atomic.Pointer[memberView]

	// downUntil (unix ns) is set when a store call fails; until then the
	// handshake path does not wait for the store.
	downUntil atomic.Int64
	storeDown atomic.Bool // for logging transitions once

	lq leaseQueue
	cq creditQueue

	// kicks to the background goroutines (buffered 1, never block).
	flushKick   chan struct{}
	membersKick chan struct{}
	revalKick   chan struct{}
	revalMu     sync.Mutex
	reval       map[string]bool // token IDs to re-read; guarded by revalMu

	stats counters
}

// New returns an Auth over st. It does nothing in the background until Run.
func New(st store.Store, cfg Config) *Auth {
	if cfg.GatewayID == "" {
		cfg.GatewayID = store.NewID()
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = defaultCacheTTL
	}
	if cfg.NegativeTTL <= 0 {
		cfg.NegativeTTL = defaultNegativeTTL
	}
	if cfg.FlushEvery <= 0 {
		cfg.FlushEvery = defaultFlushEvery
	}
	cfg.FlushEvery = min(cfg.FlushEvery, maxFlushEvery)
	if cfg.HeartbeatEvery <= 0 {
		cfg.HeartbeatEvery = defaultHeartbeat
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = defaultCacheSize
	}
	if cfg.NegativeSize <= 0 {
		cfg.NegativeSize = defaultCacheSize
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DeviceGrace <= 0 {
		cfg.DeviceGrace = defaultDeviceGrace
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &Auth{
		tokBytes:    tokenBytes{cap: max(cfg.MetricsPerToken, 0)},
		st:          st,
		cfg:         cfg,
		log:         cfg.Logger,
		started:     cfg.Now(),
		tokens:      newTTLCache(cfg.CacheSize, func(e *tokenEntry) string { return e.id }),
		neg:         newTTLCache[struct{}](cfg.NegativeSize, nil),
		sf:          make(map[hashKey]*lookupCall),
		accounts:    make(map[string]*account),
		membersKick: make(chan struct{}, 1),
		revalKick:   make(chan struct{}, 1),
		reval:       make(map[string]bool),
	}
	a.lq.kick = make(chan struct{}, 1)
	a.cq.kick = make(chan struct{}, 1)
	a.flushKick = make(chan struct{}, 1)
	a.members.Store(&memberView{})
	return a
}

func (a *Auth) now() time.Time { return a.cfg.Now() }

// GatewayID is the ID this gateway registers and leases under.
func (a *Auth) GatewayID() string { return a.cfg.GatewayID }

// Attach sets the gateway whose sessions are closed on revocation, quota and
// expiry, and whose session count is sent with heartbeats. Before Attach
// nothing is closed. Attach(nil) detaches: once it returns no call reaches
// the old gateway, so it can be shut down.
func (a *Auth) Attach(g Gateway) {
	a.gwMu.Lock()
	a.gw = g
	a.gwMu.Unlock()
}

func (a *Auth) closeAccount(id string) {
	a.gwMu.RLock()
	defer a.gwMu.RUnlock()
	if a.gw != nil {
		a.gw.CloseAccount(id)
	}
}

// quotaCloser is a Gateway that counts sessions ended by their quota apart
// from revoked ones (*gateway.Gateway: the "quota" end label).
type quotaCloser interface {
	CloseAccountQuota(key string)
}

// closeQuota is closeAccount for a token whose quota is used up.
func (a *Auth) closeQuota(id string) {
	a.gwMu.RLock()
	defer a.gwMu.RUnlock()
	if qc, ok := a.gw.(quotaCloser); ok {
		qc.CloseAccountQuota(id)
	} else if a.gw != nil {
		a.gw.CloseAccount(id)
	}
}

func (a *Auth) gatewaySessions() int {
	a.gwMu.RLock()
	defer a.gwMu.RUnlock()
	if a.gw == nil {
		return 0
	}
	return a.gw.Sessions()
}

// tokenEntry is a cached token: the fields the handshake checks, immutable
// once cached (a change in the store replaces the entry).
type tokenEntry struct {
	id          string
	revoked     bool
	expires     int64 // unix ns; 0 = never
	quota       int64
	maxSessions int
	maxDevices  int
	assignments []store.Assignment
	route       atomic.Pointer[cachedRoute]
}

func newEntry(t *store.Token) *tokenEntry {
	e := &tokenEntry{
		id:          t.ID,
		revoked:     t.Revoked,
		quota:       t.QuotaBytes,
		maxSessions: t.MaxSessions,
		maxDevices:  t.MaxDevices,
		assignments: t.Assignments,
	}
	if !t.ExpiresAt.IsZero() {
		e.expires = t.ExpiresAt.UnixNano()
	}
	return e
}

// Deny reasons, counted in Stats.
const (
	denyUnknown     = iota // no such token
	denyRevoked            // revoked
	denyExpired            // past ExpiresAt
	denyQuota              // usage reached QuotaBytes
	denySessions           // MaxSessions reached
	denyUnavailable        // unknown token while the store is down
	denyNoRoute            // no assignments
	denyDevices            // a new device at MaxDevices
	numDeny
)

// Authenticate implements gateway.Authenticator. secret is the token string
// as presented on the path; cl is who presents it (for MaxDevices).
func (a *Auth) Authenticate(secret []byte, _ gateway.PathKind, cl gateway.Client) (gateway.Route, gateway.Reject, bool) {
	h := store.HashTokenBytes(secret)
	now := a.now().UnixNano()
	e, why := a.entry(&h, now)
	if e == nil {
		return gateway.Route{}, why, false
	}
	if e.revoked {
		return a.deny(denyRevoked)
	}
	if e.expires != 0 && now >= e.expires {
		return a.deny(denyExpired)
	}
	if len(e.assignments) == 0 {
		return a.deny(denyNoRoute)
	}
	acc := a.account(e, now)
	if e.quota > 0 {
		acc.roll(now)
		if acc.total() >= e.quota {
			return a.deny(denyQuota)
		}
	}
	if e.quota > 0 && acc.credit.pool.Load() < sliceFor(e.quota)/2 {
		acc.needCredit() // the slice is on its way before the first byte
	}
	if e.maxDevices <= 0 {
		if !a.admit(acc, e.maxSessions, now) {
			return a.deny(denySessions)
		}
		r := a.route(e)
		r.Account = acc
		return r, 0, true
	}
	d := a.admitDevice(acc, e.maxDevices, cl, now)
	if d == nil {
		return a.deny(denyDevices)
	}
	if !a.admit(acc, e.maxSessions, now) {
		d.end()
		return a.deny(denySessions)
	}
	r := a.route(e)
	r.Account = d
	return r, 0, true
}

// denyReject is the gateway's label of each deny reason.
var denyReject = [numDeny]gateway.Reject{
	denyUnknown:     gateway.RejectSecret,
	denyRevoked:     gateway.RejectRevoked,
	denyExpired:     gateway.RejectExpired,
	denyQuota:       gateway.RejectQuota,
	denySessions:    gateway.RejectSessions,
	denyUnavailable: gateway.RejectStoreDown,
	denyNoRoute:     gateway.RejectNoRoute,
	denyDevices:     gateway.RejectDevices,
}

func (a *Auth) deny(reason int) (gateway.Route, gateway.Reject, bool) {
	a.stats.denied[reason].Add(1)
	return gateway.Route{}, denyReject[reason], false
}

// entry finds the token of hash h: the cache, else the store. A nil entry
// has been counted as a denial, and the Reject says which.
func (a *Auth) entry(h *hashKey, now int64) (*tokenEntry, gateway.Reject) {
	e, fresh, cached := a.tokens.get(h, now)
	if fresh {
		a.stats.hits.Add(1)
		return e, 0
	}
	if !cached {
		if _, negFresh, _ := a.neg.get(h, now); negFresh {
			a.stats.negHits.Add(1)
			_, why, _ := a.deny(denyUnknown)
			return nil, why
		}
	}
	if a.isDown(now) {
		if cached {
			a.stats.staleHits.Add(1)
			return e, 0
		}
		a.stats.downDenied.Add(1)
		_, why, _ := a.deny(denyUnavailable)
		return nil, why
	}
	a.stats.misses.Add(1)
	fe, err := a.lookup(h)
	switch {
	case err == nil:
		return fe, 0
	case errors.Is(err, store.ErrNotFound):
		_, why, _ := a.deny(denyUnknown)
		return nil, why
	case cached:
		// The store is down: a token we knew keeps working.
		a.stats.staleHits.Add(1)
		return e, 0
	}
	_, why, _ := a.deny(denyUnavailable)
	return nil, why
}

type lookupCall struct {
	done chan struct{}
	e    *tokenEntry
	err  error
}

// lookup reads a token from the store, one call per hash at a time however
// many handshakes present it, and caches the answer.
func (a *Auth) lookup(h *hashKey) (*tokenEntry, error) {
	a.sfMu.Lock()
	if c, ok := a.sf[*h]; ok {
		a.sfMu.Unlock()
		<-c.done
		return c.e, c.err
	}
	c := &lookupCall{done: make(chan struct{})}
	a.sf[*h] = c
	a.sfMu.Unlock()
	defer func() {
		a.sfMu.Lock()
		delete(a.sf, *h)
		a.sfMu.Unlock()
		close(c.done)
	}()

	gen := a.gen.Load()
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	t, err := a.st.GetTokenByHash(ctx, *h)
	now := a.now()
	if errors.Is(err, store.ErrNotFound) {
		a.storeOK()
		if a.gen.Load() == gen {
			a.neg.put(h, struct{}{}, now.Add(a.cfg.NegativeTTL).UnixNano(), now.UnixNano())
		}
		c.err = err
		return nil, err
	}
	if err != nil {
		a.storeFailed(err)
		c.err = err
		return nil, err
	}
	a.storeOK()
	e := newEntry(&t)
	if e.quota > 0 && !e.revoked {
		// Usage from every gateway, so a token over quota is refused here
		// even if it never ran on this gateway.
		if u, err := a.st.GetUsage(ctx, t.ID); err == nil {
			a.account(e, now.UnixNano()).setStoreUsage(u, now)
		} else if !errors.Is(err, store.ErrNotFound) {
			a.storeFailed(err)
		}
	}
	if a.gen.Load() == gen {
		a.tokens.put(h, e, now.Add(a.cfg.CacheTTL).UnixNano(), now.UnixNano())
		a.neg.del(h)
	}
	c.e = e
	return e, nil
}

// admit takes one session slot of the token: a fleet-wide lease when the
// limit is set and the store answers, else a local count.
func (a *Auth) admit(acc *account, max int, now int64) bool {
	if max <= 0 {
		// Unlimited: the lease is only bookkeeping, taken in the background.
		acc.sessions.Add(1)
		acc.unleased.Add(1)
		a.lq.push(acc)
		return true
	}
	if !a.isDown(now) {
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		ok, err := a.st.AcquireSession(ctx, acc.id, a.cfg.GatewayID, max)
		cancel()
		if err == nil {
			a.storeOK()
			if ok {
				acc.sessions.Add(1)
			}
			return ok
		}
		a.storeFailed(err)
	}
	// The store is down: admit up to max sessions on this gateway alone.
	// Across a fleet of N gateways a token may hold up to N×max sessions
	// until the store returns; the leases are taken then.
	if acc.sessions.Add(1) > int64(max) {
		acc.sessions.Add(-1)
		return false
	}
	acc.unleased.Add(1)
	a.lq.push(acc)
	a.stats.localAdmits.Add(1)
	return true
}

// isDown reports whether a recent store failure keeps the handshake path
// from waiting on the store.
func (a *Auth) isDown(now int64) bool { return now < a.downUntil.Load() }

// storeFailed records a failed store call. Answers such as not-found or
// invalid are not outages.
func (a *Auth) storeFailed(err error) {
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrExists) {
		return
	}
	a.stats.storeErrors.Add(1)
	a.downUntil.Store(a.now().Add(breakerOpen).UnixNano())
	if a.storeDown.CompareAndSwap(false, true) {
		a.log.Warn("store unavailable: cached tokens keep working, unknown tokens are denied", "err", err)
	}
}

func (a *Auth) storeOK() {
	if a.storeDown.CompareAndSwap(true, false) {
		a.downUntil.Store(0)
		a.log.Info("store available again")
	}
}

// account returns the token's account, creating it on first use.
func (a *Auth) account(e *tokenEntry, now int64) *account {
	a.accMu.Lock()
	acc := a.accounts[e.id]
	if acc == nil {
		acc = &account{a: a, id: e.id}
		a.accounts[e.id] = acc
	}
	acc.lastUsed.Store(now)
	acc.quota.Store(e.quota)
	acc.expires.Store(e.expires)
	a.accMu.Unlock()
	return acc
}

func (a *Auth) lookupAccount(id string) *account {
	a.accMu.Lock()
	defer a.accMu.Unlock()
	return a.accounts[id]
}

// snapshotAccounts copies the account list for a background pass.
func (a *Auth) snapshotAccounts() []*account {
	a.accMu.Lock()
	defer a.accMu.Unlock()
	l := make([]*account, 0, len(a.accounts))
	for _, acc := range a.accounts {
		l = append(l, acc)
	}
	return l
}

// dropToken forgets a token so the next handshake asks the store.
func (a *Auth) dropToken(id string, h hashKey) {
	a.gen.Add(1)
	a.tokens.delID(id)
	if h != (hashKey{}) {
		a.tokens.del(&h)
	}
}

// expireAll, after the event subscription was lost (events may have been
// missed), makes every cached token ask the store again on its next
// handshake. The entries are kept as stale ones, so a token known before
// still works if the store fails again right away (its breaker is open for
// a second after any error), as in any outage; unknown hashes are
// forgotten (their tokens may have been created meanwhile).
func (a *Auth) expireAll() {
	a.gen.Add(1)
	a.tokens.expireAll()
	a.neg.clear()
}

// Stats are the Auth's counters since New, and a few current sizes.
type Stats struct {
	CacheHits    uint64 // handshakes answered from a fresh cache entry
	CacheMisses  uint64 // handshakes that looked the token up in the store
	NegativeHits uint64 // unknown hashes denied from the negative cache
	StaleHits    uint64 // cached tokens admitted past CacheTTL while the store was down
	LocalAdmits  uint64 // sessions admitted without a fleet lease (store down)
	LocalDevices uint64 // new devices admitted by the local count (store down)
	StoreErrors  uint64 // failed store calls, all operations
	FlushErrors  uint64 // usage flushes that failed (the deltas are kept)
	Published    uint64 // quota-exceeded events published
	QuotaLeases  uint64 // quota slices settled with the store (LeaseQuota calls that succeeded)

	DeniedUnknown     uint64
	DeniedRevoked     uint64
	DeniedExpired     uint64
	DeniedQuota       uint64
	DeniedSessions    uint64
	DeniedUnavailable uint64
	DeniedNoRoute     uint64
	DeniedDevices     uint64

	CachedTokens  int   // positive cache entries
	NegativeCache int   // negative cache entries
	Accounts      int   // tokens with local state (sessions or unflushed usage)
	PendingUsage  int64 // bytes counted locally but not yet in the store
	// TokenOtherUp and TokenOtherDown are the traffic of tokens past
	// Config.MetricsPerToken (the token="other" series).
	TokenOtherUp, TokenOtherDown uint64
	StoreDown                    bool // the last store call failed
	Subscribed                   bool // the event subscription is up (revocations arrive)
}

type counters struct {
	hits, misses, negHits, staleHits atomic.Uint64
	localAdmits, storeErrors         atomic.Uint64
	localDevices                     atomic.Uint64
	flushErrors, published           atomic.Uint64
	quotaLeases                      atomic.Uint64
	subscribed                       atomic.Bool
	denied                           [numDeny]atomic.Uint64
	downDenied                       atomic.Uint64 // unknown tokens denied while the store is down, without a lookup
}

// handshakes is the number of Authenticate calls: each one is counted
// once by entry, as a hit, a negative hit, a stale hit, a denial while
// the store is down, or a miss (a separate counter would be one more
// contended atomic on the hot path).
func (c *counters) handshakes() uint64 {
	return c.hits.Load() + c.negHits.Load() + c.staleHits.Load() + c.downDenied.Load() + c.misses.Load()
}

// Stats returns the counters.
func (a *Auth) Stats() Stats {
	s := Stats{
		CacheHits:         a.stats.hits.Load(),
		CacheMisses:       a.stats.misses.Load(),
		NegativeHits:      a.stats.negHits.Load(),
		StaleHits:         a.stats.staleHits.Load(),
		LocalAdmits:       a.stats.localAdmits.Load(),
		LocalDevices:      a.stats.localDevices.Load(),
		StoreErrors:       a.stats.storeErrors.Load(),
		FlushErrors:       a.stats.flushErrors.Load(),
		Published:         a.stats.published.Load(),
		QuotaLeases:       a.stats.quotaLeases.Load(),
		DeniedUnknown:     a.stats.denied[denyUnknown].Load(),
		DeniedRevoked:     a.stats.denied[denyRevoked].Load(),
		DeniedExpired:     a.stats.denied[denyExpired].Load(),
		DeniedQuota:       a.stats.denied[denyQuota].Load(),
		DeniedSessions:    a.stats.denied[denySessions].Load(),
		DeniedUnavailable: a.stats.denied[denyUnavailable].Load(),
		DeniedNoRoute:     a.stats.denied[denyNoRoute].Load(),
		DeniedDevices:     a.stats.denied[denyDevices].Load(),
		CachedTokens:      a.tokens.len(),
		NegativeCache:     a.neg.len(),
		StoreDown:         a.storeDown.Load(),
		Subscribed:        a.stats.subscribed.Load(),
	}
	s.TokenOtherUp, s.TokenOtherDown = a.tokBytes.other()
	for _, acc := range a.snapshotAccounts() {
		s.Accounts++
		s.PendingUsage += acc.up.Load() + acc.down.Load() + acc.inflight.Load()
	}
	return s
}
