package pool

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/httvps/httvps/store"
)

// maxParallelChecks bounds concurrent member checks in one round.
const maxParallelChecks = 16

// Run checks every member, re-creates keys that up members lost, deletes
// their stray keys and polls transfer counters every HealthEvery (the first round at once) until ctx
// ends.
func (m *Manager) Run(ctx context.Context) {
	t := time.NewTicker(m.cfg.HealthEvery)
	defer t.Stop()
	for {
		m.round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// round checks all members in parallel.
func (m *Manager) round(ctx context.Context) {
	mems, err := m.st.ListMembers(ctx)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("pool: listing members", "err", err)
		}
		return
	}
	live := map[string]bool{}
	for _, mem := range mems {
		live[mem.ID] = true
	}
	m.mu.Lock()
	var gone []string
	for id := range m.backends {
		if !live[id] {
			gone = append(gone, id)
		}
	}
	for id := range m.members {
		if !live[id] {
			delete(m.members, id)
		}
	}
	m.mu.Unlock()
	for _, id := range gone { // removed by another process
		m.forget(id)
	}

	// Outline members' backends need the installation's mark; without it
	// (the store failing) the round would only mark them down wrongly.
	if slices.ContainsFunc(mems, func(mem store.Member) bool { return mem.Backend == store.BackendOutlineAPI }) {
		if _, err := m.installMark(ctx); err != nil {
			if ctx.Err() == nil {
				m.log.Warn("pool: health round skipped", "err", err)
			}
			return
		}
	}

	rs := newRoundState(mems)
	rs.noSweep = m.cfg.StrayGrace < 0 || !m.checkInstallation(ctx)
	m.pruneStrays(rs)
	sem := make(chan struct{}, maxParallelChecks)
	var wg sync.WaitGroup
	for _, mem := range mems {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			m.checkMember(ctx, mem, rs)
		})
	}
	wg.Wait()
}

// check runs one backend health check under DialTimeout.
func (m *Manager) check(ctx context.Context, b Backend) store.Health {
	cctx, cancel := context.WithTimeout(ctx, m.cfg.DialTimeout)
	defer cancel()
	keys, load, err := b.Health(cctx)
	h := store.Health{Up: err == nil, CheckedAt: time.Now(), Keys: keys, Load: load}
	if err != nil {
		h.LastError = err.Error()
	}
	return h
}

func (m *Manager) checkMember(ctx context.Context, mem store.Member, rs *roundState) {
	var h store.Health
	b, err := m.backend(ctx, mem)
	if err != nil {
		h = store.Health{CheckedAt: time.Now(), LastError: err.Error()}
	} else {
		h = m.check(ctx, b)
	}
	if mem.Backend == store.BackendStatic {
		// A static member cannot count its keys (it has no API): the
		// store's assignments to it can, one per live token.
		if assigned, err := rs.assigned.get(ctx, m.st); err == nil {
			h.Keys = len(assigned[mem.ID])
			h.Load = float64(h.Keys)
		}
	}
	if ctx.Err() != nil {
		return // shutting down: a cancelled check says nothing about the member
	}
	if h.Up {
		m.checksUp.Add(1)
	} else {
		m.checksDown.Add(1)
	}
	m.mu.Lock()
	m.placed[mem.ID] = 0
	m.members[mem.ID] = memberStat{up: h.Up, draining: mem.Draining, keys: h.Keys}
	m.mu.Unlock()
	if err := m.st.SetMemberHealth(ctx, mem.ID, h); err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			m.log.Warn("pool: recording health", "member", mem.ID, "err", err)
		} else {
			m.mu.Lock()
			delete(m.members, mem.ID) // removed meanwhile
			m.mu.Unlock()
		}
		return
	}
	if h.Up != mem.Health.Up {
		if h.Up {
			m.log.Info("pool: member up", "member", mem.ID, "keys", h.Keys)
		} else {
			m.log.Warn("pool: member down", "member", mem.ID, "err", h.LastError)
		}
		m.publish(ctx, store.Event{Kind: store.EventMemberChanged, MemberID: mem.ID})
	}
	if !h.Up {
		// Sightings age only while the member answers: after an outage
		// its keys need a full grace again.
		if k := serverKey(mem); k != "" {
			m.mu.Lock()
			delete(m.strays, k)
			m.mu.Unlock()
		}
		return
	}
	m.retryOrphans(ctx, mem, b, rs)
	m.reconcileKeys(ctx, mem, b, rs)
	cctx, cancel := context.WithTimeout(ctx, m.cfg.DialTimeout)
	defer cancel()
	tr, err := b.Transfer(cctx)
	if err != nil {
		m.log.Warn("pool: polling transfer", "member", mem.ID, "err", err)
		return
	}
	var sum int64
	for _, n := range tr {
		sum += n
	}
	m.mu.Lock()
	if _, ok := m.backends[mem.ID]; ok { // not removed meanwhile
		m.transfer[mem.ID] = sum
	}
	m.mu.Unlock()
}

// retryOrphans deletes keys whose earlier deletion failed, with fresh
// checks right before: the store is listed again (a key id it assigns on
// the member's server again is forgotten instead), and, on members that
// list their keys, so is the member: a key that is gone is forgotten, and
// so is one served with another secret than the one deleted (an ss-manager
// port handed out anew, by any process); one served without a secret in
// the listing (cut off) is kept pending, not deleted. Nothing is retried
// while a CreateKey on the server is in flight in this process or a
// listing fails.
func (m *Manager) retryOrphans(ctx context.Context, mem store.Member, b Backend, rs *roundState) {
	id := mem.ID
	m.mu.Lock()
	keys := maps.Clone(m.orphans[id])
	m.mu.Unlock()
	if len(keys) == 0 {
		return
	}
	var ak assignedKeys
	assigned, err := ak.get(ctx, m.st)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("pool: listing tokens for pending deletions", "member", id, "err", err)
		}
		return
	}
	var served map[string]listedKey
	if kl, ok := b.(keyLister); ok {
		cctx, cancel := context.WithTimeout(ctx, m.cfg.DialTimeout)
		served, err = kl.Keys(cctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				m.log.Warn("pool: listing the member's keys for pending deletions", "member", id, "err", err)
			}
			return
		}
	}
	forget := func(k string) {
		m.mu.Lock()
		delete(m.orphans[id], k)
		if len(m.orphans[id]) == 0 {
			delete(m.orphans, id)
		}
		m.mu.Unlock()
	}
	srv := serverOf(mem)
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		fp := keys[k]
		if rs.assignedOn(assigned, id, k) {
			m.log.Info("pool: pending deletion dropped; the key is assigned again", "member", id, "key", k)
			forget(k)
			continue
		}
		if served != nil {
			lk, ok := served[k]
			switch {
			case !ok:
				m.log.Info("pool: pending deletion dropped; the key is gone", "member", id, "key", k)
				forget(k)
				continue
			case fp != "" && lk.fp != "" && lk.fp != fp:
				m.log.Info("pool: pending deletion dropped; the key id serves another secret now", "member", id, "key", k)
				forget(k)
				continue
			case fp != "" && lk.fp == "":
				continue // cannot tell whose key it is now: kept pending
			}
		}
		m.mu.Lock()
		busy := m.creating[srv] > 0
		_, still := m.orphans[id][k]
		m.mu.Unlock()
		if busy {
			return
		}
		if !still {
			continue // created again by this process meanwhile
		}
		cctx, cancel := context.WithTimeout(ctx, m.cfg.DialTimeout)
		err := b.DeleteKey(cctx, k)
		cancel()
		if err != nil {
			m.keyFailed(ctx, mem.Backend, opDelete)
			m.log.Warn("pool: deleting key still fails", "member", id, "key", k, "err", err)
			continue
		}
		m.log.Info("pool: pending key deleted", "member", id, "key", k)
		forget(k)
	}
}
