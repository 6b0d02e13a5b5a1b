package gateway

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/cloudwego/netpoll"
)

// Admission of new connections (docs/04-gateway-design.md, "Hostile
// clients").
//
// Every accepted connection is a handshake until it becomes a session or is
// closed. Three limits keep one client from holding what others need:
//
//   - per client address (IPv4 address, IPv6 /64): at most AddrHandshakes
//     handshakes at once, and new connections at AddrRate per second with a
//     burst of AddrBurst (a token bucket), enforced while a quarter or more
//     of MaxHandshakes is in use;
//   - globally: at most MaxHandshakes handshakes at once. At the cap a new
//     connection does not wait or get refused while some handshake sits
//     idle: the oldest idle handshake (one waiting for the client's bytes,
//     not one computing or being answered) is closed to make room.
//
// A refused connection is closed at once without an answer; the reason is
// counted (RejectAddrLimit, RejectAddrRate, RejectCapacity, RejectEvicted).

// onPrepare runs at accept, before any byte is read.
func (g *Gateway) onPrepare(c netpoll.Connection) context.Context {
	ctx := context.Background()
	if g.draining.Load() {
		g.m.HandshakeRejected(RejectShutdown)
		c.Close()
		return ctx
	}
	if g.active.Load() >= int64(g.cfg.MaxSessions) {
		g.m.HandshakeRejected(RejectCapacity)
		c.Close()
		return ctx
	}
	now := time.Now()
	h := &handshake{g: g, c: c, start: now, ufd: -1, addr: keyOf(c.RemoteAddr())}
	if g.proxy != nil && g.proxy.trusts(c.RemoteAddr()) {
		// Booked against the client its PROXY header names (rebook), not
		// against the load balancer.
		h.proxied = true
	} else if g.fwd != nil && g.fwd.trusts(c.RemoteAddr()) {
		// Booked against the client its upgrade request's X-Forwarded-For
		// or Forwarded names (forwarded.go).
		h.forwarded = true
	}
	h.wait.Store(hsIdle)
	rej, victim, ok := g.adm.admit(h, now.UnixNano())
	if !ok {
		g.m.HandshakeRejected(rej)
		c.Close()
		return ctx
	}
	if victim != nil {
		// Its slot is h's now; its close callback finds it unlinked.
		g.handshakes.Add(-1)
		g.m.HandshakeRejected(RejectEvicted)
		victim.c.Close()
	}
	g.active.Add(1)
	g.handshakes.Add(1)
	h.timer = time.AfterFunc(g.cfg.HandshakeTimeout, h.expire)
	c.AddCloseCallback(h.closed)
	return context.WithValue(ctx, hsKey{}, h)
}

// Values of handshake.wait.
const (
	hsBusy int32 = iota
	hsIdle
	hsEvicted
)

var errEvicted = errors.New("gateway: handshake evicted to admit a newer one")

// idle claims h for eviction if it is only waiting for its client.
// Called with the admission lock held.
func (h *handshake) idle() bool {
	return h.wait.CompareAndSwap(hsIdle, hsEvicted)
}

// wake marks h busy again after a wait; false means it was evicted and the
// connection is closed or closing.
func (h *handshake) wake() bool {
	return h.wait.CompareAndSwap(hsIdle, hsBusy)
}

// addrKey is the unit the per-address limits count: an IPv4 address, or the
// /64 of an IPv6 address (one subscriber usually holds a whole /64).
type addrKey [16]byte

func keyOf(a net.Addr) addrKey {
	var k addrKey
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return k
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return k
	}
	ip = ip.Unmap()
	if ip.Is4() {
		b := ip.As4()
		copy(k[12:], b[:])
		k[10], k[11] = 0xff, 0xff
		return k
	}
	k = ip.As16()
	clear(k[8:]) // the /64
	return k
}

// addrState is what the admission keeps per client address. Guarded by
// Gateway.adm.mu.
type addrState struct {
	handshakes int     // in progress now
	fallbacks  int     // connections relayed to Config.Fallback now
	tokens     float64 // token bucket for new connections
	refill     int64   // unix ns of the last refill
}

// maxAddrEntries bounds the per-address table. An entry lives while its
// address has handshakes, fallback connections or an unfilled bucket (at most AddrBurst/AddrRate
// seconds after its last connection), so reaching this takes that many
// distinct addresses connecting within seconds; past it new addresses are
// admitted without per-address accounting until the table shrinks, and
// the global limits still hold.
const maxAddrEntries = 1 << 18

// admission holds the handshake registry and the per-address table.
// Guarded by mu (every field but mu and the limits, which init sets before
// the listener starts); onPrepare and the close callback of every handshake
// take it once each, on netpoll's goroutines.
type admission struct {
	mu    sync.Mutex
	addrs map[addrKey]*addrState
	head  handshake // sentinel of the list of handshakes, oldest first
	count int       // handshakes in the list

	maxHS     int     // MaxHandshakes
	perAddr   int     // AddrHandshakes; 0 = no limit
	rate      float64 // AddrRate per second; 0 = no limit
	burst     float64 // AddrBurst
	lastSweep int64
}

func (ad *admission) init(cfg *Config) {
	ad.addrs = make(map[addrKey]*addrState)
	ad.head.prev, ad.head.next = &ad.head, &ad.head
	ad.maxHS = cfg.MaxHandshakes
	if cfg.AddrHandshakes > 0 {
		ad.perAddr = cfg.AddrHandshakes
	}
	if cfg.AddrRate > 0 {
		ad.rate = cfg.AddrRate
		ad.burst = float64(max(cfg.AddrBurst, 1))
	}
}

// evictScan bounds how many handshakes from the oldest end are looked at for
// one that is idle, so admission stays O(1) when all are busy.
const evictScan = 1024

// admit decides whether h (not yet linked) may start. On success it links
// h, books it against its address, and may return an older idle handshake
// that the caller must close (outside the lock).
func (ad *admission) admit(h *handshake, now int64) (Reject, *handshake, bool) {
	ad.mu.Lock()
	defer ad.mu.Unlock()
	if now-ad.lastSweep > int64(10*time.Second) {
		ad.sweep(now)
	}
	var st *addrState
	if !h.proxied && !h.forwarded {
		var rej Reject
		if st, rej = ad.checkAddrLocked(h.addr, now, ad.count); rej != 0 {
			return rej, nil, false
		}
	}
	var victim *handshake
	if ad.count >= ad.maxHS {
		victim = ad.oldestIdle()
		if victim == nil {
			return RejectCapacity, nil, false
		}
		ad.unlinkLocked(victim)
	}
	if st != nil {
		ad.bookLocked(h, st)
	}
	h.prev = ad.head.prev
	h.next = &ad.head
	ad.head.prev.next = h
	ad.head.prev = h
	h.linked = true
	ad.count++
	return 0, victim, true
}

// checkAddrLocked applies the per-address limits to a new handshake from
// k while count handshakes are in progress: a nonzero Reject refuses it;
// otherwise st is the address's entry to book it against (nil:
// unaccounted).
func (ad *admission) checkAddrLocked(k addrKey, now int64, count int) (*addrState, Reject) {
	st := ad.addrs[k]
	if st == nil && (ad.perAddr > 0 || ad.rate > 0) {
		st = ad.newEntry(k, now)
	}
	// The per-address limits refuse only under pressure: while a quarter
	// of MaxHandshakes is free nobody is short of anything, and many users
	// behind one carrier-grade NAT address keep connecting however many
	// they are. The bucket is drawn on all the time, so that under
	// pressure it reflects the address's real rate.
	pressure := count >= ad.maxHS/4
	if st != nil {
		if ad.perAddr > 0 && st.handshakes >= ad.perAddr && pressure {
			return nil, RejectAddrLimit
		}
		if ad.rate > 0 {
			st.refillAt(now, ad.rate, ad.burst)
			if st.tokens < 1 && pressure {
				return nil, RejectAddrRate
			}
		}
	}
	return st, 0
}

// bookLocked counts h against its address's entry st.
func (ad *admission) bookLocked(h *handshake, st *addrState) {
	if ad.rate > 0 {
		st.tokens = max(st.tokens-1, 0)
	}
	st.handshakes++
	h.booked = true
}

// rebook books a handshake admitted from a trusted PROXY peer against the
// client address k its header named, under the same per-address limits as
// admit; false (with the reason) means the client is over them and the
// connection is to be closed. A handshake already unlinked (evicted) is
// left alone.
func (ad *admission) rebook(h *handshake, k addrKey, now int64) (Reject, bool) {
	ad.mu.Lock()
	defer ad.mu.Unlock()
	if !h.linked || h.booked {
		return 0, true
	}
	h.addr = k
	// h itself is already in count; admit saw the others only.
	st, rej := ad.checkAddrLocked(k, now, ad.count-1)
	if rej != 0 {
		return rej, false
	}
	if st != nil {
		ad.bookLocked(h, st)
	}
	return 0, true
}

// newEntry adds a table entry for k, or returns nil when the table is full
// (a full table is swept at most once a second, so a flood of new
// addresses cannot make every accept walk it).
func (ad *admission) newEntry(k addrKey, now int64) *addrState {
	if len(ad.addrs) >= maxAddrEntries && now-ad.lastSweep > int64(time.Second) {
		ad.sweep(now)
	}
	if len(ad.addrs) >= maxAddrEntries {
		return nil
	}
	st := &addrState{tokens: ad.burst, refill: now}
	ad.addrs[k] = st
	return st
}

// bookFallback counts a fallback connection against its address, at most
// max at once; false means the address has its share already.
func (ad *admission) bookFallback(k addrKey, max int) bool {
	ad.mu.Lock()
	defer ad.mu.Unlock()
	st := ad.addrs[k]
	if st == nil {
		if st = ad.newEntry(k, time.Now().UnixNano()); st == nil {
			return true // unaccounted, as in admit
		}
	}
	if st.fallbacks >= max {
		return false
	}
	st.fallbacks++
	return true
}

// unbookFallback ends what bookFallback counted.
func (ad *admission) unbookFallback(k addrKey) {
	ad.mu.Lock()
	defer ad.mu.Unlock()
	if st := ad.addrs[k]; st != nil && st.fallbacks > 0 {
		st.fallbacks--
	}
}

func (st *addrState) refillAt(now int64, rate, burst float64) {
	if dt := now - st.refill; dt > 0 {
		st.tokens = min(burst, st.tokens+float64(dt)*rate/1e9)
		st.refill = now
	}
}

// oldestIdle returns the oldest handshake waiting for its client, or nil.
func (ad *admission) oldestIdle() *handshake {
	n := 0
	for h := ad.head.next; h != &ad.head && n < evictScan; h = h.next {
		if h.idle() {
			return h
		}
		n++
	}
	return nil
}

// release removes h (at its close) unless an eviction already did.
func (ad *admission) release(h *handshake) bool {
	ad.mu.Lock()
	defer ad.mu.Unlock()
	if !h.linked {
		return false
	}
	ad.unlinkLocked(h)
	return true
}

func (ad *admission) unlinkLocked(h *handshake) {
	h.prev.next = h.next
	h.next.prev = h.prev
	h.prev, h.next = nil, nil
	h.linked = false
	ad.count--
	if h.booked {
		h.booked = false
		if st := ad.addrs[h.addr]; st != nil {
			st.handshakes--
		}
	}
}

// sweep drops entries of addresses with no handshake whose bucket is full.
func (ad *admission) sweep(now int64) {
	ad.lastSweep = now
	for k, st := range ad.addrs {
		if st.handshakes > 0 || st.fallbacks > 0 {
			continue
		}
		if ad.rate > 0 {
			st.refillAt(now, ad.rate, ad.burst)
			if st.tokens < ad.burst {
				continue
			}
		}
		delete(ad.addrs, k)
	}
}

// inProgress is the number of handshakes admitted and not yet ended.
func (ad *admission) inProgress() int {
	ad.mu.Lock()
	defer ad.mu.Unlock()
	return ad.count
}
