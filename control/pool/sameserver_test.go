package pool

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/httvps/httvps/control/pool/outlinefake"
	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/store"
)

// refusingStore refuses every UpdateAssignments.
type refusingStore struct{ store.Store }

var errRefused = errors.New("store refused (test)")

func (refusingStore) UpdateAssignments(context.Context, string, []store.Assignment) error {
	return errRefused
}

// twoEntriesOneServer registers one Outline fake (with real ss-servers)
// as members b1 and b2.
func twoEntriesOneServer(t *testing.T, m *Manager) *outlinefake.Server {
	t.Helper()
	fake := outlinefake.Start(t, outlinefake.Options{SSServer: true})
	addMembers(t, m, outlineMember("b1", fake), outlineMember("b2", fake))
	return fake
}

// Draining one of two member entries for one Outline server moves the
// token onto the other: PUT answers 409 with the same secret and the key
// is reused, so the drained assignment's key is the new one's and must
// not be deleted.
func TestDrainOntoSameServerKeepsKey(t *testing.T) {
	origin := testpeer.StartOrigin(t)
	st := newStore(t)
	m := New(st, Config{Logger: quiet, Replicas: 1, StrayGrace: -1})
	fake := twoEntriesOneServer(t, m)
	ctx := ctxT(t)
	tok := placeAndStore(t, m, st, newToken(t, st))
	from := tok.Assignments[0].MemberID
	if err := m.DrainMember(ctx, from); err != nil {
		t.Fatal(err)
	}
	got, err := st.GetToken(ctx, tok.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Assignments) != 1 || got.Assignments[0].MemberID == from {
		t.Fatalf("assignments after draining %s: %+v", from, got.Assignments)
	}
	if !hasKey(fake, tok.ID) {
		t.Fatalf("the key the new assignment (%s) names was deleted", got.Assignments[0].MemberID)
	}
	if err := fetchThrough(got.Assignments[0].Upstream, tok.Cipher, tok.SSPassword, origin, 256<<10, 11); err != nil {
		t.Fatal(err)
	}
}

// With two entries for one server, a token gets one replica there, not
// two; a token stored with both (placed before that rule) keeps its key
// when a drain with nowhere else to go drops the drained replica.
func TestDrainDropReplicaSameServerKeepsKey(t *testing.T) {
	origin := testpeer.StartOrigin(t)
	st := newStore(t)
	m := New(st, Config{Logger: quiet, Replicas: 2, StrayGrace: -1})
	fake := twoEntriesOneServer(t, m)
	ctx := ctxT(t)
	tok := placeAndStore(t, m, st, newToken(t, st))
	if len(tok.Assignments) != 1 {
		t.Fatalf("two entries for one server got %d replicas: %+v", len(tok.Assignments), tok.Assignments)
	}
	// The state an older version stored: both entries name the key.
	a := tok.Assignments[0]
	other := "b2"
	if a.MemberID == "b2" {
		other = "b1"
	}
	both := []store.Assignment{a, {MemberID: other, Upstream: a.Upstream, BackendKeyID: a.BackendKeyID}}
	if err := st.UpdateAssignments(ctx, tok.ID, both); err != nil {
		t.Fatal(err)
	}
	if err := m.DrainMember(ctx, a.MemberID); err != nil {
		t.Fatal(err)
	}
	got, _ := st.GetToken(ctx, tok.ID)
	if len(got.Assignments) != 1 || got.Assignments[0].MemberID != other {
		t.Fatalf("assignments after draining %s: %+v", a.MemberID, got.Assignments)
	}
	if !hasKey(fake, tok.ID) {
		t.Fatal("the key the remaining assignment names was deleted")
	}
	if err := fetchThrough(got.Assignments[0].Upstream, tok.Cipher, tok.SSPassword, origin, 64<<10, 12); err != nil {
		t.Fatal(err)
	}
	// RemoveKey deletes it (once).
	if err := m.RemoveKey(ctx, got); err != nil {
		t.Fatal(err)
	}
	if hasKey(fake, tok.ID) {
		t.Fatal("RemoveKey left the key")
	}
}

// A drain onto a sibling entry whose store write fails must not delete
// the reused key: the stored assignment still names it.
func TestDrainOntoSameServerStoreRefusedKeepsKey(t *testing.T) {
	raw := newStore(t)
	m := New(raw, Config{Logger: quiet, Replicas: 1, StrayGrace: -1})
	fake := twoEntriesOneServer(t, m)
	ctx := ctxT(t)
	tok := placeAndStore(t, m, raw, newToken(t, raw))
	from := tok.Assignments[0].MemberID
	mr := New(refusingStore{raw}, Config{Logger: quiet, Replicas: 1, StrayGrace: -1})
	if err := mr.DrainMember(ctx, from); !errors.Is(err, errRefused) {
		t.Fatalf("drain: %v, want the store's refusal", err)
	}
	got, _ := raw.GetToken(ctx, tok.ID)
	if len(got.Assignments) != 1 || got.Assignments[0] != tok.Assignments[0] {
		t.Fatalf("stored assignments changed: %+v", got.Assignments)
	}
	if !hasKey(fake, tok.ID) {
		t.Fatal("the stored assignment's key was deleted after the store refused the move")
	}
}

func hasKey(f *outlinefake.Server, id string) bool { return fakeKey(f, id).ID != "" }

// The sweep is on by default only for a Manager that is the only one over
// its store.
func TestStrayGraceDefaultBySingleProcess(t *testing.T) {
	if g := (Config{}).withDefaults().StrayGrace; g >= 0 {
		t.Errorf("shared store, StrayGrace 0: %v, want the sweep off (negative)", g)
	}
	if g := (Config{SingleProcess: true}).withDefaults().StrayGrace; g != DefaultStrayGrace {
		t.Errorf("single process, StrayGrace 0: %v, want %v", g, DefaultStrayGrace)
	}
	if g := (Config{StrayGrace: time.Second}).withDefaults().StrayGrace; g != time.Second {
		t.Errorf("shared store, explicit StrayGrace: %v", g)
	}
	if g := (Config{StrayGrace: -1, SingleProcess: true}).withDefaults().StrayGrace; g >= 0 {
		t.Errorf("single process, negative StrayGrace: %v", g)
	}
}
