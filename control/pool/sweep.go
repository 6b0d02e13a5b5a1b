package pool

import (
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/httvps/httvps/control/store"
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
	// first need.
	assigned assignedKeys
	// fresh is listed once more, on first need, right before stray keys
	// are deleted: an assignment stored since assigned was listed saves
	// its key.
	fresh assignedKeys
	// servers maps a member ID to the IDs of every member reaching the
	// same server (same Outline certificate, same ss-manager address),
	// itself included: a key assigned through one of them is in use.
	servers map[string][]string
}

func newRoundState(mems []store.Member) *roundState {
	by := map[string][]string{}
	for _, mem := range mems {
		if k := serverKey(mem); k != "" {
			by[k] = append(by[k], mem.ID)
		}
	}
	rs := &roundState{servers: map[string][]string{}}
	for _, mem := range mems {
		if k := serverKey(mem); k != "" {
			rs.servers[mem.ID] = by[k]
		}
	}
	return rs
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

// beginCreate marks a CreateKey on the member in flight in this process
// (the sweep leaves the member alone meanwhile); call the result when it
// returns.
func (m *Manager) beginCreate(memberID string) func() {
	m.mu.Lock()
	m.creating[memberID]++
	m.mu.Unlock()
	return func() {
		m.mu.Lock()
		if m.creating[memberID]--; m.creating[memberID] <= 0 {
			delete(m.creating, memberID)
		}
		m.mu.Unlock()
	}
}

// created notes that this process created key keyID on the member: a
// pending deletion or a stray sighting of that id is stale (an ss-manager
// port handed out again, an Outline key reused after a 409).
func (m *Manager) created(memberID, keyID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.orphans[memberID], keyID)
	delete(m.strays[memberID], keyID)
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
	m.sweepKeys(ctx, mem, b, have, listedAt, rs)
}

// sweepKeys deletes the member's stray keys: keys httvps created (by the
// backend's ownership rule) that no stored assignment of an unrevoked
// token names — keys of revoked or deleted tokens whose deletion failed,
// keys left on a drained member, keys of a process that crashed between
// creating a key and storing it. have is the member's keys as listed at
// listedAt.
//
// A key is deleted only when it was found stray, with the same secret, by
// an earlier round of this process at least StrayGrace before listedAt, is
// still stray in a fresh listing of the store taken now, and no CreateKey
// on the member is in flight in this process: a key whose assignment is
// about to be stored (a token being created, drained or repaired by any
// process) is left alone. If the store cannot be listed nothing is
// deleted. At most maxSweepsPerRound keys go per round; the first failure
// ends the member's sweep for this round.
func (m *Manager) sweepKeys(ctx context.Context, mem store.Member, b Backend, have map[string]listedKey, listedAt time.Time, rs *roundState) {
	if m.cfg.StrayGrace < 0 {
		return
	}
	assigned, err := rs.assigned.get(ctx, m.st)
	if err != nil {
		return // logged by repairKeys; sightings are kept for the next round
	}
	now := time.Now()
	seen := map[string]sighting{}
	var due []string
	m.mu.Lock()
	prev := m.strays[mem.ID]
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
		m.strays[mem.ID] = seen
	} else {
		delete(m.strays, mem.ID)
	}
	m.mu.Unlock()
	if len(due) == 0 {
		return
	}
	slices.Sort(due)
	if len(due) > maxSweepsPerRound {
		due = due[:maxSweepsPerRound]
	}
	fresh, err := rs.fresh.get(ctx, m.st)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("pool: listing tokens before deleting stray keys; none deleted", "member", mem.ID, "err", err)
		}
		return
	}
	deleted := 0
	for _, id := range due {
		if rs.assignedOn(fresh, mem.ID, id) {
			m.mu.Lock()
			delete(m.strays[mem.ID], id)
			m.mu.Unlock()
			continue
		}
		m.mu.Lock()
		s, still := m.strays[mem.ID][id]
		busy := m.creating[mem.ID] > 0
		m.mu.Unlock()
		if busy {
			break // a key is being created there: next round
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
			break
		}
		m.mu.Lock()
		delete(m.strays[mem.ID], id)
		delete(m.orphans[mem.ID], id)
		m.mu.Unlock()
		m.swept.Add(1)
		deleted++
		m.log.Info("pool: stray key deleted", "member", mem.ID, "key", id)
	}
	m.log.Info("pool: stray keys swept", "member", mem.ID, "deleted", deleted, "due", len(due), "stray", len(seen))
}
