package pool

import (
	"context"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/httvps/httvps/control/pool/outlinefake"
	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/store"
)

// An ss-manager that crashed and was restarted serves no ports; the health
// rounds re-create the keys (a revoked token's excepted) and point the
// assignments at the new ports.
func TestRepairAfterSSManagerRestart(t *testing.T) {
	origin := testpeer.StartOrigin(t)
	st := newStore(t)
	const every = time.Second
	m := New(st, Config{Logger: quiet, HealthEvery: every, DialTimeout: every, Replicas: 1})
	ssm := startSSManager(t)
	mem := ssmMember(t, "a", ssm)
	addMembers(t, m, mem)
	tok := placeAndStore(t, m, st, newToken(t, st))
	revoked := placeAndStore(t, m, st, newToken(t, st))
	if _, err := st.RevokeToken(ctxT(t), revoked.ID); err != nil {
		t.Fatal(err)
	}
	old := tok.Assignments[0]
	if err := fetchThrough(old.Upstream, tok.Cipher, tok.SSPassword, origin, 256<<10, 1); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	events, err := st.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	ssm.Kill(t)
	if err := waitClosed(old.Upstream, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// Hold the old port so the key must move to another one (ss-manager
	// refuses ports it cannot bind).
	ln, err := net.Listen("tcp", old.Upstream)
	if err != nil {
		t.Skipf("cannot hold the old port: %v", err)
	}
	defer ln.Close()
	ssm2 := startSSManagerAt(t, ssm.Addr)
	restarted := time.Now()

	var got store.Token
	waitFor(t, 3*every+2*time.Second, "key re-created and reassigned", func() bool {
		got, err = st.GetToken(context.Background(), tok.ID)
		return err == nil && len(got.Assignments) == 1 && got.Assignments[0] != old
	})
	t.Logf("repaired %v after the restart", time.Since(restarted).Round(time.Millisecond))
	a := got.Assignments[0]
	if a.MemberID != "a" || a.Upstream != net.JoinHostPort("127.0.0.1", a.BackendKeyID) {
		t.Fatalf("repaired assignment %+v", a)
	}
	if _, port := splitPort(t, a.Upstream); port < mem.SSManager.PortMin || port > mem.SSManager.PortMax || port == 0 {
		t.Fatalf("repaired port %d outside %d..%d", port, mem.SSManager.PortMin, mem.SSManager.PortMax)
	}
	stat, err := newSSManager("127.0.0.1", store.SSManagerConfig{ManagerAddr: ssm2.Addr}, Config{}.withDefaults()).stat(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := stat[a.BackendKeyID]; !ok || len(stat) != 1 {
		t.Fatalf("restarted ss-manager serves %v, want only port %s (the revoked token's key must not come back)", stat, a.BackendKeyID)
	}
	if err := fetchThrough(a.Upstream, tok.Cipher, tok.SSPassword, origin, 1<<20+7, 2); err != nil {
		t.Fatalf("traffic through the re-created key: %v", err)
	}
	if n := m.Repairs(); n != 1 {
		t.Fatalf("Repairs() = %d, want 1", n)
	}
	waitEvent(t, events, store.Event{Kind: store.EventTokenChanged, TokenID: tok.ID})
	// Later rounds find nothing to repair.
	time.Sleep(2 * every)
	if n := m.Repairs(); n != 1 {
		t.Fatalf("Repairs() = %d after more rounds, want 1", n)
	}
	if again, _ := st.GetToken(context.Background(), tok.ID); !slices.Equal(again.Assignments, got.Assignments) {
		t.Fatalf("assignment changed again: %+v", again.Assignments)
	}
}

// A key deleted behind the Manager's back on an Outline server is created
// again with the same id and secret, and the assignment follows the key's
// port (the fake gives the new key's ss-server a port of its own; a real
// Outline server keeps its one port). Revoked tokens' keys are not
// re-created.
func TestRepairOutlineKey(t *testing.T) {
	origin := testpeer.StartOrigin(t)
	st := newStore(t)
	m := New(st, Config{Logger: quiet, Replicas: 1})
	fake := outlinefake.Start(t, outlinefake.Options{SSServer: true})
	addMembers(t, m, outlineMember("b", fake))
	ctx := ctxT(t)
	tok := placeAndStore(t, m, st, newToken(t, st))
	revoked := placeAndStore(t, m, st, newToken(t, st))
	if _, err := st.RevokeToken(ctx, revoked.ID); err != nil {
		t.Fatal(err)
	}
	events, err := st.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}

	m.round(ctx) // nothing lost: nothing to do
	if n := m.Repairs(); n != 0 {
		t.Fatalf("Repairs() = %d with no key lost", n)
	}
	for _, id := range []string{tok.ID, revoked.ID} {
		if !fake.DropKey(id) {
			t.Fatalf("no key %s to drop", id)
		}
	}
	m.round(ctx)
	keys := fake.Keys()
	if len(keys) != 1 {
		t.Fatalf("after repair the server has %+v, want only the token's key", keys)
	}
	k := keys[0]
	inst, err := st.InstallationID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if k.ID != tok.ID || k.Name != keyName(inst[:installMarkLen], tok.ID) || k.Password != tok.SSPassword || k.Method != tok.Cipher {
		t.Fatalf("re-created key %+v, want id %s, the installation's name and the token's secret", k, tok.ID)
	}
	if n := m.Repairs(); n != 1 {
		t.Fatalf("Repairs() = %d, want 1", n)
	}
	got, err := st.GetToken(ctx, tok.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := store.Assignment{MemberID: "b", Upstream: net.JoinHostPort("127.0.0.1", strconv.Itoa(k.Port)), BackendKeyID: tok.ID}
	if len(got.Assignments) != 1 || got.Assignments[0] != want {
		t.Fatalf("assignments %+v, want %+v", got.Assignments, want)
	}
	if err := fetchThrough(want.Upstream, tok.Cipher, tok.SSPassword, origin, 300<<10, 3); err != nil {
		t.Fatalf("traffic through the re-created key: %v", err)
	}
	if want != tok.Assignments[0] { // the port changed: gateways are told
		waitEvent(t, events, store.Event{Kind: store.EventTokenChanged, TokenID: tok.ID})
	}
	m.round(ctx)
	if n := m.Repairs(); n != 1 {
		t.Fatalf("Repairs() = %d after another round, want 1", n)
	}
}

// One round re-creates at most maxRepairsPerRound keys per member; the
// rest follow in the next round. The key's port does not change here (the
// fake without ss-servers reports port 9 for every key), so the
// assignments are left alone.
func TestRepairBoundedPerRound(t *testing.T) {
	st := newStore(t)
	m := New(st, Config{Logger: quiet})
	fake := outlinefake.Start(t, outlinefake.Options{})
	mem := outlineMember("b", fake)
	if err := st.PutMember(ctxT(t), mem); err != nil {
		t.Fatal(err)
	}
	b, err := m.backend(ctxT(t), mem)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	const n = maxRepairsPerRound + 3
	for range n {
		tok := newToken(t, st)
		as := []store.Assignment{{MemberID: "b", Upstream: "127.0.0.1:9", BackendKeyID: tok.ID}}
		if err := st.UpdateAssignments(ctx, tok.ID, as); err != nil {
			t.Fatal(err)
		}
	}
	repair := func() {
		have, err := b.(keyLister).Keys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m.repairKeys(ctx, mem, b, have, &assignedKeys{})
	}
	repair()
	if got := len(fake.Keys()); got != maxRepairsPerRound {
		t.Fatalf("%d keys after one round, want %d", got, maxRepairsPerRound)
	}
	repair()
	if got := len(fake.Keys()); got != n {
		t.Fatalf("%d keys after two rounds, want %d", got, n)
	}
	if got := m.Repairs(); got != n {
		t.Fatalf("Repairs() = %d, want %d", got, n)
	}
	page, _, err := st.ListTokens(ctx, "", store.MaxPageSize)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range page {
		if len(tok.Assignments) != 1 || tok.Assignments[0].Upstream != "127.0.0.1:9" {
			t.Fatalf("token %s assignments changed: %+v", tok.ID, tok.Assignments)
		}
	}
}

// waitEvent waits up to 5 s for want on events.
func waitEvent(t *testing.T, events <-chan store.Event, want store.Event) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case e := <-events:
			if e == want {
				return
			}
		case <-timeout:
			t.Fatalf("no event %+v", want)
		}
	}
}
