package pool

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/httvps/httvps/store"
)

// candidates returns the members that can take t's key now, best first:
// up, not draining, not already holding the key, not reaching a server
// (serverKey) that one of t's assignments other than t.Assignments[replacing]
// reaches already (replacing < 0: none is being replaced), and (for static
// members) serving t's own cipher and password. Lower load, then fewer
// keys, wins; keys placed since the member's last health check count as
// load.
//
// Two member entries for one server share its keys: a key placed through
// one is the key (Outline: the same id, reused after a 409) of the other,
// so a second replica there would add nothing, and deleting one
// assignment's key would delete the other's.
func (m *Manager) candidates(ctx context.Context, t store.Token, replacing int) ([]store.Member, error) {
	all, err := m.st.ListMembers(ctx)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]store.Member, len(all))
	for _, mem := range all {
		byID[mem.ID] = mem
	}
	taken := map[string]bool{}
	for i, a := range t.Assignments {
		if mem, ok := byID[a.MemberID]; ok && i != replacing {
			if k := serverKey(mem); k != "" {
				taken[k] = true
			}
		}
	}
	type scored struct {
		mem  store.Member
		load float64
		keys int
	}
	var out []scored
	for _, mem := range all {
		if !mem.Health.Up || mem.Draining {
			continue
		}
		if slices.ContainsFunc(t.Assignments, func(a store.Assignment) bool { return a.MemberID == mem.ID }) {
			continue
		}
		if k := serverKey(mem); k != "" && taken[k] {
			continue
		}
		if mem.Backend == store.BackendStatic && (mem.Static == nil || !newStatic(mem.Host, *mem.Static).accepts(t.Cipher, t.SSPassword)) {
			continue
		}
		m.mu.Lock()
		p := m.placed[mem.ID]
		m.mu.Unlock()
		out = append(out, scored{mem, mem.Health.Load + float64(p), mem.Health.Keys + p})
	}
	slices.SortStableFunc(out, func(a, b scored) int {
		return cmp.Or(cmp.Compare(a.load, b.load), cmp.Compare(a.keys, b.keys), cmp.Compare(a.mem.ID, b.mem.ID))
	})
	mems := make([]store.Member, len(out))
	for i, s := range out {
		mems[i] = s.mem
	}
	return mems, nil
}

// placeOn creates t's key on one member.
func (m *Manager) placeOn(ctx context.Context, mem store.Member, t store.Token) (store.Assignment, error) {
	b, err := m.backend(ctx, mem)
	if err != nil {
		return store.Assignment{}, err
	}
	// ss-manager waits for the spawned ss-server: two timeouts' worth.
	cctx, cancel := context.WithTimeout(ctx, 2*m.cfg.DialTimeout)
	defer cancel()
	done := m.beginCreate(mem)
	upstream, keyID, err := b.CreateKey(cctx, t.ID, t.Cipher, t.SSPassword)
	done()
	if err != nil {
		m.keyFailed(ctx, mem.Backend, opCreate)
		return store.Assignment{}, fmt.Errorf("member %s: %w", mem.ID, err)
	}
	m.mu.Lock()
	m.placed[mem.ID]++
	m.mu.Unlock()
	m.created(mem, keyID)
	return store.Assignment{MemberID: mem.ID, Upstream: upstream, BackendKeyID: keyID}, nil
}

// place creates t's key on up to n candidate members (candidates with
// replacing), trying the next candidate when one fails, at most one per
// server.
func (m *Manager) place(ctx context.Context, t store.Token, n, replacing int) ([]store.Assignment, error) {
	cands, err := m.candidates(ctx, t, replacing)
	if err != nil {
		return nil, err
	}
	if len(cands) == 0 {
		return nil, ErrNoMembers
	}
	var (
		out  []store.Assignment
		errs []error
		used = map[string]bool{}
	)
	for _, mem := range cands {
		if len(out) == n {
			break
		}
		k := serverKey(mem)
		if k != "" && used[k] {
			continue
		}
		a, err := m.placeOn(ctx, mem, t)
		if err != nil {
			m.log.Warn("pool: placing key failed", "token", t.ID, "member", mem.ID, "err", err)
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if k != "" {
			used[k] = true
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: every candidate failed: %w", ErrNoMembers, errors.Join(errs...))
	}
	return out, nil
}

func validKey(t store.Token) error {
	switch {
	case t.ID == "":
		return fmt.Errorf("%w: token has no ID", store.ErrInvalid)
	case !store.ValidCipher(t.Cipher):
		return fmt.Errorf("%w: token cipher %q is not supported", store.ErrInvalid, t.Cipher)
	case t.SSPassword == "":
		return fmt.Errorf("%w: token has no Shadowsocks password", store.ErrInvalid)
	}
	return nil
}

// PlaceKey creates t's Shadowsocks key (t.ID as the key's id and name,
// t.Cipher, t.SSPassword) on Replicas members, skipping members already in
// t.Assignments, and returns the new assignments best first; the caller
// stores them with UpdateAssignments. If fewer than Replicas members took
// the key but at least one did, those are returned without error. With no
// eligible member the error is ErrNoMembers; when every eligible member
// failed it wraps ErrNoMembers and the members' errors.
func (m *Manager) PlaceKey(ctx context.Context, t store.Token) ([]store.Assignment, error) {
	if err := validKey(t); err != nil {
		return nil, err
	}
	out, err := m.place(ctx, t, m.cfg.Replicas, -1)
	if err == nil && len(out) < m.cfg.Replicas {
		m.log.Warn("pool: key placed on fewer members than configured", "token", t.ID, "placed", len(out), "replicas", m.cfg.Replicas)
	}
	return out, err
}

// tokenFP is the secret fingerprint of t's key ("" if t carries no secret).
func tokenFP(t store.Token) string {
	if t.SSPassword == "" {
		return ""
	}
	return secretFP(t.Cipher, t.SSPassword)
}

// deleteKey removes one assignment's key, whose secret fingerprint is fp
// ("" unknown); a failure is remembered and retried by the health loop
// while the member is up (retryOrphans, which checks fp first).
func (m *Manager) deleteKey(ctx context.Context, a store.Assignment, fp string) {
	mem, err := m.st.GetMember(ctx, a.MemberID)
	if errors.Is(err, store.ErrNotFound) {
		return
	}
	if err == nil {
		var b Backend
		if b, err = m.backend(ctx, mem); err == nil {
			cctx, cancel := context.WithTimeout(ctx, m.cfg.DialTimeout)
			err = b.DeleteKey(cctx, a.BackendKeyID)
			cancel()
			if err != nil {
				m.keyFailed(ctx, mem.Backend, opDelete)
			}
		}
	}
	if err != nil {
		m.log.Warn("pool: deleting key failed; retried when the member is up", "member", a.MemberID, "key", a.BackendKeyID, "err", err)
		m.mu.Lock()
		if m.orphans[a.MemberID] == nil {
			m.orphans[a.MemberID] = map[string]string{}
		}
		m.orphans[a.MemberID][a.BackendKeyID] = fp
		m.mu.Unlock()
	}
}

// RemoveKey deletes t's key from every assigned member, best effort: a
// member that cannot be reached is logged and its key is deleted by the
// health loop once the member answers again (a pending deletion held by
// this process, or, after a restart or by another process, the stray-key
// sweep; see docs/05-outline-pool.md). It returns an error only
// for an invalid token or an ended ctx. Call it once t is revoked or its
// assignments are no longer stored: the health round re-creates the keys of
// stored, unrevoked assignments that a member lacks.
func (m *Manager) RemoveKey(ctx context.Context, t store.Token) error {
	if t.ID == "" {
		return fmt.Errorf("%w: token has no ID", store.ErrInvalid)
	}
	mems, _ := m.memberMap(ctx) // nil: no two assignments count as one key
	for i, a := range t.Assignments {
		if slices.ContainsFunc(t.Assignments[:i], func(x store.Assignment) bool { return sameKey(mems, a, x) }) {
			continue // the same key through another entry for its server: deleted already
		}
		m.deleteKey(ctx, a, tokenFP(t))
	}
	return ctx.Err()
}

// DrainMember marks the member draining (it gets no new keys, and
// EventMemberChanged is published), then moves every key it holds: the key
// is placed on another eligible member, the token's assignment to the
// drained member is replaced by the new one in place (failover order is
// kept), EventTokenChanged is published, and only then is the key deleted
// from the drained member. A key with no other member to go to stays where
// it is unless the token has other assignments (then the drained one is just
// dropped); such keys make DrainMember return an error wrapping
// ErrNoMembers, and calling it again retries them. Keys of revoked tokens
// are deleted, not moved.
func (m *Manager) DrainMember(ctx context.Context, id string) error {
	mem, err := m.st.GetMember(ctx, id)
	if err != nil {
		return err
	}
	if !mem.Draining {
		mem.Draining = true
		if err := m.st.PutMember(ctx, mem); err != nil {
			return err
		}
		m.publish(ctx, store.Event{Kind: store.EventMemberChanged, MemberID: id})
		m.log.Info("pool: draining member", "member", id)
	}
	var errs []error
	moved := 0
	err = m.tokensOn(ctx, id, func(t store.Token, _ int) error {
		if err := m.moveKey(ctx, t.ID, id); err != nil {
			errs = append(errs, err)
			return ctx.Err() // keep going unless the request is over
		}
		moved++
		return nil
	})
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	m.log.Info("pool: member drained", "member", id, "moved", moved, "failed", len(errs))
	return errors.Join(errs...)
}

// moveKey moves token tokenID's key off member from.
func (m *Manager) moveKey(ctx context.Context, tokenID, from string) error {
	t, err := m.st.GetToken(ctx, tokenID) // fresh: the page may be stale
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	i := slices.IndexFunc(t.Assignments, func(a store.Assignment) bool { return a.MemberID == from })
	if i < 0 {
		return nil
	}
	old := t.Assignments[i]
	next := slices.Clone(t.Assignments)
	if t.Revoked {
		next = slices.Delete(next, i, i+1)
	} else {
		placed, err := m.place(ctx, t, 1, i)
		switch {
		case err == nil:
			next[i] = placed[0]
		case len(t.Assignments) > 1 && errors.Is(err, ErrNoMembers):
			m.log.Warn("pool: no member to move key to; dropping the drained replica", "token", t.ID, "member", from, "err", err)
			next = slices.Delete(next, i, i+1)
		default:
			return fmt.Errorf("pool: token %s stays on member %s: %w", t.ID, from, err)
		}
	}
	if err := m.st.UpdateAssignments(ctx, t.ID, next); err != nil {
		// Do not leave the new key behind if the store refused, unless it
		// is the key a stored assignment names (a sibling entry for the
		// drained member's server reused its key).
		uctx := context.WithoutCancel(ctx)
		for _, a := range next {
			if !slices.Contains(t.Assignments, a) && !m.keyInUse(uctx, a, t.Assignments) {
				m.deleteKey(uctx, a, tokenFP(t))
			}
		}
		return err
	}
	m.publish(ctx, store.Event{Kind: store.EventTokenChanged, TokenID: t.ID})
	if m.keyInUse(ctx, old, next) {
		m.log.Info("pool: drained assignment's key kept; the token's new assignment names it", "token", t.ID, "member", from, "key", old.BackendKeyID)
		return nil
	}
	m.deleteKey(ctx, old, tokenFP(t))
	return nil
}

// memberMap lists the members by ID.
func (m *Manager) memberMap(ctx context.Context) (map[string]store.Member, error) {
	all, err := m.st.ListMembers(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]store.Member, len(all))
	for _, mem := range all {
		out[mem.ID] = mem
	}
	return out, nil
}

// keyInUse reports whether one of others names a's key (sameKey: the same
// key id on the same server). If the members cannot be listed it says yes:
// a key left behind is swept later, a key deleted in use is an outage.
func (m *Manager) keyInUse(ctx context.Context, a store.Assignment, others []store.Assignment) bool {
	if !slices.ContainsFunc(others, func(x store.Assignment) bool { return x.BackendKeyID == a.BackendKeyID }) {
		return false
	}
	mems, err := m.memberMap(ctx)
	if err != nil {
		m.log.Warn("pool: listing members to check a key before deleting it; key left", "member", a.MemberID, "key", a.BackendKeyID, "err", err)
		return true
	}
	return slices.ContainsFunc(others, func(x store.Assignment) bool { return sameKey(mems, a, x) })
}

// RemoveMember drains the member and, once no key is left on it, deletes it
// and publishes EventMemberChanged. If draining fails the member stays (still
// draining) and the error is returned. Keys whose deletion from the member
// failed (it was unreachable) are logged and left on the server: no health
// round reaches a removed member.
func (m *Manager) RemoveMember(ctx context.Context, id string) error {
	mem, err := m.st.GetMember(ctx, id)
	if err != nil {
		return err
	}
	// A remove that cannot finish changes nothing: every key must have
	// somewhere to go before the member is marked draining.
	if err := m.checkMovable(ctx, id); err != nil {
		return fmt.Errorf("pool: member %s not removed: %w", id, err)
	}
	if err := m.DrainMember(ctx, id); err != nil {
		if !mem.Draining {
			// Failed half-way (a backend, the store): it serves again;
			// the keys already moved stay where they went.
			if uerr := m.UndrainMember(context.WithoutCancel(ctx), id); uerr != nil {
				m.log.Warn("pool: member left draining after a failed remove", "member", id, "err", uerr)
			}
		}
		return fmt.Errorf("pool: member %s not removed: %w", id, err)
	}
	if err := m.st.DeleteMember(ctx, id); err != nil {
		return err
	}
	m.mu.Lock()
	var left []string
	for k := range m.orphans[id] {
		left = append(left, k)
	}
	m.mu.Unlock()
	if len(left) > 0 {
		// No round reaches a removed member: these stay on the server.
		slices.Sort(left)
		m.log.Warn("pool: member removed with keys it could not delete; they stay on the server", "member", id, "keys", left)
	}
	m.forget(id)
	m.publish(ctx, store.Event{Kind: store.EventMemberChanged, MemberID: id})
	m.log.Info("pool: member removed", "member", id)
	return nil
}

// UndrainMember lets the pool place keys on a draining member again.
// Keys already moved off it stay where they are.
func (m *Manager) UndrainMember(ctx context.Context, id string) error {
	mem, err := m.st.GetMember(ctx, id)
	if err != nil {
		return err
	}
	if !mem.Draining {
		return nil
	}
	mem.Draining = false
	if err := m.st.PutMember(ctx, mem); err != nil {
		return err
	}
	m.publish(ctx, store.Event{Kind: store.EventMemberChanged, MemberID: id})
	m.log.Info("pool: member undrained", "member", id)
	return nil
}

// checkMovable reports, without changing anything, whether every key on
// member id could leave it: each live token assigned there has another
// member that takes it, or other assignments to keep (then the drained one
// is just dropped). A key that cannot leave is an error wrapping
// ErrNoMembers.
func (m *Manager) checkMovable(ctx context.Context, id string) error {
	stuck := 0
	err := m.tokensOn(ctx, id, func(t store.Token, i int) error {
		if t.Revoked || len(t.Assignments) > 1 {
			return nil
		}
		cands, err := m.candidates(ctx, t, i)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(cands, func(c store.Member) bool { return c.ID != id }) {
			stuck++
		}
		return nil
	})
	if err != nil {
		return err
	}
	if stuck > 0 {
		return fmt.Errorf("%w: %d keys have no other member to move to", ErrNoMembers, stuck)
	}
	return nil
}

// tokensOn calls f for every stored token with an assignment to member id
// (i: that assignment's index), page by page. It stops at the first error,
// f's or the listing's.
func (m *Manager) tokensOn(ctx context.Context, id string, f func(t store.Token, i int) error) error {
	for cursor := ""; ; {
		page, next, err := m.st.ListTokens(ctx, cursor, store.MaxPageSize)
		if err != nil {
			return err
		}
		for _, t := range page {
			if i := slices.IndexFunc(t.Assignments, func(a store.Assignment) bool { return a.MemberID == id }); i >= 0 {
				if err := f(t, i); err != nil {
					return err
				}
			}
		}
		if next == "" {
			return nil
		}
		cursor = next
	}
}
