package pool

import (
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/httvps/httvps/store"
)

// maxSweepsPerRound bounds the stray keys one health round deletes on one
// member; the rest are deleted in the next rounds.
const maxSweepsPerRound = 100

// sighting is when this process's health rounds first found a stray key,
// and with which secret.
type sighting struct {
	fp    string
	first time.Time
}

// roundState is what one health round shares between its member checks.
type roundState struct {
	// assigned is the store's side of repair and sweep, listed once on
	// first need. Deletions never rely on it alone: each batch of them
	// lists the store again.
	assigned assignedKeys
	// servers maps a member ID to the IDs of every member reaching the
	// same server (serverKey), itself included: a key assigned through
	// one of them is in use.
	servers map[string][]string
	// live holds the serverKey of every member of the round.
	live map[string]bool
	// noSweep: the sweep is off (StrayGrace negative) or must not run
	// this round (the installation ID unreadable or changed).
	noSweep bool
}

func newRoundState(mems []store.Member) *roundState {
	by := map[string][]string{}
	keys := make([]string, len(mems))
	for i, mem := range mems {
		if keys[i] = serverKey(mem); keys[i] != "" {
			by[keys[i]] = append(by[keys[i]], mem.ID)
		}
	}
	rs := &roundState{servers: map[string][]string{}, live: map[string]bool{}}
	for i, mem := range mems {
		if k := keys[i]; k != "" {
			rs.servers[mem.ID] = by[k]
			rs.live[k] = true
		}
	}
	return rs
}

// serverOf is the key of mem's server in strays and creating: its
// serverKey, or its member ID for a static member (which has no keys).
func serverOf(mem store.Member) string {
	if k := serverKey(mem); k != "" {
		return k
	}
	return "member " + mem.ID
}

// serverKey names the server behind a member's backend ("" for static):
// its Outline certificate, or its ss-manager address with the host
// resolved (managerAddrKey), so that two member entries for one server —
// the same certSha256, or 127.0.0.1:p and localhost:p — count as one.
func serverKey(mem store.Member) string {
	switch {
	case mem.Outline != nil:
		return "outline " + strings.ToLower(strings.ReplaceAll(mem.Outline.CertSHA256, ":", ""))
	case mem.SSManager != nil:
		return "ss-manager " + managerAddrKey(mem.SSManager.ManagerAddr)
	}
	return ""
}

// resolveTTL is how long managerAddrKey keeps a host name's address.
const resolveTTL = time.Minute

var resolved = struct {
	sync.Mutex
	m map[string]resolvedAddr
}{m: map[string]resolvedAddr{}}

type resolvedAddr struct {
	key string
	at  time.Time
}

// managerAddrKey normalises an ss-manager address for server identity:
// an IP literal in its canonical form, a host name resolved to the first
// address the resolver gives (the one a dial tries first), cached for
// resolveTTL. If the address does not split or the name does not resolve
// (within a second) the string itself is the key.
func managerAddrKey(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip != nil {
		return net.JoinHostPort(ip.String(), port)
	}
	resolved.Lock()
	r, ok := resolved.m[addr]
	resolved.Unlock()
	if ok && time.Since(r.at) < resolveTTL {
		return r.key
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	ips, err := net.DefaultResolver.LookupIP(ctx, "ip", host)
	cancel()
	if err != nil || len(ips) == 0 {
		return addr
	}
	key := net.JoinHostPort(ips[0].String(), port)
	resolved.Lock()
	if len(resolved.m) > 4096 {
		clear(resolved.m)
	}
	resolved.m[addr] = resolvedAddr{key, time.Now()}
	resolved.Unlock()
	return key
}

// sameKey reports whether assignments a and b name one key: the same key
// id on the same server (by serverKey of their members in mems; a member
// missing from mems is compared by ID).
func sameKey(mems map[string]store.Member, a, b store.Assignment) bool {
	if a.BackendKeyID != b.BackendKeyID {
		return false
	}
	if a.MemberID == b.MemberID {
		return true
	}
	ma, oka := mems[a.MemberID]
	mb, okb := mems[b.MemberID]
	if !oka || !okb {
		return false
	}
	ka := serverKey(ma)
	return ka != "" && ka == serverKey(mb)
}

// assignedOn reports whether by (an assignedKeys listing) names keyID on
// memberID or on another member reaching the same server.
func (rs *roundState) assignedOn(by map[string]map[string]string, memberID, keyID string) bool {
	ids := rs.servers[memberID]
	if len(ids) == 0 {
		ids = []string{memberID}
	}
	for _, id := range ids {
		if _, ok := by[id][keyID]; ok {
			return true
		}
	}
	return false
}

// StraysDeleted returns how many stray keys the health rounds of this
// Manager have deleted.
func (m *Manager) StraysDeleted() uint64 { return m.swept.Load() }

// beginCreate marks a CreateKey on mem's server in flight in this process
// (the sweep and pending deletions leave the server alone meanwhile, through
// any member entry); call the result when it returns.
func (m *Manager) beginCreate(mem store.Member) func() {
	srv := serverOf(mem)
	m.mu.Lock()
	m.creating[srv]++
	m.mu.Unlock()
	return func() {
		m.mu.Lock()
		if m.creating[srv]--; m.creating[srv] <= 0 {
			delete(m.creating, srv)
		}
		m.mu.Unlock()
	}
}

// created notes that this process created key keyID on mem's server: a
// pending deletion (through any entry for that server) or a stray
// sighting of that id is stale (an ss-manager port handed out again, an
// Outline key reused after a 409).
func (m *Manager) created(mem store.Member, keyID string) {
	srv := serverOf(mem)
	m.mu.Lock()
	confs := make(map[string]store.Member, len(m.backends))
	for id, mb := range m.backends {
		confs[id] = mb.conf
	}
	m.mu.Unlock()
	siblings := []string{mem.ID}
	for id, conf := range confs {
		if id != mem.ID && serverOf(conf) == srv {
			siblings = append(siblings, id)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range siblings {
		delete(m.orphans[id], keyID)
		if len(m.orphans[id]) == 0 {
			delete(m.orphans, id)
		}
	}
	delete(m.strays[srv], keyID)
}

// pruneStrays drops the sightings of servers no member reaches any more.
func (m *Manager) pruneStrays(rs *roundState) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.strays {
		if !rs.live[k] {
			delete(m.strays, k)
		}
	}
}

// reconcileKeys lists the keys an up member serves and brings them in line
// with the store: keys it lost are re-created, stray keys deleted.
func (m *Manager) reconcileKeys(ctx context.Context, mem store.Member, b Backend, rs *roundState) {
	kl, ok := b.(keyLister)
	if !ok {
		return
	}
	listedAt := time.Now()
	cctx, cancel := context.WithTimeout(ctx, m.cfg.DialTimeout)
	have, err := kl.Keys(cctx)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("pool: listing the member's keys", "member", mem.ID, "err", err)
		}
		return
	}
	m.repairKeys(ctx, mem, b, have, &rs.assigned)
	m.sweepKeys(ctx, mem, b, kl, have, listedAt, rs)
}

// sweepBatch is how many stray keys are deleted on one pair of fresh
// listings (the member's keys and the store's assignments).
const sweepBatch = 10

// sweepKeys deletes the member's stray keys: keys httvps created (by the
// backend's ownership rule) that no stored assignment of an unrevoked
// token names — keys of revoked or deleted tokens whose deletion failed,
// keys left on a drained member, keys of a process that crashed between
// creating a key and storing it. have is the member's keys as listed at
// listedAt.
//
// A key is deleted only when it was found stray, with the same secret, by
// an earlier round of this process at least StrayGrace before listedAt
// (through any member entry for its server, while the server answered), and,
// in listings of the member's keys and of the store taken again right
// before each batch of at most sweepBatch deletions, it is still served
// with that secret and still stray, and no CreateKey on its server is in
// flight in this process. If a listing fails nothing more is deleted. At
// most maxSweepsPerRound keys go per round; the first failure ends the
// member's sweep for this round.
func (m *Manager) sweepKeys(ctx context.Context, mem store.Member, b Backend, kl keyLister, have map[string]listedKey, listedAt time.Time, rs *roundState) {
	if rs.noSweep || m.cfg.StrayGrace < 0 {
		return
	}
	assigned, err := rs.assigned.get(ctx, m.st)
	if err != nil {
		return // logged by repairKeys; sightings are kept for the next round
	}
	srv := serverOf(mem)
	now := time.Now()
	seen := map[string]sighting{}
	var due []string
	m.mu.Lock()
	prev := m.strays[srv]
	for id, s := range prev {
		// Another entry for this server (another port range) may own
		// keys this one does not: keep its sightings.
		if k, ok := have[id]; ok && !k.ours {
			seen[id] = s
		}
	}
	for id, k := range have {
		if !k.ours || k.fp == "" || rs.assignedOn(assigned, mem.ID, id) {
			continue
		}
		s, ok := prev[id]
		if !ok || s.fp != k.fp {
			s = sighting{fp: k.fp, first: now}
		}
		seen[id] = s
		if listedAt.Sub(s.first) >= m.cfg.StrayGrace {
			due = append(due, id)
		}
	}
	if len(seen) > 0 {
		m.strays[srv] = seen
	} else {
		delete(m.strays, srv)
	}
	m.mu.Unlock()
	if len(due) == 0 {
		return
	}
	slices.Sort(due)
	if len(due) > maxSweepsPerRound {
		due = due[:maxSweepsPerRound]
	}
	drop := func(id string) {
		m.mu.Lock()
		delete(m.strays[srv], id)
		m.mu.Unlock()
	}
	deleted := 0
	defer func() {
		m.log.Info("pool: stray keys swept", "member", mem.ID, "deleted", deleted, "due", len(due), "stray", len(seen))
	}()
	for i := 0; i < len(due); i += sweepBatch {
		batch := due[i:min(i+sweepBatch, len(due))]
		// The store first, then the member: a key created before the
		// member's listing shows its new secret there, one stored before
		// the store's listing is named in it.
		var ak assignedKeys
		fresh, err := ak.get(ctx, m.st)
		if err != nil {
			if ctx.Err() == nil {
				m.log.Warn("pool: listing tokens before deleting stray keys; none deleted", "member", mem.ID, "err", err)
			}
			return
		}
		cctx, cancel := context.WithTimeout(ctx, m.cfg.DialTimeout)
		served, err := kl.Keys(cctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				m.log.Warn("pool: listing the member's keys before deleting stray keys; none deleted", "member", mem.ID, "err", err)
			}
			return
		}
		for _, id := range batch {
			k, ok := served[id]
			if !ok || !k.ours || k.fp != seen[id].fp || rs.assignedOn(fresh, mem.ID, id) {
				drop(id) // gone, handed out again, or assigned meanwhile
				continue
			}
			m.mu.Lock()
			s, still := m.strays[srv][id]
			busy := m.creating[srv] > 0
			m.mu.Unlock()
			if busy {
				return // a key is being created there: next round
			}
			if !still || s != seen[id] {
				continue // created again by this process meanwhile
			}
			cctx, cancel := context.WithTimeout(ctx, m.cfg.DialTimeout)
			err := b.DeleteKey(cctx, id)
			cancel()
			if err != nil {
				m.keyFailed(ctx, mem.Backend, opDelete)
				if ctx.Err() == nil {
					m.log.Warn("pool: deleting stray key failed", "member", mem.ID, "key", id, "err", err)
				}
				return
			}
			m.mu.Lock()
			delete(m.strays[srv], id)
			delete(m.orphans[mem.ID], id)
			m.mu.Unlock()
			m.swept.Add(1)
			deleted++
			m.log.Info("pool: stray key deleted", "member", mem.ID, "key", id)
		}
	}
}
