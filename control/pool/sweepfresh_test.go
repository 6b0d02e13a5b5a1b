package pool

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/httvps/httvps/control/pool/outlinefake"
	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/store"
	"github.com/httvps/httvps/store/redisstore"
)

// hookStore calls hooks around some store calls (others pass through).
type hookStore struct {
	store.Store
	mu        sync.Mutex
	afterList func() // after a ListTokens call returns
}

func (h *hookStore) ListTokens(ctx context.Context, cursor string, limit int) ([]store.Token, string, error) {
	toks, next, err := h.Store.ListTokens(ctx, cursor, limit)
	h.mu.Lock()
	f := h.afterList
	h.mu.Unlock()
	if f != nil {
		f()
	}
	return toks, next, err
}

// Between a round's listings and its deletion of a stray ss-manager port,
// another process deletes the stray itself, hands the port to a new token
// and stores it: the sweep's listings right before the deletion (store,
// then member) see the new secret and the new assignment, and leave it.
func TestSweepSSManagerPortReusedBeforeDeletionKept(t *testing.T) {
	raw := newStore(t)
	ssm := startSSManager(t)
	lo, _ := portRange(t, 1)
	mem := store.Member{ID: "a", Backend: store.BackendSSManager, Host: "127.0.0.1",
		SSManager: &store.SSManagerConfig{ManagerAddr: ssm.Addr, PortMin: lo, PortMax: lo}}
	hs := &hookStore{Store: raw}
	const grace = 300 * time.Millisecond
	cfg := Config{Logger: quiet, Replicas: 1, StrayGrace: grace, DialTimeout: 2 * time.Second}
	mA, mB := New(hs, cfg), New(raw, cfg)
	addMembers(t, mB, mem)
	ctx := ctxT(t)
	t1 := placeAndStore(t, mB, raw, newToken(t, raw))
	port := t1.Assignments[0].BackendKeyID
	if _, err := raw.RevokeToken(ctx, t1.ID); err != nil { // its deletion "failed": the port stays
		t.Fatal(err)
	}
	mA.round(ctx) // first sighting
	time.Sleep(grace + 100*time.Millisecond)

	var t2 store.Token
	calls := 0
	hs.mu.Lock()
	hs.afterList = func() {
		if calls++; calls != 2 { // 1: the round's listing; 2: the one before deleting
			return
		}
		bB, err := mB.backend(ctx, mem)
		if err != nil {
			t.Error(err)
			return
		}
		if err := bB.DeleteKey(ctx, port); err != nil {
			t.Error(err)
			return
		}
		if err := waitClosed(net.JoinHostPort("127.0.0.1", port), 5*time.Second); err != nil {
			t.Error(err)
			return
		}
		t2 = placeAndStore(t, mB, raw, newToken(t, raw))
	}
	hs.mu.Unlock()
	mA.round(ctx)
	hs.mu.Lock()
	hs.afterList = nil
	hs.mu.Unlock()
	if len(t2.Assignments) == 0 || t2.Assignments[0].BackendKeyID != port {
		t.Fatalf("setup: t2 %+v, want port %s", t2.Assignments, port)
	}
	if _, served := servedPorts(t, ssm.Addr)[port]; !served {
		t.Fatalf("port %s, the stored key of token %s, was deleted", port, t2.ID)
	}
	if n := mA.StraysDeleted(); n != 0 {
		t.Fatalf("StraysDeleted %d, want 0", n)
	}
}

// A key sighted before its member went down needs a full grace after the
// member answers again.
func TestSweepSightingResetWhileMemberDown(t *testing.T) {
	st := newStore(t)
	fake := outlinefake.Start(t, outlinefake.Options{SSServer: true})
	mem := outlineMember("b", fake)
	const grace = 300 * time.Millisecond
	m := New(st, Config{Logger: quiet, Replicas: 1, StrayGrace: grace, DialTimeout: time.Second})
	addMembers(t, m, mem)
	ctx := ctxT(t)
	b, err := m.backend(ctx, mem)
	if err != nil {
		t.Fatal(err)
	}
	id := store.NewID()
	if _, _, err := b.CreateKey(ctx, id, testMethod, newPassword()); err != nil {
		t.Fatal(err)
	}
	m.round(ctx) // sighted
	fake.SetUnavailable(true)
	m.round(ctx) // down
	time.Sleep(grace + 100*time.Millisecond)
	fake.SetUnavailable(false)
	m.round(ctx) // back: sighted anew
	if mm, _ := st.GetMember(ctx, "b"); !mm.Health.Up {
		t.Fatalf("member down after the fake answers again: %s", mm.Health.LastError)
	}
	if !hasKey(fake, id) {
		t.Fatal("the key was deleted on the first round after the member came back")
	}
	time.Sleep(grace + 100*time.Millisecond)
	m.round(ctx)
	if hasKey(fake, id) || m.StraysDeleted() != 1 {
		t.Fatalf("after a grace with the member up: key there %v, swept %d", hasKey(fake, id), m.StraysDeleted())
	}
}

// Two entries for one ss-manager, by IP and by name, are one server: a
// token gets one replica there.
func TestSSManagerAddrByNameIsSameServer(t *testing.T) {
	ips, err := net.LookupIP("localhost")
	if err != nil || len(ips) == 0 || !ips[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Skipf("localhost does not resolve to 127.0.0.1 first: %v %v", ips, err)
	}
	st := newStore(t)
	ssm := startSSManager(t)
	_, port, _ := net.SplitHostPort(ssm.Addr)
	m := New(st, Config{Logger: quiet, Replicas: 2, StrayGrace: -1})
	byIP := ssmMember(t, "ip", ssm)
	byName := ssmMember(t, "name", ssm)
	byName.SSManager.ManagerAddr = net.JoinHostPort("localhost", port)
	addMembers(t, m, byIP, byName)
	if serverKey(byIP) != serverKey(byName) {
		t.Fatalf("server keys differ: %q %q", serverKey(byIP), serverKey(byName))
	}
	tok := placeAndStore(t, m, st, newToken(t, st))
	if len(tok.Assignments) != 1 {
		t.Fatalf("one ss-manager got %d replicas: %+v", len(tok.Assignments), tok.Assignments)
	}
}

// Redis loses its data under a running Manager: the store makes a new
// installation ID, every key looks stray; the Manager notices the changed
// ID and stops sweeping instead of deleting them.
func TestSweepStopsWhenInstallationIDChanges(t *testing.T) {
	r := testpeer.StartRedis(t, testpeer.RedisSpec{})
	ctx := ctxT(t)
	st, err := redisstore.New(ctx, r.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fake := outlinefake.Start(t, outlinefake.Options{})
	const grace = 300 * time.Millisecond
	m := New(st, Config{Logger: quiet, Replicas: 1, StrayGrace: grace, DialTimeout: 2 * time.Second})
	addMembers(t, m, outlineMember("b", fake))
	for range 3 {
		placeAndStore(t, m, st, newToken(t, st))
	}
	m.round(ctx)
	r.Kill()
	if err := r.Start(); err != nil { // same port, no data
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the store answering again", func() bool {
		return st.PutMember(ctx, outlineMember("b", fake)) == nil
	})
	m.round(ctx)
	time.Sleep(grace + 100*time.Millisecond)
	m.round(ctx)
	if n := len(fake.Keys()); n != 3 || m.StraysDeleted() != 0 {
		t.Fatalf("after the store lost its data: %d of 3 keys left, %d swept", n, m.StraysDeleted())
	}
}
