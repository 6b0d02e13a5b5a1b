package e2e

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/httvps/httvps/control/api/wire"
	"github.com/httvps/httvps/internal/testpeer"
)

// editWithin is how soon a change through the admin API reaches every
// gateway (the issue's bound, as for revocation).
const editWithin = time.Second

// closedAfter runs act and checks that every live session is closed
// within editWithin of it.
func closedAfter(t *testing.T, live map[*ctlGateway]*testpeer.SSConn, what string, act func()) {
	t.Helper()
	watch := map[*ctlGateway]<-chan ctlClosed{}
	for g, sc := range live {
		watch[g] = watchClose(sc, 10*time.Second, nil)
	}
	start := time.Now()
	act()
	for g, ch := range watch {
		c := <-ch
		took := c.at.Sub(start)
		t.Logf("%s: gateway %s closed the session %v after the request (close %d)", what, g.name, took.Round(time.Millisecond), c.code)
		if took > editWithin {
			t.Errorf("%s: gateway %s closed the session %v after the request, want ≤ %v", what, g.name, took, editWithin)
		}
	}
}

// admittedWithin checks that tok is admitted again on both gateways
// within editWithin of since.
func (f *ctlFleet) admittedWithin(t *testing.T, tok ctlToken, since time.Time, what string) {
	t.Helper()
	for _, g := range []*ctlGateway{f.a, f.b} {
		// The attempt that worked started when the gateway already had
		// the change: its start is what is measured, not the dial's time.
		var tried time.Time
		ctlEventually(t, 10*time.Second, what+" on gateway "+g.name, func() bool {
			tried = time.Now()
			c, err := g.dial(tok.Token)
			if err == nil {
				c.Close()
			}
			return err == nil
		})
		if took := tried.Sub(since); took > editWithin {
			t.Errorf("%s: gateway %s admitted the token %v after the request, want ≤ %v", what, g.name, took, editWithin)
		}
	}
}

// flushed waits until neither gateway holds usage the store has not
// confirmed, so what the API shows is all there is.
func (f *ctlFleet) flushed(t *testing.T) {
	t.Helper()
	ctlEventually(t, 10*time.Second, "both gateways' usage in the store", func() bool {
		return f.a.auth.Stats().PendingUsage == 0 && f.b.auth.Stats().PendingUsage == 0
	})
}

func (f *ctlFleet) decoyOnBoth(t *testing.T, tok ctlToken, what string) {
	t.Helper()
	for _, g := range []*ctlGateway{f.a, f.b} {
		if err := g.decoy(tok.Token); err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}
}

// PATCH of quota and expiry on a live token reaches both gateways within a
// second: live sessions are closed when the token is now over its quota or
// expired, new ones refused, and admitted again when the limit is lifted.
func TestControlPatchQuotaAndExpiryOnBothGateways(t *testing.T) {
	f := startCtlFleet(t, 2)
	f.staticPair(t)
	tok := f.ctl.issue(map[string]any{"label": "patch"})
	live := f.openLive(t, tok, 64<<10)
	ctlEventually(t, 5*time.Second, "the sessions' usage in the API", func() bool {
		return f.ctl.token(tok.ID).Usage.Total >= 4*64<<10
	})

	closedAfter(t, live, "quota lowered", func() {
		f.ctl.admin("PATCH", "/v1/tokens/"+tok.ID, map[string]any{"quota_bytes": 1000}, http.StatusOK, nil)
	})
	f.decoyOnBoth(t, tok, "over the lowered quota")
	if v := f.ctl.token(tok.ID); v.Status != "over_quota" || v.QuotaBytes != 1000 {
		t.Errorf("after lowering the quota: status %q, quota %d", v.Status, v.QuotaBytes)
	}
	start := time.Now()
	f.ctl.admin("PATCH", "/v1/tokens/"+tok.ID, map[string]any{"quota_bytes": 0}, http.StatusOK, nil)
	f.admittedWithin(t, tok, start, "quota lifted")

	live = f.openLive(t, tok, 1000)
	past := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	closedAfter(t, live, "expiry moved to the past", func() {
		f.ctl.admin("PATCH", "/v1/tokens/"+tok.ID, map[string]any{"expires_at": past}, http.StatusOK, nil)
	})
	f.decoyOnBoth(t, tok, "expired")
	if v := f.ctl.token(tok.ID); v.Status != "expired" {
		t.Errorf("after the expiry: status %q", v.Status)
	}
	start = time.Now()
	f.ctl.admin("PATCH", "/v1/tokens/"+tok.ID, map[string]any{"expires_at": "never"}, http.StatusOK, nil)
	f.admittedWithin(t, tok, start, "expiry removed")
}

// Rotation: the old secret's sessions close and it is refused on both
// gateways within a second; the new secret works on both with the same
// Shadowsocks key and members, and the usage carries on. The usage history
// holds exactly the bytes the counters hold.
func TestControlRotateOnBothGateways(t *testing.T) {
	f := startCtlFleet(t, 2)
	f.staticPair(t)
	tok := f.ctl.issue(map[string]any{"label": "rotate"})
	live := f.openLive(t, tok, 32<<10)
	ctlEventually(t, 5*time.Second, "the sessions' usage in the API", func() bool {
		return f.ctl.token(tok.ID).Usage.Total >= 4*32<<10
	})
	before := f.ctl.token(tok.ID)

	var rot wire.CreatedToken
	closedAfter(t, live, "rotation", func() {
		f.ctl.admin("POST", "/v1/tokens/"+tok.ID+"/rotate", nil, http.StatusOK, &rot)
	})
	f.decoyOnBoth(t, tok, "the old secret")
	if rot.ID != tok.ID || rot.Token == "" || rot.Token == tok.Token || rot.Usage == nil || rot.Usage.Total < before.Usage.Total {
		t.Fatalf("rotated token: %+v (usage before %+v)", rot.TokenView, before.Usage)
	}
	if len(rot.Assignments) != len(tok.Assignments) || rot.Assignments[0].Upstream != tok.Assignments[0].Upstream {
		t.Errorf("assignments after rotation %+v, before %+v", rot.Assignments, tok.Assignments)
	}
	fresh := tok
	fresh.Token = rot.Token
	r, err := f.ctl.do("GET", "/v1/client/config", fresh.Token, nil)
	if err != nil || r.status != http.StatusOK {
		t.Fatalf("client config with the new secret: %v %v", r, err)
	}
	if r, _ := f.ctl.do("GET", "/v1/client/config", tok.Token, nil); r.status != http.StatusNotFound || r.header.Get("Server") != "nginx" {
		t.Errorf("client config with the old secret: %v, want the decoy", r)
	}
	for i, g := range []*ctlGateway{f.a, f.b} {
		sc, err := g.ss(fresh, f.echo) // the same Shadowsocks password
		if err != nil {
			t.Fatal(err)
		}
		if err := ctlEcho(sc, 10<<10, uint64(200+i)); err != nil {
			t.Fatalf("gateway %s with the new secret: %v", g.name, err)
		}
		sc.Close()
	}

	// The hour buckets hold what the counters hold, byte for byte, for the
	// token and (it is the only one with traffic) the fleet.
	q := url.Values{"from": {time.Now().Add(-2 * time.Hour).UTC().Format(time.RFC3339)}}
	ctlEventually(t, 10*time.Second, "history equal to the counters", func() bool {
		u1 := f.ctl.token(tok.ID).Usage
		var h, fleet wire.UsageHistory
		f.ctl.admin("GET", "/v1/tokens/"+tok.ID+"/usage?"+q.Encode(), nil, http.StatusOK, &h)
		f.ctl.admin("GET", "/v1/usage?"+q.Encode(), nil, http.StatusOK, &fleet)
		u2 := f.ctl.token(tok.ID).Usage
		return u1 == u2 && u1.Total > before.Usage.Total && h.Total.Up == u1.Up && h.Total.Down == u1.Down &&
			fleet.Total.Up == u1.Up && fleet.Total.Down == u1.Down
	})
}

// A monthly quota crossed, then the clock of the gateways and the control
// plane moved past the month's end: the token is admitted again on both
// gateways, without a restart, and the API shows the ended month as a past
// period.
func TestControlMonthlyQuotaRollsOver(t *testing.T) {
	clk := &testpeer.Clock{}
	f := startCtlFleetClock(t, 2, nil, clk)
	f.staticPair(t)
	const quota = 64 << 10
	tok := f.ctl.issue(map[string]any{"label": "monthly", "quota_bytes": quota, "quota_period": "month"})
	sc, err := f.a.ss(tok, f.echo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	ctlEcho(sc, quota, 1) // crosses the quota; the cut may come before the echo ends
	for _, g := range []*ctlGateway{f.a, f.b} {
		ctlEventually(t, 5*time.Second, "the decoy on gateway "+g.name, func() bool { return g.decoy(tok.Token) == nil })
	}
	f.flushed(t)
	var v wire.TokenView
	f.ctl.admin("GET", "/v1/tokens/"+tok.ID, nil, http.StatusOK, &v)
	if v.Status != "over_quota" || v.Period == nil {
		t.Fatalf("over the monthly quota: %+v", v)
	}
	used := v.Usage.Total

	clk.AdvanceTo(v.Period.End.Add(time.Minute))
	for i, g := range []*ctlGateway{f.a, f.b} {
		sc, err := g.ss(tok, f.echo)
		if err != nil {
			t.Fatalf("next month, gateway %s: %v", g.name, err)
		}
		if err := ctlEcho(sc, 1000, uint64(10+i)); err != nil {
			t.Fatalf("next month, gateway %s: %v", g.name, err)
		}
		sc.Close()
	}
	ctlEventually(t, 5*time.Second, "the new month's usage and the old one as a past period", func() bool {
		var n wire.TokenView
		f.ctl.admin("GET", "/v1/tokens/"+tok.ID, nil, http.StatusOK, &n)
		return n.Status == "active" && n.Usage != nil && n.Usage.Total > 2000 && n.Usage.Total < quota &&
			len(n.PastPeriods) == 1 && n.PastPeriods[0].Usage.Total == used && n.PastPeriods[0].End.Equal(v.Period.End)
	})
}

// A usage reset through the API admits a token its quota blocked on both
// gateways within a second; the gateways' old totals do not come back.
func TestControlUsageResetOnBothGateways(t *testing.T) {
	f := startCtlFleet(t, 2)
	f.staticPair(t)
	const quota = 64 << 10
	tok := f.ctl.issue(map[string]any{"label": "reset", "quota_bytes": quota, "quota_period": "week"})
	sc, err := f.b.ss(tok, f.echo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	ctlEcho(sc, quota, 2) // crosses the quota; the cut may come before the echo ends
	for _, g := range []*ctlGateway{f.a, f.b} {
		ctlEventually(t, 5*time.Second, "the decoy on gateway "+g.name, func() bool { return g.decoy(tok.Token) == nil })
	}
	f.flushed(t) // else bytes of the cut session flush after the reset and count in it
	start := time.Now()
	var v wire.TokenView
	f.ctl.admin("POST", "/v1/tokens/"+tok.ID+"/usage/reset", nil, http.StatusOK, &v)
	if v.Status != "active" || v.Usage == nil || v.Usage.Total != 0 {
		t.Errorf("after the reset: %+v", v)
	}
	f.admittedWithin(t, tok, start, "usage reset")
	// Traffic after the reset counts from zero, on both gateways.
	for i, g := range []*ctlGateway{f.a, f.b} {
		sc, err := g.ss(tok, f.echo)
		if err != nil {
			t.Fatal(err)
		}
		if err := ctlEcho(sc, 1000, uint64(20+i)); err != nil {
			t.Fatalf("gateway %s after the reset: %v", g.name, err)
		}
		sc.Close()
	}
	ctlEventually(t, 5*time.Second, "the new usage below the quota", func() bool {
		u := f.ctl.token(tok.ID).Usage
		return u.Total > 4000 && u.Total < quota/2
	})
	if v := f.ctl.token(tok.ID); v.Status != "active" {
		t.Errorf("status %q after traffic following the reset", v.Status)
	}
}
