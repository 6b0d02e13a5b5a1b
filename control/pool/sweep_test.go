package pool

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/httvps/httvps/control/pool/outlinefake"
	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/store"
)

// udpRelay forwards UDP requests to target and the answers back, or drops
// them, as a member that cannot be reached for a while.
type udpRelay struct {
	Addr   string
	pc     net.PacketConn
	target string
	drop   atomic.Bool
	wg     sync.WaitGroup
}

func startUDPRelay(t *testing.T, target string) *udpRelay {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &udpRelay{Addr: pc.LocalAddr().String(), pc: pc, target: target}
	r.wg.Go(func() {
		buf := make([]byte, 64<<10)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if r.drop.Load() {
				continue
			}
			req := bytes.Clone(buf[:n])
			r.wg.Go(func() { r.forward(req, from) })
		}
	})
	t.Cleanup(func() { pc.Close(); r.wg.Wait() })
	return r
}

func (r *udpRelay) forward(req []byte, from net.Addr) {
	c, err := net.Dial("udp", r.target)
	if err != nil {
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(req); err != nil {
		return
	}
	buf := make([]byte, 64<<10)
	n, err := c.Read(buf)
	if err != nil || r.drop.Load() {
		return
	}
	r.pc.WriteTo(buf[:n], from)
}

// sweepOnce lists the member's keys and runs the sweep, as a round does.
func sweepOnce(t *testing.T, m *Manager, mem store.Member, b Backend, rs *roundState) {
	t.Helper()
	listedAt := time.Now()
	have, err := b.(keyLister).Keys(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	m.sweepKeys(ctxT(t), mem, b, b.(keyLister), have, listedAt, rs)
}

func servedPorts(t *testing.T, addr string) map[string]int64 {
	t.Helper()
	st, err := newSSManager("127.0.0.1", store.SSManagerConfig{ManagerAddr: addr}, Config{}.withDefaults()).stat(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// ssmAddDirect adds a port on ss-manager the way someone else would.
func ssmAddDirect(t *testing.T, addr string, port int, password string) {
	t.Helper()
	b := newSSManager("127.0.0.1", store.SSManagerConfig{ManagerAddr: addr}, Config{}.withDefaults())
	r, err := b.request(ctxT(t), fmt.Appendf(nil, `add: {"server_port":%d,"password":%q,"method":%q}`, port, password, testMethod))
	if err != nil || string(bytes.TrimSpace(r)) != ssmReplyOK {
		t.Fatalf("add port %d: %q %v", port, r, err)
	}
	if err := b.waitListening(ctxT(t), net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err != nil {
		t.Fatal(err)
	}
}

// A token revoked while its ss-manager member cannot be reached keeps its
// key there; a control plane restarted meanwhile has no pending deletion,
// yet once the member answers again the sweep finds the key stray and
// deletes it. A port outside the member's range, added by someone else,
// and the other token's key stay.
func TestSweepSSManagerKeyRevokedWhileUnreachableAcrossRestart(t *testing.T) {
	origin := testpeer.StartOrigin(t)
	st := newStore(t)
	ssm := startSSManager(t)
	relay := startUDPRelay(t, ssm.Addr)
	mem := ssmMember(t, "a", ssm)
	mem.SSManager.ManagerAddr = relay.Addr
	const grace = 500 * time.Millisecond
	cfg := Config{Logger: quiet, HealthEvery: 200 * time.Millisecond, DialTimeout: time.Second, Replicas: 1, StrayGrace: grace}
	m1 := New(st, cfg)
	addMembers(t, m1, mem)
	keep := placeAndStore(t, m1, st, newToken(t, st))
	gone := placeAndStore(t, m1, st, newToken(t, st))
	var hand int
	for hand == 0 || (hand >= mem.SSManager.PortMin && hand <= mem.SSManager.PortMax) {
		hand, _ = portRange(t, 1)
	}
	ssmAddDirect(t, ssm.Addr, hand, "someone-else's")

	relay.drop.Store(true)
	if _, err := st.RevokeToken(ctxT(t), gone.ID); err != nil {
		t.Fatal(err)
	}
	if err := m1.RemoveKey(ctxT(t), gone); err != nil {
		t.Fatalf("RemoveKey is best effort, got %v", err)
	}
	goneKey := gone.Assignments[0].BackendKeyID
	if _, ok := servedPorts(t, ssm.Addr)[goneKey]; !ok {
		t.Fatal("key deleted although the member could not be reached")
	}

	// The control plane restarts: a new Manager on the same store, with
	// nothing in memory.
	m2 := New(st, cfg)
	relay.drop.Store(false)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m2.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	start := time.Now()
	waitFor(t, 15*time.Second, "the revoked token's key swept", func() bool {
		_, ok := servedPorts(t, ssm.Addr)[goneKey]
		return !ok
	})
	if d := time.Since(start); d < grace {
		t.Fatalf("swept after %v, before the grace of %v", d, grace)
	}
	time.Sleep(2 * grace) // later rounds find nothing more
	ports := servedPorts(t, ssm.Addr)
	keepKey := keep.Assignments[0].BackendKeyID
	if _, ok := ports[keepKey]; !ok || len(ports) != 2 {
		t.Fatalf("ss-manager serves %v, want the kept token's port %s and the hand-made %d", ports, keepKey, hand)
	}
	if _, ok := ports[strconv.Itoa(hand)]; !ok {
		t.Fatalf("the hand-made port %d was deleted: %v", hand, ports)
	}
	if n := m2.StraysDeleted(); n != 1 {
		t.Fatalf("StraysDeleted() = %d, want 1", n)
	}
	if err := fetchThrough(keep.Assignments[0].Upstream, keep.Cipher, keep.SSPassword, origin, 256<<10, 5); err != nil {
		t.Fatalf("traffic through the kept key: %v", err)
	}
	if got, _ := st.GetToken(context.Background(), keep.ID); !slices.Equal(got.Assignments, keep.Assignments) {
		t.Fatalf("kept token's assignments changed: %+v", got.Assignments)
	}
}

// On an Outline server the sweep deletes this installation's keys (id a
// token ID, name "httvps <mark> <id>") that nothing assigns — a token
// revoked while the server was unavailable, a key left by a process that
// crashed before storing — only after StrayGrace, and leaves alone keys
// made in the Outline Manager, keys an operator renamed, keys made before
// the mark existed (name = id) and a key placed but not yet stored when
// first seen.
func TestSweepOutline(t *testing.T) {
	st := newStore(t)
	fake := outlinefake.Start(t, outlinefake.Options{SSServer: true})
	const grace = 400 * time.Millisecond
	cfg := Config{Logger: quiet, Replicas: 1, DialTimeout: 2 * time.Second, StrayGrace: grace}
	m1 := New(st, cfg)
	addMembers(t, m1, outlineMember("b", fake))
	ctx := ctxT(t)
	keep := placeAndStore(t, m1, st, newToken(t, st))
	gone := placeAndStore(t, m1, st, newToken(t, st))
	fresh := newToken(t, st)
	freshAs, err := m1.PlaceKey(ctx, fresh) // created; stored only later
	if err != nil {
		t.Fatal(err)
	}

	api := outlineBackend(t, fake.APIURL, fake.CertSHA256)
	var manual outlineKey // as the Outline Manager makes keys: POST, numeric id
	if _, err := api.call(ctx, "POST", http.MethodPost, "/access-keys", map[string]any{"name": "laptop"}, &manual, http.StatusCreated); err != nil {
		t.Fatal(err)
	}
	renamed := store.NewID() // of httvps's form, renamed by an operator
	if _, err := api.call(ctx, "PUT", http.MethodPut, keyPath(renamed), map[string]any{"name": "phone", "method": testMethod, "password": newPassword()}, nil, http.StatusCreated); err != nil {
		t.Fatal(err)
	}
	legacy := store.NewID() // named as before installation marks: name = id
	if _, _, err := api.CreateKey(ctx, legacy, testMethod, newPassword()); err != nil {
		t.Fatal(err)
	}
	if k := fakeKey(fake, legacy); k.Name != legacy {
		t.Fatalf("unmarked key named %q, want its id", k.Name)
	}
	crashed := store.NewID() // created by a Manager, never stored
	b1, err := m1.backend(ctx, outlineMember("b", fake))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := b1.CreateKey(ctx, crashed, testMethod, newPassword()); err != nil {
		t.Fatal(err)
	}
	mark, err := st.InstallationID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if k := fakeKey(fake, crashed); k.Name != "httvps "+mark[:installMarkLen]+" "+crashed {
		t.Fatalf("key named %q, want the installation's mark and the id", k.Name)
	}

	fake.SetUnavailable(true)
	if _, err := st.RevokeToken(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	if err := m1.RemoveKey(ctx, gone); err != nil {
		t.Fatal(err)
	}
	m2 := New(st, cfg) // restarted control plane
	fake.SetUnavailable(false)

	ids := func() []string {
		var out []string
		for _, k := range fake.Keys() {
			out = append(out, k.ID)
		}
		slices.Sort(out)
		return out
	}
	sorted := func(s ...string) []string { slices.Sort(s); return s }
	all := sorted(keep.ID, gone.ID, fresh.ID, manual.ID, renamed, legacy, crashed)
	m2.round(ctx) // first sighting: nothing is deleted yet
	if got := ids(); !slices.Equal(got, all) {
		t.Fatalf("keys after the first round %v, want %v", got, all)
	}
	if err := st.UpdateAssignments(ctx, fresh.ID, freshAs); err != nil {
		t.Fatal(err)
	}
	time.Sleep(grace + 100*time.Millisecond)
	m2.round(ctx)
	want := sorted(keep.ID, fresh.ID, manual.ID, renamed, legacy)
	if got := ids(); !slices.Equal(got, want) {
		t.Fatalf("keys after the sweep %v, want %v", got, want)
	}
	if n := m2.StraysDeleted(); n != 2 {
		t.Fatalf("StraysDeleted() = %d, want 2", n)
	}
	time.Sleep(grace + 100*time.Millisecond)
	m2.round(ctx)
	if got := ids(); !slices.Equal(got, want) || m2.StraysDeleted() != 2 {
		t.Fatalf("a later round: keys %v, StraysDeleted %d", got, m2.StraysDeleted())
	}
}

// An assignment stored after the round listed the store, but before the
// deletion, saves its key (the fresh read); with the store down nothing is
// deleted; a key assigned through another member entry for the same server
// is in use.
func TestSweepFreshReadStoreDownSameServer(t *testing.T) {
	st := newStore(t)
	fake := outlinefake.Start(t, outlinefake.Options{})
	b1, b2 := outlineMember("b1", fake), outlineMember("b2", fake)
	ctx := ctxT(t)
	for _, mem := range []store.Member{b1, b2} {
		if err := st.PutMember(ctx, mem); err != nil {
			t.Fatal(err)
		}
	}
	const grace = 200 * time.Millisecond
	m := New(st, Config{Logger: quiet, StrayGrace: grace})
	b, err := m.backend(ctxT(t), b1)
	if err != nil {
		t.Fatal(err)
	}
	mems := []store.Member{b1, b2}
	tok := newToken(t, st)
	up, keyID, err := b.CreateKey(ctx, tok.ID, tok.Cipher, tok.SSPassword)
	if err != nil {
		t.Fatal(err)
	}
	sweepOnce(t, m, b1, b, newRoundState(mems)) // seen stray
	stale := newRoundState(mems)
	if _, err := stale.assigned.get(ctx, st); err != nil {
		t.Fatal(err)
	}
	if err := st.UpdateAssignments(ctx, tok.ID, []store.Assignment{{MemberID: "b1", Upstream: up, BackendKeyID: keyID}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(grace + 50*time.Millisecond)
	sweepOnce(t, m, b1, b, stale)
	if len(fake.Keys()) != 1 || m.StraysDeleted() != 0 {
		t.Fatalf("key stored before the fresh read was deleted: %+v", fake.Keys())
	}

	// Assigned through b1: not stray for b2, which reaches the same server.
	b2b, err := m.backend(ctxT(t), b2)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		sweepOnce(t, m, b2, b2b, newRoundState(mems))
		time.Sleep(grace + 50*time.Millisecond)
	}
	sweepOnce(t, m, b2, b2b, newRoundState(mems))
	if len(fake.Keys()) != 1 {
		t.Fatal("a key assigned through another entry for the same server was swept")
	}

	// Revoked: stray. The store goes down before the sweep: nothing goes.
	if _, err := st.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	sweepOnce(t, m, b1, b, newRoundState(mems))
	time.Sleep(grace + 50*time.Millisecond)
	st.Close()
	sweepOnce(t, m, b1, b, newRoundState(mems))
	if len(fake.Keys()) != 1 || m.StraysDeleted() != 0 {
		t.Fatalf("swept with the store down: %+v", fake.Keys())
	}
}

// One round deletes at most maxSweepsPerRound stray keys per member.
func TestSweepBoundedPerRound(t *testing.T) {
	st := newStore(t)
	fake := outlinefake.Start(t, outlinefake.Options{})
	mem := outlineMember("b", fake)
	ctx := ctxT(t)
	if err := st.PutMember(ctx, mem); err != nil {
		t.Fatal(err)
	}
	const grace = 100 * time.Millisecond
	m := New(st, Config{Logger: quiet, StrayGrace: grace})
	b, err := m.backend(ctxT(t), mem)
	if err != nil {
		t.Fatal(err)
	}
	const n = maxSweepsPerRound + 3
	for range n {
		if _, _, err := b.CreateKey(ctx, store.NewID(), testMethod, newPassword()); err != nil {
			t.Fatal(err)
		}
	}
	rs := func() *roundState { return newRoundState([]store.Member{mem}) }
	sweepOnce(t, m, mem, b, rs())
	time.Sleep(grace + 50*time.Millisecond)
	sweepOnce(t, m, mem, b, rs())
	if got := len(fake.Keys()); got != n-maxSweepsPerRound {
		t.Fatalf("%d keys left after one sweep, want %d", got, n-maxSweepsPerRound)
	}
	sweepOnce(t, m, mem, b, rs())
	if got := len(fake.Keys()); got != 0 || m.StraysDeleted() != n {
		t.Fatalf("%d keys left after two sweeps, StraysDeleted %d", got, m.StraysDeleted())
	}
}

// A port seen stray and then handed out again with another secret is a new
// key: its grace starts again. The secret is read with ss-manager's list.
func TestSweepSSManagerPortReusedIsANewKey(t *testing.T) {
	st := newStore(t)
	ssm := startSSManager(t)
	mem := ssmMember(t, "a", ssm)
	ctx := ctxT(t)
	if err := st.PutMember(ctx, mem); err != nil {
		t.Fatal(err)
	}
	const grace = 300 * time.Millisecond
	m := New(st, Config{Logger: quiet, StrayGrace: grace})
	b, err := m.backend(ctxT(t), mem)
	if err != nil {
		t.Fatal(err)
	}
	rs := func() *roundState { return newRoundState([]store.Member{mem}) }
	_, port, err := b.CreateKey(ctx, "x", testMethod, newPassword())
	if err != nil {
		t.Fatal(err)
	}
	have, err := b.(keyLister).Keys(ctx)
	if err != nil || !have[port].ours || have[port].fp == "" {
		t.Fatalf("Keys = %+v, %v; want port %s ours with a fingerprint", have, err, port)
	}
	sweepOnce(t, m, mem, b, rs())
	if err := b.DeleteKey(ctx, port); err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	waitFor(t, 5*time.Second, "port freed", func() bool {
		_, ok := servedPorts(t, ssm.Addr)[port]
		return !ok && waitClosed(net.JoinHostPort("127.0.0.1", port), 0) == nil
	})
	ssmAddDirect(t, ssm.Addr, p, newPassword())
	time.Sleep(grace + 50*time.Millisecond)
	sweepOnce(t, m, mem, b, rs())
	if _, ok := servedPorts(t, ssm.Addr)[port]; !ok {
		t.Fatal("a port handed out again was deleted on its first sighting")
	}
	time.Sleep(grace + 50*time.Millisecond)
	sweepOnce(t, m, mem, b, rs())
	if _, ok := servedPorts(t, ssm.Addr)[port]; ok || m.StraysDeleted() != 1 {
		t.Fatalf("stray port not deleted after its grace (StraysDeleted %d)", m.StraysDeleted())
	}
}

func fakeKey(f *outlinefake.Server, id string) outlinefake.Key {
	for _, k := range f.Keys() {
		if k.ID == id {
			return k
		}
	}
	return outlinefake.Key{}
}

// Two installations (staging and production: separate stores) share one
// Outline server. Each sweeps with a short grace; neither deletes the
// other's keys, assigned or stray, nor a key made before installation
// marks existed, and each still deletes its own stray after the grace.
func TestSweepOutlineTwoInstallationsShareAServer(t *testing.T) {
	fake := outlinefake.Start(t, outlinefake.Options{SSServer: true})
	ctx := ctxT(t)
	const grace = 300 * time.Millisecond
	type inst struct {
		st     store.Store
		m      *Manager
		kept   store.Token // assigned
		stray  store.Token // revoked while the server was unavailable
		marked string
	}
	insts := make([]*inst, 2)
	for i := range insts {
		st := newStore(t)
		m := New(st, Config{Logger: quiet, Replicas: 1, DialTimeout: 2 * time.Second, StrayGrace: grace})
		addMembers(t, m, outlineMember("shared", fake)) // the same member ID in both stores
		in := &inst{st: st, m: m}
		in.kept = placeAndStore(t, m, st, newToken(t, st))
		in.stray = placeAndStore(t, m, st, newToken(t, st))
		id, err := st.InstallationID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		in.marked = "httvps " + id[:installMarkLen] + " "
		insts[i] = in
	}
	if insts[0].marked == insts[1].marked {
		t.Fatalf("two stores share the mark %q", insts[0].marked)
	}
	for _, in := range insts {
		for _, tok := range []store.Token{in.kept, in.stray} {
			if k := fakeKey(fake, tok.ID); k.Name != in.marked+tok.ID {
				t.Fatalf("key %s named %q, want %q", tok.ID, k.Name, in.marked+tok.ID)
			}
		}
	}
	legacy := store.NewID()
	if _, _, err := outlineBackend(t, fake.APIURL, fake.CertSHA256).CreateKey(ctx, legacy, testMethod, newPassword()); err != nil {
		t.Fatal(err)
	}

	fake.SetUnavailable(true)
	for _, in := range insts {
		if _, err := in.st.RevokeToken(ctx, in.stray.ID); err != nil {
			t.Fatal(err)
		}
		if err := in.m.RemoveKey(ctx, in.stray); err != nil {
			t.Fatal(err)
		}
	}
	fake.SetUnavailable(false)
	// Restarted control planes: no pending deletions, only the sweep.
	for _, in := range insts {
		in.m = New(in.st, Config{Logger: quiet, Replicas: 1, DialTimeout: 2 * time.Second, StrayGrace: grace})
	}
	ids := func() []string {
		var out []string
		for _, k := range fake.Keys() {
			out = append(out, k.ID)
		}
		slices.Sort(out)
		return out
	}
	sorted := func(s ...string) []string { slices.Sort(s); return s }
	for _, in := range insts {
		in.m.round(ctx) // first sighting of its own stray
	}
	if got, want := ids(), sorted(insts[0].kept.ID, insts[0].stray.ID, insts[1].kept.ID, insts[1].stray.ID, legacy); !slices.Equal(got, want) {
		t.Fatalf("keys after the first rounds %v, want %v", got, want)
	}
	time.Sleep(grace + 100*time.Millisecond)
	for range 2 {
		for _, in := range insts {
			in.m.round(ctx)
		}
	}
	if got, want := ids(), sorted(insts[0].kept.ID, insts[1].kept.ID, legacy); !slices.Equal(got, want) {
		t.Fatalf("keys after the sweeps %v, want %v (each installation's kept key and the legacy key)", got, want)
	}
	for i, in := range insts {
		if n := in.m.StraysDeleted(); n != 1 {
			t.Errorf("installation %d: StraysDeleted() = %d, want 1 (its own stray only)", i, n)
		}
		if n := in.m.Repairs(); n != 0 {
			t.Errorf("installation %d: Repairs() = %d", i, n)
		}
		if s := in.m.Stats(); s.StraysDeleted != 1 || s.StrayKeys != 0 || s.MembersUp != 1 || s.MemberKeys["shared"] != 3 {
			t.Errorf("installation %d: Stats() = %+v", i, s)
		}
	}
}
