package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/httvps/httvps/control/pool/outlinefake"
	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/store"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func ssmMember(t *testing.T, id string, p *ssManagerPeer) store.Member {
	lo, hi := portRange(t, 20)
	return store.Member{ID: id, Backend: store.BackendSSManager, Host: "127.0.0.1",
		SSManager: &store.SSManagerConfig{ManagerAddr: p.Addr, PortMin: lo, PortMax: hi}}
}

func outlineMember(id string, f *outlinefake.Server) store.Member {
	return store.Member{ID: id, Backend: store.BackendOutlineAPI, Host: "127.0.0.1",
		Outline: &store.OutlineConfig{APIURL: f.APIURL, CertSHA256: f.CertSHA256}}
}

func addMembers(t *testing.T, m *Manager, mems ...store.Member) {
	t.Helper()
	for _, mem := range mems {
		got, err := m.AddMember(ctxT(t), mem)
		if err != nil {
			t.Fatalf("AddMember %s: %v", mem.ID, err)
		}
		if !got.Health.Up {
			t.Fatalf("member %s down after AddMember: %s", mem.ID, got.Health.LastError)
		}
	}
}

// newToken stores a token with a fresh Shadowsocks secret.
func newToken(t *testing.T, st store.Store) store.Token {
	t.Helper()
	tok := store.Token{ID: store.NewID(), Hash: store.HashToken(store.NewID()), Cipher: testMethod, SSPassword: newPassword()}
	if err := st.CreateToken(ctxT(t), tok); err != nil {
		t.Fatal(err)
	}
	return tok
}

// placeAndStore places tok's key and stores the assignments.
func placeAndStore(t *testing.T, m *Manager, st store.Store, tok store.Token) store.Token {
	t.Helper()
	as, err := m.PlaceKey(ctxT(t), tok)
	if err != nil {
		t.Fatalf("PlaceKey: %v", err)
	}
	if err := st.UpdateAssignments(ctxT(t), tok.ID, as); err != nil {
		t.Fatal(err)
	}
	tok.Assignments = as
	return tok
}

func memberIDs(as []store.Assignment) []string {
	var ids []string
	for _, a := range as {
		ids = append(ids, a.MemberID)
	}
	return ids
}

func TestPlaceKeySameSecretOnTwoMembers(t *testing.T) {
	origin := testpeer.StartOrigin(t)
	st := newStore(t)
	m := New(st, Config{Logger: quiet})
	addMembers(t, m,
		ssmMember(t, "a", startSSManager(t)),
		outlineMember("b", outlinefake.Start(t, outlinefake.Options{SSServer: true})))

	tok := placeAndStore(t, m, st, newToken(t, st))
	if ids := memberIDs(tok.Assignments); !slices.Equal(ids, []string{"a", "b"}) {
		t.Fatalf("placed on %v, want [a b]", ids)
	}
	for i, a := range tok.Assignments {
		if err := fetchThrough(a.Upstream, tok.Cipher, tok.SSPassword, origin, 1<<20+3, uint64(i)); err != nil {
			t.Fatalf("member %s: %v", a.MemberID, err)
		}
	}
	if tok.Assignments[1].BackendKeyID != tok.ID {
		t.Fatalf("outline key id %q, want the token id", tok.Assignments[1].BackendKeyID)
	}

	// A second key goes to the members too, spread by load: with two
	// members and two replicas both hold it.
	tok2 := placeAndStore(t, m, st, newToken(t, st))
	if len(tok2.Assignments) != 2 || tok2.Assignments[0].Upstream == tok.Assignments[0].Upstream {
		t.Fatalf("second key: %+v", tok2.Assignments)
	}

	// RemoveKey deletes it everywhere.
	if err := m.RemoveKey(ctxT(t), tok); err != nil {
		t.Fatal(err)
	}
	if err := waitClosed(tok.Assignments[0].Upstream, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := waitClosed(tok.Assignments[1].Upstream, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestHealthMarksDownWithinTwoPeriods(t *testing.T) {
	st := newStore(t)
	const every = 300 * time.Millisecond
	m := New(st, Config{Logger: quiet, HealthEvery: every, DialTimeout: every / 2})
	ssm := startSSManager(t)
	fake := outlinefake.Start(t, outlinefake.Options{SSServer: true})
	addMembers(t, m, ssmMember(t, "a", ssm), outlineMember("b", fake))
	placeAndStore(t, m, st, newToken(t, st)) // gives both members a port to probe

	ctx, cancel := context.WithCancel(context.Background())
	events, err := st.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	down := func(id string) func() bool {
		return func() bool {
			mem, err := st.GetMember(context.Background(), id)
			return err == nil && !mem.Health.Up
		}
	}
	// Slack covers a check already in flight and the race detector.
	const limit = 2*every + 250*time.Millisecond
	ssm.Stop(t)
	if d := waitFor(t, 5*time.Second, "ss-manager member down", down("a")); d > limit {
		t.Errorf("ss-manager member marked down after %v, want within %v", d, limit)
	}
	fake.Close()
	if d := waitFor(t, 5*time.Second, "outline member down", down("b")); d > limit {
		t.Errorf("outline member marked down after %v, want within %v", d, limit)
	}
	seen := map[string]bool{}
	timeout := time.After(5 * time.Second)
	for !seen["a"] || !seen["b"] {
		select {
		case e := <-events:
			if e.Kind == store.EventMemberChanged {
				seen[e.MemberID] = true
			}
		case <-timeout:
			t.Fatalf("EventMemberChanged seen for %v, want a and b", seen)
		}
	}
	mem, _ := st.GetMember(context.Background(), "a")
	if mem.Health.LastError == "" || mem.Health.CheckedAt.IsZero() {
		t.Fatalf("health of a dead member: %+v", mem.Health)
	}
	// Down members get no keys.
	if _, err := m.PlaceKey(ctxT(t), newToken(t, st)); !errors.Is(err, ErrNoMembers) {
		t.Fatalf("PlaceKey with every member down: %v", err)
	}
}

func TestDrainAndRemoveMember(t *testing.T) {
	origin := testpeer.StartOrigin(t)
	st := newStore(t)
	m := New(st, Config{Logger: quiet})
	ssmA, ssmC := startSSManager(t), startSSManager(t)
	fake := outlinefake.Start(t, outlinefake.Options{SSServer: true})
	addMembers(t, m, ssmMember(t, "a", ssmA), outlineMember("b", fake), ssmMember(t, "c", ssmC))
	ctx := ctxT(t)

	// With equal load the order is by ID: a and b get the key.
	tok := placeAndStore(t, m, st, newToken(t, st))
	if ids := memberIDs(tok.Assignments); !slices.Equal(ids, []string{"a", "b"}) {
		t.Fatalf("placed on %v, want [a b]", ids)
	}
	oldA := tok.Assignments[0]

	events, err := st.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.DrainMember(ctx, "a"); err != nil {
		t.Fatalf("DrainMember: %v", err)
	}
	got, err := st.GetToken(ctx, tok.ID)
	if err != nil {
		t.Fatal(err)
	}
	// The drained replica is replaced in place: failover order is kept.
	if ids := memberIDs(got.Assignments); !slices.Equal(ids, []string{"c", "b"}) {
		t.Fatalf("after drain assignments on %v, want [c b]", ids)
	}
	if got.Assignments[1] != tok.Assignments[1] {
		t.Fatalf("untouched assignment changed: %+v", got.Assignments[1])
	}
	if err := fetchThrough(got.Assignments[0].Upstream, tok.Cipher, tok.SSPassword, origin, 512<<10, 7); err != nil {
		t.Fatalf("traffic through the new member: %v", err)
	}
	if err := waitClosed(oldA.Upstream, 5*time.Second); err != nil {
		t.Fatalf("key still on the drained member: %v", err)
	}
	stat, err := newSSManager("127.0.0.1", store.SSManagerConfig{ManagerAddr: ssmA.Addr}, Config{}.withDefaults()).stat(ctx)
	if err != nil || len(stat) != 0 {
		t.Fatalf("drained ss-manager still serves %v (%v)", stat, err)
	}
	if mem, _ := st.GetMember(ctx, "a"); !mem.Draining {
		t.Fatal("member a not marked draining")
	}
	wantEvents := map[store.Event]bool{
		{Kind: store.EventMemberChanged, MemberID: "a"}:  false,
		{Kind: store.EventTokenChanged, TokenID: tok.ID}: false,
	}
	for n := 0; n < len(wantEvents); {
		select {
		case e := <-events:
			if seen, ok := wantEvents[e]; ok && !seen {
				wantEvents[e] = true
				n++
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("events seen: %v", wantEvents)
		}
	}

	// A draining member gets no new keys.
	tok2 := placeAndStore(t, m, st, newToken(t, st))
	if slices.Contains(memberIDs(tok2.Assignments), "a") {
		t.Fatalf("new key placed on a draining member: %v", memberIDs(tok2.Assignments))
	}

	if err := m.RemoveMember(ctx, "a"); err != nil {
		t.Fatalf("RemoveMember a: %v", err)
	}
	if _, err := st.GetMember(ctx, "a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("member a after removal: %v", err)
	}

	// b: both tokens are on b and c already, so there is nowhere to move
	// them; their other replica remains and b's is dropped.
	if err := m.RemoveMember(ctx, "b"); err != nil {
		t.Fatalf("RemoveMember b: %v", err)
	}
	if len(fake.Keys()) != 0 {
		t.Fatalf("keys left on removed member b: %+v", fake.Keys())
	}
	got, _ = st.GetToken(ctx, tok.ID)
	if ids := memberIDs(got.Assignments); !slices.Equal(ids, []string{"c"}) {
		t.Fatalf("after removing b: %v, want [c]", ids)
	}

	// c holds the only replica: it cannot be removed.
	err = m.RemoveMember(ctx, "c")
	if !errors.Is(err, ErrNoMembers) {
		t.Fatalf("RemoveMember of the last holder: %v, want ErrNoMembers", err)
	}
	if mem, err := st.GetMember(ctx, "c"); err != nil || mem.Draining {
		t.Fatalf("member c after refused removal: %+v %v (want unchanged: not draining)", mem, err)
	}
	if err := fetchThrough(got.Assignments[0].Upstream, tok.Cipher, tok.SSPassword, origin, 4096, 1); err != nil {
		t.Fatalf("key on c broken by the refused removal: %v", err)
	}
}

func TestNoMembers(t *testing.T) {
	st := newStore(t)
	m := New(st, Config{Logger: quiet, DialTimeout: 500 * time.Millisecond})
	ctx := ctxT(t)
	tok := store.Token{ID: "t", Cipher: testMethod, SSPassword: "pw"}
	if _, err := m.PlaceKey(ctx, tok); !errors.Is(err, ErrNoMembers) {
		t.Fatalf("empty pool: %v", err)
	}
	// A static member whose port is closed is down.
	port := testpeer.FreePort(t)
	mem, err := m.AddMember(ctx, store.Member{ID: "s", Backend: store.BackendStatic, Host: "127.0.0.1",
		Static: &store.StaticConfig{Port: port, Cipher: testMethod, Password: "pw"}})
	if err != nil || mem.Health.Up || mem.Health.LastError == "" {
		t.Fatalf("AddMember of a closed static member = %+v, %v", mem.Health, err)
	}
	if _, err := m.PlaceKey(ctx, tok); !errors.Is(err, ErrNoMembers) {
		t.Fatalf("only a down member: %v", err)
	}
	if _, err := m.PlaceKey(ctx, store.Token{ID: "t", Cipher: "rc4", SSPassword: "pw"}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("bad cipher: %v", err)
	}
}

func TestStaticMember(t *testing.T) {
	origin := testpeer.StartOrigin(t)
	_, m, ss := staticPool(t)
	ctx := ctxT(t)

	// Fewer members than replicas: the one placement is returned, no error.
	tok := store.Token{ID: "t", Cipher: testMethod, SSPassword: testpeer.DefaultPassword}
	as, err := m.PlaceKey(ctx, tok)
	if err != nil || len(as) != 1 || as[0].Upstream != ss {
		t.Fatalf("PlaceKey = %+v, %v", as, err)
	}
	if err := fetchThrough(as[0].Upstream, tok.Cipher, tok.SSPassword, origin, 64<<10, 2); err != nil {
		t.Fatal(err)
	}
	// A token with its own secret cannot use the static member.
	if _, err := m.PlaceKey(ctx, store.Token{ID: "u", Cipher: testMethod, SSPassword: "other"}); !errors.Is(err, ErrNoMembers) {
		t.Fatalf("mismatched secret: %v", err)
	}
}

// A static member cannot count its keys, so the health round counts the
// store's live assignments to it: `pool list` shows KEYS and LOAD, and
// placement weighs them.
func TestStaticMemberCountsItsKeys(t *testing.T) {
	st, m, _ := staticPool(t)
	ctx := ctxT(t)
	for i := range 10 {
		tok := store.Token{ID: fmt.Sprintf("t%d", i), Hash: store.HashToken(fmt.Sprint(i)), Cipher: testMethod, SSPassword: testpeer.DefaultPassword}
		storePlaced(t, st, m, tok)
	}
	if _, err := st.RevokeToken(ctx, "t0"); err != nil { // a revoked token holds no key
		t.Fatal(err)
	}
	m.round(ctx)
	ms, err := st.ListMembers(ctx)
	if err != nil || len(ms) != 1 {
		t.Fatalf("members %+v, %v", ms, err)
	}
	if h := ms[0].Health; !h.Up || h.Keys != 9 || h.Load != 9 {
		t.Fatalf("static member's health %+v, want up with 9 keys and load 9", h)
	}
}

// A remove whose keys cannot all move changes nothing: the member is not
// left draining (which made every later token creation fail), and keys can
// still be placed on it. Undrain undoes an explicit drain.
func TestFailedRemoveChangesNothing(t *testing.T) {
	st, m, _ := staticPool(t)
	ctx := ctxT(t)
	tok := store.Token{ID: "t", Hash: store.HashToken("t"), Cipher: testMethod, SSPassword: testpeer.DefaultPassword}
	storePlaced(t, st, m, tok)
	if err := m.RemoveMember(ctx, "s"); !errors.Is(err, ErrNoMembers) {
		t.Fatalf("remove with a key that cannot move: %v", err)
	}
	mem, err := st.GetMember(ctx, "s")
	if err != nil || mem.Draining {
		t.Fatalf("after the failed remove: %+v, %v (want present, not draining)", mem, err)
	}
	if _, err := m.PlaceKey(ctx, store.Token{ID: "u", Cipher: testMethod, SSPassword: testpeer.DefaultPassword}); err != nil {
		t.Fatalf("placing a key after the failed remove: %v", err)
	}
	if got, err := st.GetToken(ctx, tok.ID); err != nil || len(got.Assignments) != 1 || got.Assignments[0].MemberID != "s" {
		t.Fatalf("the token's assignment after the failed remove: %+v, %v", got.Assignments, err)
	}

	if err := m.DrainMember(ctx, "s"); !errors.Is(err, ErrNoMembers) {
		t.Fatalf("drain: %v", err)
	}
	if _, err := m.PlaceKey(ctx, store.Token{ID: "v", Cipher: testMethod, SSPassword: testpeer.DefaultPassword}); !errors.Is(err, ErrNoMembers) {
		t.Fatalf("placing on a draining member: %v", err)
	}
	if err := m.UndrainMember(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	if mem, err := st.GetMember(ctx, "s"); err != nil || mem.Draining {
		t.Fatalf("after undrain: %+v, %v", mem, err)
	}
	if _, err := m.PlaceKey(ctx, store.Token{ID: "w", Cipher: testMethod, SSPassword: testpeer.DefaultPassword}); err != nil {
		t.Fatalf("placing after undrain: %v", err)
	}
	if err := m.UndrainMember(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("undrain of an unknown member: %v", err)
	}
}

func TestRemoveKeyRetriedWhenMemberIsBack(t *testing.T) {
	st := newStore(t)
	const every = 200 * time.Millisecond
	m := New(st, Config{Logger: quiet, HealthEvery: every, DialTimeout: time.Second, Replicas: 1})
	fake := outlinefake.Start(t, outlinefake.Options{SSServer: true})
	addMembers(t, m, outlineMember("b", fake))
	tok := placeAndStore(t, m, st, newToken(t, st))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	fake.SetTransfer(tok.ID, 4242)
	waitFor(t, 5*time.Second, "transfer polled", func() bool { return m.Transfer()["b"] == 4242 })

	fake.SetUnavailable(true)
	waitFor(t, 5*time.Second, "member down", func() bool {
		mem, err := st.GetMember(context.Background(), "b")
		return err == nil && !mem.Health.Up
	})
	// As the API does: revoke first (else the health round would see a
	// lost key and re-create it), then remove the key.
	if _, err := st.RevokeToken(ctxT(t), tok.ID); err != nil {
		t.Fatal(err)
	}
	if err := m.RemoveKey(ctxT(t), tok); err != nil {
		t.Fatalf("RemoveKey is best effort, got %v", err)
	}
	if len(fake.Keys()) != 1 {
		t.Fatal("key deleted while the API was unavailable?")
	}
	fake.SetUnavailable(false)
	waitFor(t, 5*time.Second, "pending deletion retried", func() bool { return len(fake.Keys()) == 0 })
}

func TestAddMemberValidation(t *testing.T) {
	st := newStore(t)
	m := New(st, Config{Logger: quiet, DialTimeout: 500 * time.Millisecond})
	ctx := ctxT(t)
	pin := strings.Repeat("ab", 32)
	outline := func(url, pin string) *store.OutlineConfig { return &store.OutlineConfig{APIURL: url, CertSHA256: pin} }
	cases := []struct {
		name string
		mem  store.Member
	}{
		{"host not an IP", store.Member{Backend: store.BackendStatic, Host: "example.com",
			Static: &store.StaticConfig{Port: 1, Cipher: testMethod, Password: "p"}}},
		{"unknown backend", store.Member{Backend: "wireguard", Host: "127.0.0.1",
			Static: &store.StaticConfig{Port: 1, Cipher: testMethod, Password: "p"}}},
		{"two configs", store.Member{Backend: store.BackendStatic, Host: "127.0.0.1",
			Static: &store.StaticConfig{Port: 1, Cipher: testMethod, Password: "p"}, Outline: outline("https://x/s", pin)}},
		{"config of another backend", store.Member{Backend: store.BackendOutlineAPI, Host: "127.0.0.1",
			Static: &store.StaticConfig{Port: 1, Cipher: testMethod, Password: "p"}}},
		{"outline over http", store.Member{Backend: store.BackendOutlineAPI, Host: "127.0.0.1", Outline: outline("http://x/s", pin)}},
		{"outline without prefix", store.Member{Backend: store.BackendOutlineAPI, Host: "127.0.0.1", Outline: outline("https://x/", pin)}},
		{"outline short pin", store.Member{Backend: store.BackendOutlineAPI, Host: "127.0.0.1", Outline: outline("https://x/s", "abcd")}},
		{"ss-manager reversed range", store.Member{Backend: store.BackendSSManager, Host: "127.0.0.1",
			SSManager: &store.SSManagerConfig{ManagerAddr: "127.0.0.1:1", PortMin: 20, PortMax: 10}}},
		{"ss-manager bad address", store.Member{Backend: store.BackendSSManager, Host: "127.0.0.1",
			SSManager: &store.SSManagerConfig{ManagerAddr: "nowhere", PortMin: 10, PortMax: 20}}},
		{"static bad cipher", store.Member{Backend: store.BackendStatic, Host: "127.0.0.1",
			Static: &store.StaticConfig{Port: 1, Cipher: "rc4-md5", Password: "p"}}},
		{"static no password", store.Member{Backend: store.BackendStatic, Host: "127.0.0.1",
			Static: &store.StaticConfig{Port: 1, Cipher: testMethod}}},
	}
	for _, c := range cases {
		if _, err := m.AddMember(ctx, c.mem); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: %v, want store.ErrInvalid", c.name, err)
		}
	}
	if ms, _ := st.ListMembers(ctx); len(ms) != 0 {
		t.Fatalf("invalid members stored: %+v", ms)
	}

	// Valid but unreachable: stored, down, with the reason; ID assigned;
	// the pin is normalised.
	fake := outlinefake.Start(t, outlinefake.Options{})
	mem := outlineMember("", fake)
	fake.Close()
	var pairs []string // "AB:CD:…", as openssl prints fingerprints
	for i := 0; i < len(fake.CertSHA256); i += 2 {
		pairs = append(pairs, strings.ToUpper(fake.CertSHA256[i:i+2]))
	}
	mem.Outline.CertSHA256 = strings.Join(pairs, ":")
	got, err := m.AddMember(ctx, mem)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID == "" || got.Name != got.ID || got.Health.Up || got.Health.LastError == "" || got.Outline.CertSHA256 != fake.CertSHA256 {
		t.Fatalf("added %+v (outline %+v)", got, got.Outline)
	}
	if _, err := m.AddMember(ctx, got); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate ID: %v", err)
	}
}

// staticPool is a Manager whose one member "s" is a static ss-server (its
// address returned).
func staticPool(t *testing.T) (store.Store, *Manager, string) {
	t.Helper()
	st := newStore(t)
	m := New(st, Config{Logger: quiet})
	ss := testpeer.SSServer(t, testpeer.DefaultPassword, testMethod)
	_, port := splitPort(t, ss)
	addMembers(t, m, store.Member{ID: "s", Backend: store.BackendStatic, Host: "127.0.0.1",
		Static: &store.StaticConfig{Port: port, Cipher: testMethod, Password: testpeer.DefaultPassword}})
	return st, m, ss
}

// storePlaced stores tok, places its key and records the assignments.
func storePlaced(t *testing.T, st store.Store, m *Manager, tok store.Token) {
	t.Helper()
	ctx := ctxT(t)
	if err := st.CreateToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	as, err := m.PlaceKey(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.UpdateAssignments(ctx, tok.ID, as); err != nil {
		t.Fatal(err)
	}
}
