package storeauth

import (
	"net"
	"testing"
	"time"

	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/store"
)

// twoNodes are two gateways over one Redis sharing the test's clock.
func twoNodes(t *testing.T, clk *testpeer.Clock) (*testpeer.Redis, *node, *node) {
	t.Helper()
	r := startRedis(t)
	cfg := fastConfig()
	cfg.Now = clk.Now
	// Entries stay fresh across the moved clock: what admits the token
	// again is the account's own rollover, not a re-read.
	cfg.CacheTTL = 365 * 24 * time.Hour
	return r, startNode(t, r, cfg), startNode(t, r, cfg)
}

// flushed waits until no node holds usage the store has not confirmed.
func flushed(t *testing.T, nodes ...*node) {
	t.Helper()
	for _, n := range nodes {
		eventually(t, 5*time.Second, "usage flushed on "+n.addr, func() bool { return n.auth.Stats().PendingUsage == 0 })
	}
}

// A token over its monthly quota is refused on both gateways until the
// month ends, then admitted on both without a restart; its January usage
// is a past period and February counts from zero.
func TestMonthlyQuotaRollsOverOnBothGateways(t *testing.T) {
	clk := &testpeer.Clock{}
	clk.AdvanceTo(time.Date(2031, 1, 20, 12, 0, 0, 0, time.UTC))
	_, a, b := twoNodes(t, clk)
	secret, tok := newToken(t, a.st, []string{testpeer.EchoServer(t)}, func(tk *store.Token) {
		tk.QuotaBytes, tk.QuotaPeriod, tk.CreatedAt = 1000, store.PeriodMonth, clk.Now()
	})
	cb := mustDial(t, b.addr, secret) // b knows the token before it runs over
	c := mustDial(t, a.addr, secret)
	echo(t, c, 500) // 500 up + 500 down: the 1000-byte quota, which holds (docs/04)
	for _, conn := range []net.Conn{c, cb} {
		if _, _, err := waitClose(conn, 10*time.Second); err != nil {
			t.Fatalf("session not closed for quota: %v", err)
		}
	}
	for _, n := range []*node{a, b} {
		eventually(t, 5*time.Second, "the quota refusal on "+n.addr, func() bool {
			cn, err := dial(n.addr, secret)
			if err == nil {
				cn.Close()
			}
			return err != nil
		})
		mustDeny(t, n.addr, secret, "over quota in January")
	}

	flushed(t, a, b) // January's bytes in January
	clk.AdvanceTo(time.Date(2031, 2, 1, 0, 0, 1, 0, time.UTC))
	for _, n := range []*node{a, b} {
		c := mustDial(t, n.addr, secret)
		echo(t, c, 100)
	}
	eventually(t, 5*time.Second, "February's usage in the store", func() bool {
		u, err := a.st.GetUsage(ctxT(t), tok.ID)
		return err == nil && u.Up == 200 && u.Down == 200 && u.Since.Equal(time.Date(2031, 2, 1, 0, 0, 0, 0, time.UTC))
	})
	past, err := a.st.PastPeriods(ctxT(t), tok.ID)
	if err != nil || len(past) != 1 || past[0].Up != 500 || past[0].Down != 500 || !past[0].Start.Equal(time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("past periods %+v, %v; want January with 500/500", past, err)
	}
}

// publish sends an event as the control plane does after a change.
func publish(t *testing.T, n *node, e store.Event) {
	t.Helper()
	if err := n.st.Publish(ctxT(t), e); err != nil {
		t.Fatal(err)
	}
}

// closedWithin waits for the close frame on each conn and checks it came
// within d of since.
func closedWithin(t *testing.T, since time.Time, d time.Duration, conns ...net.Conn) {
	t.Helper()
	for _, c := range conns {
		_, at, err := waitClose(c, 10*time.Second)
		if err != nil {
			t.Fatalf("session not closed: %v", err)
		}
		if at.Sub(since) > d {
			t.Errorf("session closed %v after the change, want within %v", at.Sub(since), d)
		}
	}
}

// Lowered limits of a live token (PATCH) reach both gateways within a
// second: a quota now used up and an expiry now passed close the live
// sessions, and new ones are refused.
func TestLimitChangesReachLiveSessions(t *testing.T) {
	clk := &testpeer.Clock{}
	_, a, b := twoNodes(t, clk)
	up := testpeer.EchoServer(t)
	for _, change := range []struct {
		name string
		mod  func(l *store.Limits)
	}{
		{"quota", func(l *store.Limits) { l.QuotaBytes = 100 }},
		{"expiry", func(l *store.Limits) { l.ExpiresAt = clk.Now().Add(-time.Second) }},
	} {
		t.Run(change.name, func(t *testing.T) {
			secret, tok := newToken(t, a.st, []string{up}, nil)
			ca, cb := mustDial(t, a.addr, secret), mustDial(t, b.addr, secret)
			echo(t, ca, 100)
			echo(t, cb, 100)
			eventually(t, 5*time.Second, "usage flushed", func() bool {
				u, err := a.st.GetUsage(ctxT(t), tok.ID)
				return err == nil && u.Total() == 400
			})
			l := store.LimitsOf(tok)
			change.mod(&l)
			if err := a.st.UpdateLimits(ctxT(t), tok.ID, l, store.AllLimits); err != nil {
				t.Fatal(err)
			}
			since := time.Now()
			publish(t, a, store.Event{Kind: store.EventTokenChanged, TokenID: tok.ID})
			closedWithin(t, since, time.Second, ca, cb)
			mustDeny(t, a.addr, secret, "after "+change.name+" was lowered")
			mustDeny(t, b.addr, secret, "after "+change.name+" was lowered")
		})
	}
}

// A reset admits a token its quota blocked on both gateways within a
// second.
func TestUsageResetAdmitsAgain(t *testing.T) {
	clk := &testpeer.Clock{}
	_, a, b := twoNodes(t, clk)
	secret, tok := newToken(t, a.st, []string{testpeer.EchoServer(t)}, func(tk *store.Token) {
		tk.QuotaBytes, tk.QuotaPeriod = 1000, store.PeriodWeek
	})
	c := mustDial(t, a.addr, secret)
	echo(t, c, 500) // the whole quota
	if _, _, err := waitClose(c, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*node{a, b} {
		eventually(t, 5*time.Second, "the refusal", func() bool {
			cn, err := dial(n.addr, secret)
			if err == nil {
				cn.Close()
			}
			return err != nil
		})
	}
	flushed(t, a, b) // else the cut session's last bytes count after the reset
	if err := a.st.ResetUsage(ctxT(t), tok.ID, clk.Now()); err != nil {
		t.Fatal(err)
	}
	publish(t, a, store.Event{Kind: store.EventTokenChanged, TokenID: tok.ID})
	deadline := time.Now().Add(time.Second)
	for _, n := range []*node{a, b} {
		eventually(t, time.Until(deadline)+100*time.Millisecond, "admission after the reset on "+n.addr, func() bool {
			cn, err := dial(n.addr, secret)
			if err == nil {
				cn.Close()
			}
			return err == nil
		})
	}
}

// Rotation: the old secret's sessions close and it is refused on both
// gateways within a second; the new one works on both with the same
// usage, limits and upstreams.
func TestRotationStopsTheOldSecret(t *testing.T) {
	clk := &testpeer.Clock{}
	_, a, b := twoNodes(t, clk)
	oldSecret, tok := newToken(t, a.st, []string{testpeer.EchoServer(t)}, func(tk *store.Token) { tk.QuotaBytes = 1 << 20 })
	ca, cb := mustDial(t, a.addr, oldSecret), mustDial(t, b.addr, oldSecret)
	echo(t, ca, 50)
	newSecret := store.NewID()
	old, err := a.st.RotateToken(ctxT(t), tok.ID, store.HashToken(newSecret))
	if err != nil {
		t.Fatal(err)
	}
	since := time.Now()
	publish(t, a, store.Event{Kind: store.EventTokenRotated, TokenID: tok.ID, Hash: old.Hash})
	closedWithin(t, since, time.Second, ca, cb)
	for _, n := range []*node{a, b} {
		mustDeny(t, n.addr, oldSecret, "the old secret after rotation")
		echo(t, mustDial(t, n.addr, newSecret), 25)
	}
	eventually(t, 5*time.Second, "usage of both secrets on the one token", func() bool {
		u, err := a.st.GetUsage(ctxT(t), tok.ID)
		return err == nil && u.Up == 100 && u.Down == 100
	})
}
