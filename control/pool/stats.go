package pool

import (
	"context"

	"github.com/httvps/httvps/store"
)

// Backends lists the member backend kinds, in the order Stats reports
// them.
var Backends = []string{store.BackendOutlineAPI, store.BackendSSManager, store.BackendStatic}

// Key operations counted in KeyErrors.
const (
	opCreate = iota
	opDelete
)

// Stats is a snapshot of a Manager's figures, for the control plane's
// metrics. Members are as this Manager's last health round saw them; the
// counters count since the Manager was made.
type Stats struct {
	// MembersUp, MembersDown and MembersDraining count the members by
	// state at their last check: a draining member counts as draining
	// whatever its health.
	MembersUp, MembersDown, MembersDraining int
	// MemberKeys is the number of keys each member's backend reported at
	// its last check, by member ID.
	MemberKeys map[string]int
	// Transfer is the last polled byte total per member (see Transfer).
	Transfer map[string]int64
	// HealthChecksUp and HealthChecksDown count member checks by result.
	HealthChecksUp, HealthChecksDown uint64
	// Repairs is Repairs(); StraysDeleted is StraysDeleted().
	Repairs, StraysDeleted uint64
	// PendingDeletions is the keys whose deletion failed, waiting for
	// their member to answer again (held in this process's memory).
	PendingDeletions int
	// StrayKeys is the keys the health rounds found stray and will delete
	// once their grace has passed.
	StrayKeys int
	// CreateErrors and DeleteErrors count failed CreateKey and DeleteKey
	// calls by backend kind (every kind of Backends is present).
	CreateErrors, DeleteErrors map[string]uint64
}

// memberStat is a member as its last check saw it.
type memberStat struct {
	up, draining bool
	keys         int
}

// Stats returns a snapshot of the Manager's figures.
func (m *Manager) Stats() Stats {
	s := Stats{
		HealthChecksUp:   m.checksUp.Load(),
		HealthChecksDown: m.checksDown.Load(),
		Repairs:          m.repairs.Load(),
		StraysDeleted:    m.swept.Load(),
		CreateErrors:     make(map[string]uint64, len(Backends)),
		DeleteErrors:     make(map[string]uint64, len(Backends)),
	}
	for i, kind := range Backends {
		s.CreateErrors[kind] = m.keyErrors[i][opCreate].Load()
		s.DeleteErrors[kind] = m.keyErrors[i][opDelete].Load()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s.MemberKeys = make(map[string]int, len(m.members))
	for id, ms := range m.members {
		switch {
		case ms.draining:
			s.MembersDraining++
		case ms.up:
			s.MembersUp++
		default:
			s.MembersDown++
		}
		s.MemberKeys[id] = ms.keys
	}
	s.Transfer = make(map[string]int64, len(m.transfer))
	for id, n := range m.transfer {
		s.Transfer[id] = n
	}
	for _, keys := range m.orphans {
		s.PendingDeletions += len(keys)
	}
	for _, keys := range m.strays {
		s.StrayKeys += len(keys)
	}
	return s
}

// keyFailed counts a failed CreateKey or DeleteKey on a member of backend
// kind, unless ctx ended (a shutdown says nothing about the member).
func (m *Manager) keyFailed(ctx context.Context, kind string, op int) {
	if ctx.Err() != nil {
		return
	}
	for i, k := range Backends {
		if k == kind {
			m.keyErrors[i][op].Add(1)
			return
		}
	}
}
