package pool

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/httvps/httvps/store"
)

// maxRepairsPerRound bounds the keys one health round re-creates on one
// member; the rest are repaired in the next rounds.
const maxRepairsPerRound = 100

// keyLister is implemented by backends that can list the keys they serve
// (ss-manager, Outline). The health round compares that list with the
// store's assignments: it re-creates the keys a member lost (repairKeys)
// and deletes httvps's own keys that nothing assigns (sweepKeys). Static
// members have no per-key state and do not implement it.
type keyLister interface {
	// Keys returns the keys the member serves now, by backend key id.
	Keys(ctx context.Context) (map[string]listedKey, error)
}

// listedKey is what a member says about one of its keys.
type listedKey struct {
	// ours: httvps created the key (each backend's Keys says how it
	// tells); only such keys are ever swept.
	ours bool
	// fp fingerprints the key's secret (secretFP), so that a key id handed
	// out again with another secret (an ss-manager port) is told apart
	// from the key seen before; "" when unknown, and then never swept.
	fp string
}

// secretFP is a short hash of a key's method and password: it tells keys
// apart in memory without keeping their secret.
func secretFP(method, password string) string {
	sum := sha256.Sum256([]byte(method + "\x00" + password))
	return hex.EncodeToString(sum[:8])
}

// isTokenID reports whether id has the form store.NewID gives token IDs.
func isTokenID(id string) bool {
	b, err := base64.RawURLEncoding.DecodeString(id)
	return err == nil && len(b) == 16 && len(id) == 22
}

// assignedKeys is what the store says the members hold: member ID →
// backend key id → token ID, for tokens that are not revoked. One health
// round builds it at most once, on first use, and shares it between its
// member checks.
type assignedKeys struct {
	once     sync.Once
	byMember map[string]map[string]string
	err      error
}

func (ak *assignedKeys) get(ctx context.Context, st store.Store) (map[string]map[string]string, error) {
	ak.once.Do(func() {
		by := map[string]map[string]string{}
		for cursor := ""; ; {
			page, next, err := st.ListTokens(ctx, cursor, store.MaxPageSize)
			if err != nil {
				ak.err = err
				return
			}
			for _, t := range page {
				if t.Revoked {
					continue
				}
				for _, a := range t.Assignments {
					if by[a.MemberID] == nil {
						by[a.MemberID] = map[string]string{}
					}
					by[a.MemberID][a.BackendKeyID] = t.ID
				}
			}
			if next == "" {
				break
			}
			cursor = next
		}
		ak.byMember = by
	})
	return ak.byMember, ak.err
}

// Repairs returns how many lost keys the health rounds of this Manager have
// re-created.
func (m *Manager) Repairs() uint64 { return m.repairs.Load() }

// repairKeys re-creates, on an up member, the keys that the store assigns
// to it but that its backend no longer serves (have: an ss-manager
// restarted and forgot its ports, an Outline server was reinstalled), at
// most maxRepairsPerRound of them. The first failure ends the member's
// repairs for this round.
func (m *Manager) repairKeys(ctx context.Context, mem store.Member, b Backend, have map[string]listedKey, ak *assignedKeys) {
	assigned, err := ak.get(ctx, m.st)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("pool: listing tokens for key repair", "err", err)
		}
		return
	}
	want := assigned[mem.ID]
	if len(want) == 0 {
		return
	}
	var missing []string
	for keyID := range want {
		if _, ok := have[keyID]; !ok {
			missing = append(missing, keyID)
		}
	}
	if len(missing) == 0 {
		return
	}
	slices.Sort(missing)
	m.log.Warn("pool: member lost keys; re-creating them", "member", mem.ID, "missing", len(missing))
	if len(missing) > maxRepairsPerRound {
		missing = missing[:maxRepairsPerRound]
	}
	repaired := 0
	for _, keyID := range missing {
		ok, err := m.repairKey(ctx, mem, b, want[keyID], keyID)
		if err != nil {
			if ctx.Err() == nil {
				m.log.Warn("pool: re-creating key failed", "member", mem.ID, "token", want[keyID], "key", keyID, "err", err)
			}
			break
		}
		if ok {
			repaired++
		}
	}
	m.log.Info("pool: keys re-created", "member", mem.ID, "repaired", repaired, "missing", len(missing))
}

// repairKey re-creates token tokenID's key on mem, whose assignment names
// keyID. It reads the token again first (the round's list may be stale: a
// token revoked, deleted, drained or repaired meanwhile is left alone) and
// once more before storing a changed assignment, which replaces the old one
// in place (failover order is kept) and is announced with
// EventTokenChanged. A key that turns out not to be wanted any more is
// deleted again. It reports whether a key was re-created and kept.
func (m *Manager) repairKey(ctx context.Context, mem store.Member, b Backend, tokenID, keyID string) (bool, error) {
	t, err := m.st.GetToken(ctx, tokenID)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	isOld := func(a store.Assignment) bool { return a.MemberID == mem.ID && a.BackendKeyID == keyID }
	i := slices.IndexFunc(t.Assignments, isOld)
	if t.Revoked || i < 0 {
		return false, nil
	}
	if err := validKey(t); err != nil {
		m.log.Warn("pool: cannot re-create key", "member", mem.ID, "token", t.ID, "err", err)
		return false, nil
	}
	old := t.Assignments[i]
	// ss-manager waits for the spawned ss-server: two timeouts' worth.
	cctx, cancel := context.WithTimeout(ctx, 2*m.cfg.DialTimeout)
	done := m.beginCreate(mem)
	upstream, newID, err := b.CreateKey(cctx, t.ID, t.Cipher, t.SSPassword)
	done()
	cancel()
	if err != nil {
		m.keyFailed(ctx, mem.Backend, opCreate)
		return false, fmt.Errorf("member %s: %w", mem.ID, err)
	}
	m.created(mem, newID)
	newFP := tokenFP(t)
	a := store.Assignment{MemberID: mem.ID, Upstream: upstream, BackendKeyID: newID}
	if a == old {
		m.repairs.Add(1)
		m.log.Info("pool: key re-created", "member", mem.ID, "token", t.ID, "key", newID, "upstream", upstream)
		return true, nil
	}

	// The key now has another port or id: point the assignment at it.
	// A key that is not stored is deleted again, unless the token may
	// still use it under the same id (Outline key ids are token ids).
	discard := func(why string, t *store.Token) {
		if t == nil && newID == keyID {
			return
		}
		if t != nil && !t.Revoked && m.keyInUse(context.WithoutCancel(ctx), a, t.Assignments) {
			return
		}
		m.log.Info("pool: re-created key not stored; deleting it", "member", mem.ID, "token", tokenID, "key", newID, "why", why)
		m.deleteKey(context.WithoutCancel(ctx), a, newFP)
	}
	t, err = m.st.GetToken(ctx, tokenID)
	if errors.Is(err, store.ErrNotFound) {
		discard("token deleted", &store.Token{})
		return false, nil
	}
	if err != nil {
		discard("reading token failed", nil)
		return false, err
	}
	i = slices.Index(t.Assignments, old)
	if t.Revoked || i < 0 {
		discard("token revoked or reassigned", &t)
		return false, nil
	}
	next := slices.Clone(t.Assignments)
	next[i] = a
	if err := m.st.UpdateAssignments(ctx, t.ID, next); err != nil {
		discard("storing the assignment failed", nil)
		return false, err
	}
	m.repairs.Add(1)
	m.publish(ctx, store.Event{Kind: store.EventTokenChanged, TokenID: t.ID})
	m.log.Info("pool: key re-created", "member", mem.ID, "token", t.ID, "key", newID, "upstream", upstream,
		"oldKey", old.BackendKeyID, "oldUpstream", old.Upstream)
	return true, nil
}
