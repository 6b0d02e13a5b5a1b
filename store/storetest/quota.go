package storetest

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/httvps/httvps/store"
)

// lease calls LeaseQuota and fails the test on an error.
func lease(t *testing.T, s store.Store, tok, gw string, quota, consumed, delta int64) store.QuotaLease {
	t.Helper()
	l, err := s.LeaseQuota(ctxT(t), tok, gw, time.Now(), quota, consumed, delta)
	must(t, err, "LeaseQuota "+gw)
	return l
}

func wantLease(t *testing.T, got, want store.QuotaLease, what string) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: lease = %+v, want %+v", what, got, want)
	}
}

// testQuotaLease walks two gateways through slices of one quota: grants
// never exceed what usage and the other's slice leave, usage added and
// reported as consumed moves from the slice into Used, and what is given
// back is free for the other.
func testQuotaLease(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tok := newToken("quota")
	must(t, s.CreateToken(ctx, tok), "CreateToken")
	const q = 1000
	a, b := "qa-"+store.NewID(), "qb-"+store.NewID()
	heartbeat(t, s, a, time.Minute)
	heartbeat(t, s, b, time.Minute)

	wantLease(t, lease(t, s, tok.ID, a, q, 0, 600), store.QuotaLease{Granted: 600, Held: 600, Free: 400}, "a takes 600")
	wantLease(t, lease(t, s, tok.ID, b, q, 0, 600), store.QuotaLease{Granted: 400, Held: 400, Free: 0}, "b asks 600")
	l := lease(t, s, tok.ID, a, q, 0, 1)
	wantLease(t, l, store.QuotaLease{Held: 600}, "a asks past the quota")
	if l.Exhausted(q) {
		t.Fatal("Exhausted while slices are held and usage is below the quota")
	}

	// a relayed 100 of its slice and flushed them.
	must(t, s.AddUsage(ctx, time.Now(), map[string]store.Usage{tok.ID: {Up: 30, Down: 70}}), "AddUsage")
	wantLease(t, lease(t, s, tok.ID, a, q, 100, 0), store.QuotaLease{Held: 500, Used: 100}, "a reports 100 consumed")
	wantLease(t, lease(t, s, tok.ID, a, q, 0, -200), store.QuotaLease{Held: 300, Used: 100, Free: 200}, "a gives back 200")
	wantLease(t, lease(t, s, tok.ID, b, q, 0, 1000), store.QuotaLease{Granted: 200, Held: 600, Used: 100}, "b takes what a gave back")
	// Consumed beyond the slice and give-backs beyond it stop at 0.
	must(t, s.AddUsage(ctx, time.Now(), map[string]store.Usage{tok.ID: {Down: 300}}), "AddUsage a's rest")
	wantLease(t, lease(t, s, tok.ID, a, q, 400, -5), store.QuotaLease{Used: 400}, "a consumed more than it held")
	must(t, s.AddUsage(ctx, time.Now(), map[string]store.Usage{tok.ID: {Down: 600}}), "AddUsage b's slice")
	l = lease(t, s, tok.ID, b, q, 600, 10)
	wantLease(t, l, store.QuotaLease{Used: 1000}, "b consumed its slice")
	if !l.Exhausted(q) {
		t.Fatal("not Exhausted with usage at the quota and no slice held")
	}
	// A raised quota leases again.
	wantLease(t, lease(t, s, tok.ID, b, 1500, 0, 100), store.QuotaLease{Granted: 100, Held: 100, Used: 1000, Free: 400}, "quota raised")

	_, err := s.LeaseQuota(ctx, store.NewID(), a, time.Now(), q, 0, 10)
	mustErr(t, err, store.ErrNotFound, "LeaseQuota unknown token")
	_, err = s.LeaseQuota(ctx, tok.ID, "", time.Now(), q, 0, 10)
	mustErr(t, err, store.ErrInvalid, "LeaseQuota without a gateway")
	_, err = s.LeaseQuota(ctx, tok.ID, a, time.Now(), 0, 0, 10)
	mustErr(t, err, store.ErrInvalid, "LeaseQuota without a quota")
	_, err = s.LeaseQuota(ctx, tok.ID, a, time.Now(), q, -1, 10)
	mustErr(t, err, store.ErrInvalid, "LeaseQuota with negative consumed")

	// A deleted token takes its slices with it.
	must(t, s.DeleteToken(ctx, tok.ID), "DeleteToken")
	_, err = s.LeaseQuota(ctx, tok.ID, b, time.Now(), q, 0, 10)
	mustErr(t, err, store.ErrNotFound, "LeaseQuota deleted token")
}

// testQuotaLeaseConcurrent races many small requests from several
// gateways: the slices granted add up to the quota exactly.
func testQuotaLeaseConcurrent(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tok := newToken("quota-race")
	must(t, s.CreateToken(ctx, tok), "CreateToken")
	const q, gateways, racers, ask = 5000, 4, 40, 170
	var gws [gateways]string
	for i := range gws {
		gws[i] = "qr-" + store.NewID()
		heartbeat(t, s, gws[i], time.Minute)
	}
	var granted atomic.Int64
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			l, err := s.LeaseQuota(ctx, tok.ID, gws[i%gateways], time.Now(), q, 0, ask)
			if err != nil {
				t.Error(err)
				return
			}
			granted.Add(l.Granted)
		})
	}
	wg.Wait()
	if g := granted.Load(); g != q {
		t.Fatalf("granted %d in all, want the quota %d", g, q)
	}
	var held int64
	for _, gw := range gws {
		held += lease(t, s, tok.ID, gw, q, 0, 0).Held
	}
	if held != q {
		t.Fatalf("slices held = %d, want %d", held, q)
	}
}

// testQuotaLeaseGatewayExpiry: the slice of a gateway whose heartbeat
// expired stops counting, and one deregistered at once.
func testQuotaLeaseGatewayExpiry(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tok := newToken("quota-dead")
	must(t, s.CreateToken(ctx, tok), "CreateToken")
	const q = 1000
	dying, gone, alive := "qd-"+store.NewID(), "qg-"+store.NewID(), "ql-"+store.NewID()
	heartbeat(t, s, dying, 400*time.Millisecond)
	heartbeat(t, s, gone, time.Minute)
	heartbeat(t, s, alive, time.Minute)
	lease(t, s, tok.ID, dying, q, 0, 700)
	lease(t, s, tok.ID, gone, q, 0, 200)
	wantLease(t, lease(t, s, tok.ID, alive, q, 0, 1000), store.QuotaLease{Granted: 100, Held: 100}, "alive beside two slices")
	must(t, s.RemoveGateway(ctx, gone), "RemoveGateway")
	wantLease(t, lease(t, s, tok.ID, alive, q, 0, 1000), store.QuotaLease{Granted: 200, Held: 300}, "the removed gateway's slice freed")
	deadline := time.Now().Add(10 * time.Second)
	for {
		l := lease(t, s, tok.ID, alive, q, 0, 1000)
		if l.Held == q {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the slice of a gateway whose heartbeat expired still counts: %+v", l)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The dead gateway comes back: its purged slice stays gone.
	heartbeat(t, s, dying, time.Minute)
	wantLease(t, lease(t, s, tok.ID, dying, q, 0, 0), store.QuotaLease{}, "the returned gateway")
}

// testQuotaLeasePeriod: the usage a slice is leased against is that of the
// token's current period; once the period ends, the quota leases again.
func testQuotaLeasePeriod(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tok := newToken("quota-daily")
	tok.QuotaPeriod = store.PeriodDay
	must(t, s.CreateToken(ctx, tok), "CreateToken")
	const q = 1000
	gw := "qp-" + store.NewID()
	heartbeat(t, s, gw, time.Minute)
	day := date(2031, 3, 10, 12)
	must(t, s.AddUsage(ctx, day, map[string]store.Usage{tok.ID: {Down: q}}), "AddUsage")
	l, err := s.LeaseQuota(ctx, tok.ID, gw, day, q, 0, 100)
	must(t, err, "LeaseQuota")
	if l != (store.QuotaLease{Used: q}) || !l.Exhausted(q) {
		t.Fatalf("the day's quota used: lease %+v", l)
	}
	l, err = s.LeaseQuota(ctx, tok.ID, gw, day.Add(12*time.Hour), q, 0, 100)
	must(t, err, "LeaseQuota next day")
	if l != (store.QuotaLease{Granted: 100, Held: 100, Free: q - 100}) {
		t.Fatalf("next day: lease %+v, want 100 of a fresh quota", l)
	}
}
