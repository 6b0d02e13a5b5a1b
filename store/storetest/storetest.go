// Package storetest is the conformance suite every store.Store
// implementation runs, so that the Redis and embedded stores keep the same
// semantics.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/httvps/httvps/store"
)

// NewFunc returns an empty store; it registers its own cleanup.
type NewFunc func(t *testing.T) store.Store

// ReopenFunc closes s and returns a new Store over the same data, as a
// restarted process would see it (Redis: a new client on the same server
// and prefix; embedded: close and open the same file).
type ReopenFunc func(t *testing.T, s store.Store) store.Store

// Run runs every conformance test against stores made by newStore.
func Run(t *testing.T, newStore NewFunc, reopen ReopenFunc) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"TokenCRUD", testTokenCRUD},
		{"TokenErrors", testTokenErrors},
		{"TokenPagination", testTokenPagination},
		{"Usage", testUsage},
		{"UsageConcurrent", testUsageConcurrent},
		{"PeriodBounds", testPeriodBounds},
		{"PeriodRollover", testPeriodRollover},
		{"PastPeriodsBounded", testPastPeriodsBounded},
		{"Rotate", testRotate},
		{"UsageHistory", testUsageHistory},
		{"LeaseLimit", testLeaseLimit},
		{"LeaseConcurrent", testLeaseConcurrent},
		{"LeaseFreedWhenGatewayExpires", testLeaseGatewayExpiry},
		{"LeaseFreedWhenGatewayRemoved", testLeaseGatewayRemoved},
		{"DeviceLimit", testDeviceLimit},
		{"DeviceConcurrent", testDeviceConcurrent},
		{"DeviceGrace", testDeviceGrace},
		{"DeviceFreedWhenGatewayExpires", testDeviceGatewayExpiry},
		{"DeviceList", testDeviceList},
		{"DeviceArguments", testDeviceArguments},
		{"QuotaLease", testQuotaLease},
		{"QuotaLeaseConcurrent", testQuotaLeaseConcurrent},
		{"QuotaLeaseFreedWhenGatewayExpires", testQuotaLeaseGatewayExpiry},
		{"QuotaLeasePeriod", testQuotaLeasePeriod},
		{"Gateways", testGateways},
		{"Members", testMembers},
		{"InstallationID", testInstallationID},
		{"EventsTwoSubscribers", testEvents},
		{"SubscribeClosesOnCancel", testSubscribeCancel},
		{"ClosedStoreUnavailable", testClosed},
		{"Blobs", testBlobs},
		{"Locks", testLocks},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
	t.Run("InstallationIDPerStore", func(t *testing.T) {
		t.Parallel()
		a, err := newStore(t).InstallationID(ctxT(t))
		must(t, err, "InstallationID")
		b, err := newStore(t).InstallationID(ctxT(t))
		must(t, err, "InstallationID")
		if a == b {
			t.Fatalf("two stores share installation ID %q", a)
		}
	})
	t.Run("PersistsAcrossReopen", func(t *testing.T) {
		t.Parallel()
		testReopen(t, newStore(t), reopen)
	})
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var seq atomic.Int64

// newToken returns a distinct, fully populated token.
func newToken(label string) store.Token {
	n := seq.Add(1)
	return store.Token{
		ID:          store.NewID(),
		Hash:        store.HashToken(fmt.Sprintf("secret-%d-%s", n, store.NewID())),
		Label:       label,
		CreatedAt:   time.Unix(1700000000, n*1000).UTC(),
		ExpiresAt:   time.Unix(1900000000, 123456789).UTC(),
		QuotaBytes:  10 << 30,
		MaxSessions: 3,
		MaxDevices:  2,
		Cipher:      "chacha20-ietf-poly1305",
		SSPassword:  "ss-" + store.NewID(),
		Assignments: []store.Assignment{
			{MemberID: "m1", Upstream: "10.0.0.1:8388", BackendKeyID: "17"},
			{MemberID: "m2", Upstream: "10.0.0.2:8388", BackendKeyID: "k-9"},
		},
	}
}

func tokensEqual(t *testing.T, got, want store.Token) {
	t.Helper()
	timesEq := func(name string, a, b time.Time) {
		if !a.Equal(b) {
			t.Errorf("%s = %v, want %v", name, a, b)
		}
	}
	timesEq("CreatedAt", got.CreatedAt, want.CreatedAt)
	timesEq("ExpiresAt", got.ExpiresAt, want.ExpiresAt)
	timesEq("RevokedAt", got.RevokedAt, want.RevokedAt)
	got.CreatedAt, want.CreatedAt = time.Time{}, time.Time{}
	got.ExpiresAt, want.ExpiresAt = time.Time{}, time.Time{}
	got.RevokedAt, want.RevokedAt = time.Time{}, time.Time{}
	if len(got.Assignments) == 0 && len(want.Assignments) == 0 {
		got.Assignments, want.Assignments = nil, nil
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("token = %+v\nwant    %+v", got, want)
	}
}

func mustErr(t *testing.T, err, want error, what string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: err = %v, want %v", what, err, want)
	}
}

func must(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func testTokenCRUD(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tok := newToken("alice")
	must(t, s.CreateToken(ctx, tok), "CreateToken")

	got, err := s.GetToken(ctx, tok.ID)
	must(t, err, "GetToken")
	tokensEqual(t, got, tok)
	got, err = s.GetTokenByHash(ctx, tok.Hash)
	must(t, err, "GetTokenByHash")
	tokensEqual(t, got, tok)

	// CreatedAt is filled in when zero; zero expiry and empty assignments
	// round-trip.
	bare := store.Token{ID: store.NewID(), Hash: store.HashToken(store.NewID())}
	before := time.Now()
	must(t, s.CreateToken(ctx, bare), "CreateToken bare")
	got, err = s.GetToken(ctx, bare.ID)
	must(t, err, "GetToken bare")
	if got.CreatedAt.Before(before.Add(-time.Second)) || got.CreatedAt.After(time.Now().Add(time.Second)) {
		t.Errorf("CreatedAt = %v, want about %v", got.CreatedAt, before)
	}
	bare.CreatedAt = got.CreatedAt
	tokensEqual(t, got, bare)

	a := []store.Assignment{{MemberID: "m3", Upstream: "10.0.0.3:9000", BackendKeyID: "9000"}}
	must(t, s.UpdateAssignments(ctx, tok.ID, a), "UpdateAssignments")
	tok.Assignments = a
	l := store.Limits{ExpiresAt: time.Unix(1950000000, 0).UTC(), QuotaBytes: 5, MaxSessions: 1, MaxDevices: 4}
	must(t, s.UpdateLimits(ctx, tok.ID, l, store.AllLimits), "UpdateLimits")
	tok.ExpiresAt, tok.QuotaBytes, tok.MaxSessions, tok.MaxDevices = l.ExpiresAt, l.QuotaBytes, l.MaxSessions, l.MaxDevices
	got, err = s.GetToken(ctx, tok.ID)
	must(t, err, "GetToken after updates")
	tokensEqual(t, got, tok)
	// Only the fields named are written: two edits made from the same
	// read, each of its own field, both land (a PATCH of the quota racing
	// one of the device limit).
	stale := l
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, e := range []struct {
		which store.LimitSet
		set   func(*store.Limits)
	}{
		{store.LimitQuota, func(l *store.Limits) { l.QuotaBytes = 7 }},
		{store.LimitDevices, func(l *store.Limits) { l.MaxDevices = 9 }},
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := stale
			e.set(&l)
			errs[i] = s.UpdateLimits(ctx, tok.ID, l, e.which)
		}()
	}
	wg.Wait()
	must(t, errors.Join(errs...), "UpdateLimits of one field")
	tok.QuotaBytes, tok.MaxDevices = 7, 9
	got, err = s.GetToken(ctx, tok.ID)
	must(t, err, "GetToken after one-field updates")
	tokensEqual(t, got, tok)
	must(t, s.UpdateAssignments(ctx, tok.ID, nil), "UpdateAssignments nil")
	got, _ = s.GetToken(ctx, tok.ID)
	if len(got.Assignments) != 0 {
		t.Errorf("assignments after clearing = %v", got.Assignments)
	}
	tok.Assignments = nil

	rev, err := s.RevokeToken(ctx, tok.ID)
	must(t, err, "RevokeToken")
	if !rev.Revoked || rev.RevokedAt.IsZero() || rev.Hash != tok.Hash {
		t.Fatalf("revoked token = %+v", rev)
	}
	rev2, err := s.RevokeToken(ctx, tok.ID)
	must(t, err, "RevokeToken again")
	if !rev2.RevokedAt.Equal(rev.RevokedAt) {
		t.Errorf("second revoke moved RevokedAt %v → %v", rev.RevokedAt, rev2.RevokedAt)
	}
	got, err = s.GetTokenByHash(ctx, tok.Hash)
	must(t, err, "GetTokenByHash revoked")
	tok.Revoked, tok.RevokedAt = true, rev.RevokedAt
	tokensEqual(t, got, tok)

	must(t, s.AddUsage(ctx, time.Now(), map[string]store.Usage{tok.ID: {Up: 1, Down: 2}}), "AddUsage")
	must(t, s.DeleteToken(ctx, tok.ID), "DeleteToken")
	_, err = s.GetToken(ctx, tok.ID)
	mustErr(t, err, store.ErrNotFound, "GetToken deleted")
	_, err = s.GetTokenByHash(ctx, tok.Hash)
	mustErr(t, err, store.ErrNotFound, "GetTokenByHash deleted")
	_, err = s.GetUsage(ctx, tok.ID)
	mustErr(t, err, store.ErrNotFound, "GetUsage deleted")

	// The ID and hash are free again, with fresh counters.
	must(t, s.CreateToken(ctx, tok), "CreateToken again")
	u, err := s.GetUsage(ctx, tok.ID)
	must(t, err, "GetUsage recreated")
	if u != (store.Usage{}) {
		t.Errorf("usage of recreated token = %+v, want zero", u)
	}
}

func testTokenErrors(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tok := newToken("x")
	must(t, s.CreateToken(ctx, tok), "CreateToken")

	dupID := newToken("dup id")
	dupID.ID = tok.ID
	mustErr(t, s.CreateToken(ctx, dupID), store.ErrExists, "CreateToken same ID")
	dupHash := newToken("dup hash")
	dupHash.Hash = tok.Hash
	mustErr(t, s.CreateToken(ctx, dupHash), store.ErrExists, "CreateToken same hash")
	// A failed create leaves nothing behind.
	_, err := s.GetToken(ctx, dupHash.ID)
	mustErr(t, err, store.ErrNotFound, "GetToken after failed create")
	got, err := s.GetTokenByHash(ctx, tok.Hash)
	must(t, err, "GetTokenByHash")
	if got.ID != tok.ID {
		t.Fatalf("hash index now points at %q, want %q", got.ID, tok.ID)
	}

	noID := newToken("no id")
	noID.ID = ""
	mustErr(t, s.CreateToken(ctx, noID), store.ErrInvalid, "CreateToken empty ID")
	noHash := newToken("no hash")
	noHash.Hash = [32]byte{}
	mustErr(t, s.CreateToken(ctx, noHash), store.ErrInvalid, "CreateToken zero hash")

	missing := store.NewID()
	_, err = s.GetToken(ctx, missing)
	mustErr(t, err, store.ErrNotFound, "GetToken")
	_, err = s.GetTokenByHash(ctx, store.HashToken(missing))
	mustErr(t, err, store.ErrNotFound, "GetTokenByHash")
	_, err = s.RevokeToken(ctx, missing)
	mustErr(t, err, store.ErrNotFound, "RevokeToken")
	mustErr(t, s.UpdateAssignments(ctx, missing, nil), store.ErrNotFound, "UpdateAssignments")
	mustErr(t, s.UpdateLimits(ctx, missing, store.Limits{}, store.AllLimits), store.ErrNotFound, "UpdateLimits")
	mustErr(t, s.DeleteToken(ctx, missing), store.ErrNotFound, "DeleteToken")
	_, err = s.GetUsage(ctx, missing)
	mustErr(t, err, store.ErrNotFound, "GetUsage")

	// Errors never carry secrets.
	for _, e := range []error{s.CreateToken(ctx, dupHash), s.CreateToken(ctx, dupID)} {
		msg := e.Error()
		for _, secret := range []string{fmt.Sprintf("%x", tok.Hash), tok.SSPassword, dupHash.SSPassword} {
			if secret != "" && contains(msg, secret) {
				t.Errorf("error %q contains a secret", msg)
			}
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func testTokenPagination(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const n = 250
	want := make([]string, n)
	base := time.Unix(1710000000, 0).UTC()
	for i := range n {
		tok := newToken(fmt.Sprint(i))
		// Pairs share a creation time: the order must still be total.
		tok.CreatedAt = base.Add(time.Duration(i/2) * time.Millisecond)
		must(t, s.CreateToken(ctx, tok), "CreateToken")
		want[i] = tok.ID
	}
	// Within a tie the order is by ID.
	for i := 0; i+1 < n; i += 2 {
		if want[i] > want[i+1] {
			want[i], want[i+1] = want[i+1], want[i]
		}
	}

	var got []string
	cursor := ""
	pages := 0
	for {
		page, next, err := s.ListTokens(ctx, cursor, 100)
		must(t, err, "ListTokens")
		pages++
		if len(page) > 100 {
			t.Fatalf("page of %d tokens, limit 100", len(page))
		}
		for _, tok := range page {
			got = append(got, tok.ID)
			if tok.SSPassword == "" || tok.Hash == ([32]byte{}) {
				t.Fatalf("listed token %s lacks fields", tok.ID)
			}
		}
		if next == "" {
			break
		}
		if pages > 10 {
			t.Fatal("pagination does not end")
		}
		cursor = next
	}
	if pages != 3 {
		t.Errorf("pages = %d, want 3", pages)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("listed %d tokens, want %d in creation order", len(got), len(want))
	}

	// A cursor stays valid when its token is deleted.
	page, next, err := s.ListTokens(ctx, "", 10)
	must(t, err, "ListTokens first 10")
	must(t, s.DeleteToken(ctx, page[9].ID), "DeleteToken")
	page, _, err = s.ListTokens(ctx, next, 5)
	must(t, err, "ListTokens after deleted cursor")
	if len(page) != 5 || page[0].ID != want[10] {
		t.Fatalf("page after deleted cursor starts at %v, want %s", ids(page), want[10])
	}

	// Default and capped limits.
	page, _, err = s.ListTokens(ctx, "", 0)
	must(t, err, "ListTokens limit 0")
	if len(page) != store.DefaultPageSize {
		t.Errorf("limit 0 gave %d tokens, want %d", len(page), store.DefaultPageSize)
	}
	page, next, err = s.ListTokens(ctx, "", 100000)
	must(t, err, "ListTokens huge limit")
	if len(page) != n-1 || next != "" {
		t.Errorf("huge limit gave %d tokens, next %q", len(page), next)
	}
}

func ids(ts []store.Token) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.ID)
	}
	return out
}

func testUsage(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	a, b := newToken("a"), newToken("b")
	must(t, s.CreateToken(ctx, a), "CreateToken a")
	must(t, s.CreateToken(ctx, b), "CreateToken b")
	u, err := s.GetUsage(ctx, a.ID)
	must(t, err, "GetUsage fresh")
	if u != (store.Usage{}) {
		t.Fatalf("fresh usage = %+v", u)
	}
	ghost := store.NewID()
	must(t, s.AddUsage(ctx, time.Now(), map[string]store.Usage{a.ID: {Up: 10, Down: 100}, b.ID: {Down: 7}, ghost: {Up: 1}}), "AddUsage")
	must(t, s.AddUsage(ctx, time.Now(), map[string]store.Usage{a.ID: {Up: 5}}), "AddUsage 2")
	must(t, s.AddUsage(ctx, time.Now(), nil), "AddUsage empty")
	u, err = s.GetUsage(ctx, a.ID)
	must(t, err, "GetUsage a")
	if u != (store.Usage{Up: 15, Down: 100}) || u.Total() != 115 {
		t.Errorf("usage a = %+v", u)
	}
	all, err := s.GetUsages(ctx, []string{a.ID, b.ID, ghost})
	must(t, err, "GetUsages")
	want := map[string]store.Usage{a.ID: {Up: 15, Down: 100}, b.ID: {Down: 7}}
	if !reflect.DeepEqual(all, want) {
		t.Errorf("GetUsages = %v, want %v", all, want)
	}
	if _, err := s.GetUsage(ctx, ghost); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("usage for unknown token was kept (err %v)", err)
	}
}

func testUsageConcurrent(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	a, b := newToken("a"), newToken("b")
	must(t, s.CreateToken(ctx, a), "CreateToken a")
	must(t, s.CreateToken(ctx, b), "CreateToken b")
	const workers, rounds = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				d := map[string]store.Usage{
					a.ID: {Up: int64(w + 1), Down: int64(i)},
					b.ID: {Up: 1, Down: 1000},
				}
				if err := s.AddUsage(ctx, time.Now(), d); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	u, err := s.GetUsage(ctx, a.ID)
	must(t, err, "GetUsage a")
	// Up: Σw (w+1)·rounds = 36·50; Down: workers·Σi = 8·1225.
	if want := (store.Usage{Up: 36 * rounds, Down: workers * (rounds * (rounds - 1) / 2)}); u != want {
		t.Errorf("usage a = %+v, want %+v", u, want)
	}
	u, err = s.GetUsage(ctx, b.ID)
	must(t, err, "GetUsage b")
	if want := (store.Usage{Up: workers * rounds, Down: 1000 * workers * rounds}); u != want {
		t.Errorf("usage b = %+v, want %+v", u, want)
	}
}

func heartbeat(t *testing.T, s store.Store, id string, ttl time.Duration) {
	t.Helper()
	must(t, s.Heartbeat(ctxT(t), store.Gateway{ID: id, PublicURL: "wss://" + id + ":443", Started: time.Now()}, ttl), "Heartbeat "+id)
}

func acquire(t *testing.T, s store.Store, tok, gw string, max int) bool {
	t.Helper()
	ok, err := s.AcquireSession(ctxT(t), tok, gw, max)
	must(t, err, "AcquireSession")
	return ok
}

func count(t *testing.T, s store.Store, tok string) int {
	t.Helper()
	n, err := s.SessionCount(ctxT(t), tok)
	must(t, err, "SessionCount")
	return n
}

func testLeaseLimit(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tok := store.NewID()
	g1, g2 := "gw1-"+store.NewID(), "gw2-"+store.NewID()
	heartbeat(t, s, g1, time.Minute)
	heartbeat(t, s, g2, time.Minute)
	if n := count(t, s, tok); n != 0 {
		t.Fatalf("fresh count = %d", n)
	}
	if !acquire(t, s, tok, g1, 2) || !acquire(t, s, tok, g2, 2) {
		t.Fatal("first two sessions refused")
	}
	if acquire(t, s, tok, g1, 2) || acquire(t, s, tok, g2, 2) {
		t.Fatal("third session admitted with max 2")
	}
	if n := count(t, s, tok); n != 2 {
		t.Fatalf("count = %d, want 2", n)
	}
	must(t, s.ReleaseSession(ctx, tok, g1), "ReleaseSession")
	if n := count(t, s, tok); n != 1 {
		t.Fatalf("count after release = %d, want 1", n)
	}
	if !acquire(t, s, tok, g2, 2) {
		t.Fatal("session refused after a release")
	}
	// Extra releases never go below zero nor free another gateway's lease.
	for range 3 {
		must(t, s.ReleaseSession(ctx, tok, g1), "ReleaseSession extra")
	}
	must(t, s.ReleaseSession(ctx, store.NewID(), g1), "ReleaseSession unknown token")
	if n := count(t, s, tok); n != 2 {
		t.Fatalf("count after extra releases = %d, want 2", n)
	}
	// max <= 0 is unlimited.
	for range 10 {
		if !acquire(t, s, tok, g1, 0) {
			t.Fatal("unlimited session refused")
		}
	}
	if n := count(t, s, tok); n != 12 {
		t.Fatalf("count = %d, want 12", n)
	}
	// A gateway that has not sent a heartbeat yet still sees its own leases.
	fresh := "gw3-" + store.NewID()
	tok2 := store.NewID()
	if !acquire(t, s, tok2, fresh, 1) || acquire(t, s, tok2, fresh, 1) {
		t.Fatal("unregistered gateway's own lease not counted")
	}
}

func testLeaseConcurrent(t *testing.T, s store.Store) {
	tok := store.NewID()
	gws := []string{"a-" + store.NewID(), "b-" + store.NewID(), "c-" + store.NewID()}
	for _, g := range gws {
		heartbeat(t, s, g, time.Minute)
	}
	const racers, max = 20, 5
	ok := race(t, racers, func(i int) (bool, error) {
		return s.AcquireSession(ctxT(t), tok, gws[i%len(gws)], max)
	})
	if ok != max {
		t.Fatalf("%d of %d racers admitted, want %d", ok, racers, max)
	}
	if n := count(t, s, tok); n != max {
		t.Fatalf("count = %d, want %d", n, max)
	}
}

func testLeaseGatewayExpiry(t *testing.T, s store.Store) {
	tok := store.NewID()
	dying, alive := "dying-"+store.NewID(), "alive-"+store.NewID()
	heartbeat(t, s, dying, 400*time.Millisecond)
	heartbeat(t, s, alive, time.Minute)
	if !acquire(t, s, tok, dying, 2) || !acquire(t, s, tok, dying, 2) {
		t.Fatal("sessions refused")
	}
	if acquire(t, s, tok, alive, 2) {
		t.Fatal("limit not enforced across gateways")
	}
	deadline := time.Now().Add(5 * time.Second)
	for count(t, s, tok) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("leases of a gateway whose heartbeat expired still count")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !acquire(t, s, tok, alive, 2) || !acquire(t, s, tok, alive, 2) || acquire(t, s, tok, alive, 2) {
		t.Fatal("limit wrong after the dead gateway's leases were freed")
	}
	// The dead gateway comes back: its purged leases stay gone.
	heartbeat(t, s, dying, time.Minute)
	if n := count(t, s, tok); n != 2 {
		t.Fatalf("count after the gateway came back = %d, want 2", n)
	}
}

func testLeaseGatewayRemoved(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tok := store.NewID()
	gone, stay := "gone-"+store.NewID(), "stay-"+store.NewID()
	heartbeat(t, s, gone, time.Minute)
	heartbeat(t, s, stay, time.Minute)
	acquire(t, s, tok, gone, 0)
	acquire(t, s, tok, stay, 0)
	must(t, s.RemoveGateway(ctx, gone), "RemoveGateway")
	if n := count(t, s, tok); n != 1 {
		t.Fatalf("count after RemoveGateway = %d, want 1", n)
	}
	mustErr(t, s.RemoveGateway(ctx, gone), store.ErrNotFound, "RemoveGateway twice")
}

func testGateways(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustErr(t, s.Heartbeat(ctx, store.Gateway{}, time.Second), store.ErrInvalid, "Heartbeat empty ID")
	mustErr(t, s.Heartbeat(ctx, store.Gateway{ID: "x"}, 0), store.ErrInvalid, "Heartbeat zero ttl")
	started := time.Unix(1720000000, 5).UTC()
	g1 := store.Gateway{ID: "g1-" + store.NewID(), PublicURL: "wss://a.example:443", Sessions: 7, Started: started, Version: "v1.2.3", HandshakesPerSec: 12.5}
	g2 := store.Gateway{ID: "g2-" + store.NewID(), PublicURL: "wss://b.example:443", Sessions: 1, Started: started}
	must(t, s.Heartbeat(ctx, g1, time.Minute), "Heartbeat g1")
	must(t, s.Heartbeat(ctx, g2, 300*time.Millisecond), "Heartbeat g2")
	g1.Sessions, g1.HandshakesPerSec = 9, 0.25
	must(t, s.Heartbeat(ctx, g1, time.Minute), "Heartbeat g1 again")

	list, err := s.ListGateways(ctx)
	must(t, err, "ListGateways")
	if len(list) != 2 || list[0].ID != g1.ID || list[1].ID != g2.ID {
		t.Fatalf("ListGateways = %+v", list)
	}
	got := list[0]
	if !got.Live || got.Sessions != 9 || got.PublicURL != g1.PublicURL || !got.Started.Equal(started) || got.Version != "v1.2.3" || got.HandshakesPerSec != 0.25 || list[1].HandshakesPerSec != 0 {
		t.Errorf("gateway = %+v", got)
	}
	if since := time.Since(got.LastHeartbeat); since < -time.Second || since > 5*time.Second {
		t.Errorf("LastHeartbeat = %v", got.LastHeartbeat)
	}
	if d := got.ExpiresAt.Sub(got.LastHeartbeat); d < 59*time.Second || d > 61*time.Second {
		t.Errorf("ExpiresAt - LastHeartbeat = %v, want 1m", d)
	}

	time.Sleep(600 * time.Millisecond)
	list, err = s.ListGateways(ctx)
	must(t, err, "ListGateways later")
	if len(list) != 2 || !list[0].Live || list[1].Live || list[1].ID != g2.ID {
		t.Fatalf("after g2's ttl: %+v", list)
	}
	must(t, s.RemoveGateway(ctx, g2.ID), "RemoveGateway dead")
	list, err = s.ListGateways(ctx)
	must(t, err, "ListGateways after remove")
	if len(list) != 1 || list[0].ID != g1.ID {
		t.Fatalf("after remove: %+v", list)
	}
}

func testMembers(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustErr(t, s.PutMember(ctx, store.Member{}), store.ErrInvalid, "PutMember empty ID")
	created := time.Unix(1730000000, 0).UTC()
	m1 := store.Member{
		ID: "m1", Name: "outline-1", Backend: store.BackendOutlineAPI, Host: "10.0.0.1",
		Outline:   &store.OutlineConfig{APIURL: "https://10.0.0.1:8081/secret", CertSHA256: "ab12"},
		CreatedAt: created,
	}
	m2 := store.Member{
		ID: "m2", Name: "libev", Backend: store.BackendSSManager, Host: "10.0.0.2",
		SSManager: &store.SSManagerConfig{ManagerAddr: "10.0.0.2:6001", PortMin: 20000, PortMax: 29999},
	}
	m0 := store.Member{
		ID: "m0", Name: "static", Backend: store.BackendStatic, Host: "10.0.0.3",
		Static: &store.StaticConfig{Port: 8388, Cipher: "aes-256-gcm", Password: "pw"},
	}
	for _, m := range []store.Member{m1, m2, m0} {
		must(t, s.PutMember(ctx, m), "PutMember "+m.ID)
	}
	got, err := s.GetMember(ctx, "m1")
	must(t, err, "GetMember")
	if !got.CreatedAt.Equal(created) {
		t.Errorf("CreatedAt = %v", got.CreatedAt)
	}
	got.CreatedAt = m1.CreatedAt
	if !reflect.DeepEqual(got, m1) {
		t.Errorf("member = %+v, want %+v", got, m1)
	}
	got2, err := s.GetMember(ctx, "m2")
	must(t, err, "GetMember m2")
	if got2.CreatedAt.IsZero() {
		t.Error("CreatedAt not set on first put")
	}

	h := store.Health{Up: true, CheckedAt: time.Unix(1730000100, 0).UTC(), LastError: "", Keys: 12, Load: 0.25}
	must(t, s.SetMemberHealth(ctx, "m1", h), "SetMemberHealth")
	mustErr(t, s.SetMemberHealth(ctx, "nope", h), store.ErrNotFound, "SetMemberHealth missing")

	// Put keeps Health and CreatedAt.
	m1.Draining = true
	m1.Name = "outline-1b"
	m1.Health = store.Health{LastError: "stale"}
	m1.CreatedAt = time.Time{}
	must(t, s.PutMember(ctx, m1), "PutMember update")
	got, err = s.GetMember(ctx, "m1")
	must(t, err, "GetMember after update")
	if !got.Draining || got.Name != "outline-1b" || !got.CreatedAt.Equal(created) {
		t.Errorf("updated member = %+v", got)
	}
	if got.Health.Up != h.Up || got.Health.Keys != 12 || got.Health.Load != 0.25 || !got.Health.CheckedAt.Equal(h.CheckedAt) || got.Health.LastError != "" {
		t.Errorf("health after PutMember = %+v, want %+v", got.Health, h)
	}

	list, err := s.ListMembers(ctx)
	must(t, err, "ListMembers")
	if len(list) != 3 || list[0].ID != "m0" || list[1].ID != "m1" || list[2].ID != "m2" {
		t.Fatalf("ListMembers = %+v", list)
	}
	if list[1].Health.Keys != 12 || list[0].Static == nil || list[0].Static.Password != "pw" {
		t.Errorf("listed members lack fields: %+v", list)
	}

	must(t, s.DeleteMember(ctx, "m1"), "DeleteMember")
	_, err = s.GetMember(ctx, "m1")
	mustErr(t, err, store.ErrNotFound, "GetMember deleted")
	mustErr(t, s.DeleteMember(ctx, "m1"), store.ErrNotFound, "DeleteMember twice")
	// A member put again after deletion starts without the old health.
	m1.CreatedAt = time.Time{}
	must(t, s.PutMember(ctx, m1), "PutMember again")
	got, _ = s.GetMember(ctx, "m1")
	if got.Health.Keys != 0 {
		t.Errorf("health survived deletion: %+v", got.Health)
	}
}

// receive waits for the next non-resync event.
// InstallationID: created once, the same for every caller, however many
// ask at once.
func testInstallationID(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const n = 16
	got := make([]string, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			got[i], errs[i] = s.InstallationID(ctx)
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		must(t, errs[i], "InstallationID")
		if got[i] != got[0] {
			t.Fatalf("concurrent InstallationID calls disagree: %q and %q", got[0], got[i])
		}
	}
	if len(got[0]) != len(store.NewID()) {
		t.Fatalf("InstallationID = %q, want a store.NewID", got[0])
	}
	again, err := s.InstallationID(ctx)
	must(t, err, "InstallationID again")
	if again != got[0] {
		t.Fatalf("InstallationID changed: %q, then %q", got[0], again)
	}
}

func receive(t *testing.T, ch <-chan store.Event, within time.Duration) store.Event {
	t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatal("subscription closed")
			}
			if e.Kind == store.EventResync {
				continue
			}
			return e
		case <-timer.C:
			t.Fatalf("no event within %v", within)
		}
	}
}

func testEvents(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	ch1, err := s.Subscribe(ctx)
	must(t, err, "Subscribe 1")
	ch2, err := s.Subscribe(ctx)
	must(t, err, "Subscribe 2")
	events := []store.Event{
		{Kind: store.EventTokenRevoked, TokenID: "t1", Hash: store.HashToken("x")},
		{Kind: store.EventTokenChanged, TokenID: "t2"},
		{Kind: store.EventQuotaExceeded, TokenID: "t3"},
		{Kind: store.EventMemberChanged, MemberID: "m1"},
	}
	for _, e := range events {
		start := time.Now()
		must(t, s.Publish(ctx, e), "Publish")
		for i, ch := range []<-chan store.Event{ch1, ch2} {
			got := receive(t, ch, time.Second)
			if got != e {
				t.Fatalf("subscriber %d got %+v, want %+v", i+1, got, e)
			}
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("delivery took %v", d)
		}
	}
	mustErr(t, s.Publish(ctx, store.Event{}), store.ErrInvalid, "Publish without kind")
	mustErr(t, s.Publish(ctx, store.Event{Kind: store.EventResync}), store.ErrInvalid, "Publish resync")
}

func testSubscribeCancel(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(ctxT(t))
	ch, err := s.Subscribe(ctx)
	must(t, err, "Subscribe")
	other, err := s.Subscribe(ctxT(t))
	must(t, err, "Subscribe other")
	cancel()
	timer := time.NewTimer(2 * time.Second)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				// The other subscription is unaffected.
				must(t, s.Publish(ctxT(t), store.Event{Kind: store.EventTokenChanged, TokenID: "z"}), "Publish")
				if e := receive(t, other, time.Second); e.TokenID != "z" {
					t.Fatalf("other subscriber got %+v", e)
				}
				return
			}
		case <-timer.C:
			t.Fatal("channel not closed after ctx was cancelled")
		}
	}
}

func testClosed(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	ch, err := s.Subscribe(ctx)
	must(t, err, "Subscribe")
	must(t, s.Close(), "Close")
	must(t, s.Close(), "Close twice")
	select {
	case <-waitClosed(ch):
	case <-time.After(2 * time.Second):
		t.Fatal("subscription not closed by Close")
	}
	_, err = s.GetToken(ctx, "x")
	mustErr(t, err, store.ErrUnavailable, "GetToken after Close")
	mustErr(t, s.CreateToken(ctx, newToken("x")), store.ErrUnavailable, "CreateToken after Close")
	_, err = s.Subscribe(ctx)
	mustErr(t, err, store.ErrUnavailable, "Subscribe after Close")
	_, err = s.InstallationID(ctx)
	mustErr(t, err, store.ErrUnavailable, "InstallationID after Close")
}

func waitClosed(ch <-chan store.Event) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		for range ch {
		}
		close(done)
	}()
	return done
}

func testReopen(t *testing.T, s store.Store, reopen ReopenFunc) {
	ctx := ctxT(t)
	tok := newToken("persist")
	must(t, s.CreateToken(ctx, tok), "CreateToken")
	must(t, s.AddUsage(ctx, time.Now(), map[string]store.Usage{tok.ID: {Up: 3, Down: 4}}), "AddUsage")
	rev := newToken("revoked")
	must(t, s.CreateToken(ctx, rev), "CreateToken revoked")
	revd, err := s.RevokeToken(ctx, rev.ID)
	must(t, err, "RevokeToken")
	m := store.Member{ID: "m1", Name: "n", Backend: store.BackendStatic, Host: "10.1.1.1",
		Static: &store.StaticConfig{Port: 1, Cipher: "aes-128-gcm", Password: "p"}}
	must(t, s.PutMember(ctx, m), "PutMember")
	must(t, s.SetMemberHealth(ctx, "m1", store.Health{Up: true, Keys: 2}), "SetMemberHealth")
	inst, err := s.InstallationID(ctx)
	must(t, err, "InstallationID")

	s = reopen(t, s)

	if got, err := s.InstallationID(ctx); err != nil || got != inst {
		t.Errorf("InstallationID after reopen = %q, %v; want %q", got, err, inst)
	}

	got, err := s.GetTokenByHash(ctx, tok.Hash)
	must(t, err, "GetTokenByHash after reopen")
	tokensEqual(t, got, tok)
	got, err = s.GetToken(ctx, rev.ID)
	must(t, err, "GetToken revoked after reopen")
	if !got.Revoked || !got.RevokedAt.Equal(revd.RevokedAt) {
		t.Errorf("revocation lost: %+v", got)
	}
	u, err := s.GetUsage(ctx, tok.ID)
	must(t, err, "GetUsage after reopen")
	if u != (store.Usage{Up: 3, Down: 4}) {
		t.Errorf("usage after reopen = %+v", u)
	}
	page, _, err := s.ListTokens(ctx, "", 10)
	must(t, err, "ListTokens after reopen")
	if len(page) != 2 || page[0].ID != tok.ID {
		t.Errorf("ListTokens after reopen = %v", ids(page))
	}
	gm, err := s.GetMember(ctx, "m1")
	must(t, err, "GetMember after reopen")
	if gm.Static == nil || gm.Static.Password != "p" || !gm.Health.Up || gm.Health.Keys != 2 {
		t.Errorf("member after reopen = %+v", gm)
	}
	// The reopened store is fully usable.
	must(t, s.AddUsage(ctx, time.Now(), map[string]store.Usage{tok.ID: {Up: 1}}), "AddUsage after reopen")
	tok2 := newToken("after")
	must(t, s.CreateToken(ctx, tok2), "CreateToken after reopen")
	dup := newToken("dup")
	dup.Hash = tok.Hash
	mustErr(t, s.CreateToken(ctx, dup), store.ErrExists, "hash index after reopen")
}

func testBlobs(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	_, err := s.GetBlob(ctx, "acme/a")
	mustErr(t, err, store.ErrNotFound, "GetBlob of a missing key")
	before := time.Now().Add(-time.Minute)
	want := map[string]string{"acme/a": "1", "acme/b/c": "two", "acme/b/d": "", "acmex": "x", "other/z": "\x00\xff\x01"}
	for k, v := range want {
		must(t, s.PutBlob(ctx, k, []byte(v)), "PutBlob "+k)
	}
	for k, v := range want {
		b, err := s.GetBlob(ctx, k)
		must(t, err, "GetBlob "+k)
		if string(b.Value) != v {
			t.Errorf("GetBlob(%q) = %q, want %q", k, b.Value, v)
		}
		if b.Modified.Before(before) || b.Modified.After(time.Now().Add(time.Minute)) {
			t.Errorf("GetBlob(%q).Modified = %v, want about now", k, b.Modified)
		}
	}
	must(t, s.PutBlob(ctx, "acme/a", []byte("replaced")), "PutBlob again")
	if b, _ := s.GetBlob(ctx, "acme/a"); string(b.Value) != "replaced" {
		t.Errorf("after a second put: %q, want %q", b.Value, "replaced")
	}
	list := func(prefix string, want ...string) {
		t.Helper()
		got, err := s.ListBlobs(ctx, prefix)
		must(t, err, "ListBlobs "+prefix)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("ListBlobs(%q) = %q, want %q", prefix, got, want)
		}
	}
	list("acme/", "acme/a", "acme/b/c", "acme/b/d")
	list("acme", "acme/a", "acme/b/c", "acme/b/d", "acmex")
	list("", "acme/a", "acme/b/c", "acme/b/d", "acmex", "other/z")
	list("nothing/")
	must(t, s.DeleteBlob(ctx, "acme/b"), "DeleteBlob of a directory")
	list("acme", "acme/a", "acmex")
	must(t, s.PutBlob(ctx, "acme/ab", []byte("kept")), "PutBlob")
	must(t, s.DeleteBlob(ctx, "acme/a"), "DeleteBlob of a file")
	list("acme", "acme/ab", "acmex")
	must(t, s.DeleteBlob(ctx, "missing"), "DeleteBlob of nothing")
	mustErr(t, s.DeleteBlob(ctx, ""), store.ErrInvalid, "DeleteBlob of everything")
	mustErr(t, s.PutBlob(ctx, "", nil), store.ErrInvalid, "PutBlob with no key")
	mustErr(t, s.PutBlob(ctx, "big", make([]byte, store.MaxBlobSize+1)), store.ErrInvalid, "PutBlob over MaxBlobSize")
	must(t, s.PutBlob(ctx, "max", make([]byte, store.MaxBlobSize)), "PutBlob of MaxBlobSize")
}

func testLocks(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	lock := func(name, owner string, ttl time.Duration) bool {
		t.Helper()
		ok, err := s.TryLock(ctx, name, owner, ttl)
		must(t, err, "TryLock")
		return ok
	}
	if !lock("issue", "a", time.Minute) {
		t.Fatal("a free lock was not taken")
	}
	if lock("issue", "b", time.Minute) {
		t.Fatal("a held lock was taken by another owner")
	}
	if !lock("other", "b", time.Minute) {
		t.Fatal("locks of other names are independent")
	}
	if !lock("issue", "a", time.Minute) {
		t.Fatal("the owner could not extend its lock")
	}
	must(t, s.Unlock(ctx, "issue", "b"), "Unlock by a non-owner")
	if lock("issue", "b", time.Minute) {
		t.Fatal("Unlock by a non-owner freed the lock")
	}
	must(t, s.Unlock(ctx, "issue", "a"), "Unlock")
	if !lock("issue", "b", time.Minute) {
		t.Fatal("an unlocked lock was not free")
	}
	// A holder that dies frees the lock when its ttl passes.
	if !lock("short", "a", 200*time.Millisecond) {
		t.Fatal("a free lock was not taken")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !lock("short", "b", time.Minute) {
		if time.Now().After(deadline) {
			t.Fatal("an expired lock was never freed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := s.TryLock(ctx, "", "a", time.Minute); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("TryLock with no name: %v, want ErrInvalid", err)
	}
}

// race runs f(0) … f(n-1) at once and counts the calls that returned true;
// an error fails the test.
func race(t *testing.T, n int, f func(i int) (bool, error)) int {
	t.Helper()
	var ok atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			<-start
			got, err := f(i)
			if err != nil {
				errs <- err
			}
			if got {
				ok.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return int(ok.Load())
}
