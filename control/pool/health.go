package pool

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/httvps/httvps/control/store"
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

// retryOrphans deletes keys whose earlier deletion failed. A key id the
// store assigns to the member again (an ss-manager port handed out anew)
// is forgotten instead; if the store cannot be listed, nothing is retried.
func (m *Manager) retryOrphans(ctx context.Context, mem store.Member, b Backend, rs *roundState) {
	id := mem.ID
	m.mu.Lock()
	var keys []string
	for k := range m.orphans[id] {
		keys = append(keys, k)
	}
	m.mu.Unlock()
	if len(keys) == 0 {
		return
	}
	assigned, err := rs.assigned.get(ctx, m.st)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("pool: listing tokens for pending deletions", "member", id, "err", err)
		}
		return
	}
	forget := func(k string) {
		m.mu.Lock()
		delete(m.orphans[id], k)
		if len(m.orphans[id]) == 0 {
			delete(m.orphans, id)
		}
		m.mu.Unlock()
	}
	for _, k := range keys {
		if rs.assignedOn(assigned, id, k) {
			m.log.Info("pool: pending deletion dropped; the key is assigned again", "member", id, "key", k)
			forget(k)
			continue
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
