package e2e

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// quotaBound is the documented bound on what a token relays beyond its
// quota (docs/04, "Quotas that hold"): 1 MiB plus 1 % of the quota.
func quotaBound(quota int64) int64 { return quota + 1<<20 + quota/100 }

// Downloads as fast as loopback goes, four at once through both gateways
// (A over TLS, B plaintext), stop at the token's quota: the bytes the
// clients got and the usage the API reports stay within the documented
// bound, and every session ends with close 1008. Before the fix a 10 MiB
// token finished a 50 MB download.
func TestQuotaHoldsAtFullSpeed(t *testing.T) {
	f := startCtlFleet(t, 2)
	f.staticPair(t)
	for i, quota := range []int64{8 << 20, 64 << 20} {
		tok := f.ctl.issue(map[string]any{"label": "quota-speed", "quota_bytes": quota})
		// Paced far above what loopback carries: the source never waits.
		src := pacedSource(t, 4*quota, uint64(40+i), 1<<40)
		var watches []<-chan ctlClosed
		for j := range 4 {
			g := f.a
			if j%2 == 1 {
				g = f.b
			}
			sc, err := g.ss(tok, src)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { sc.Close() })
			watches = append(watches, watchClose(sc, 60*time.Second, nil))
		}
		start := time.Now()
		var read int64
		for j, w := range watches {
			c := <-w
			read += c.read
			if c.code != ws.StatusPolicyViolation {
				t.Errorf("quota %d: session %d ended with close %d (%v) after %d bytes, want 1008", quota, j, c.code, c.err, c.read)
			}
		}
		took := time.Since(start)
		var used int64
		ctlEventually(t, 5*time.Second, "usage over quota in the API", func() bool {
			v := f.ctl.token(tok.ID)
			used = v.Usage.Total
			return v.Status == "over_quota"
		})
		t.Logf("quota %d: clients read %d bytes in %v (%.0f MB/s), usage %d (bound %d)",
			quota, read, took.Round(time.Millisecond), float64(read)/took.Seconds()/1e6, used, quotaBound(quota))
		if read > quotaBound(quota) || used > quotaBound(quota) {
			t.Errorf("quota %d: clients read %d bytes, usage %d: over the bound %d", quota, read, used, quotaBound(quota))
		}
		if read < quota*9/10 {
			t.Errorf("quota %d: clients read only %d bytes: cut well before the quota", quota, read)
		}
		for _, g := range []*ctlGateway{f.a, f.b} {
			ctlEventually(t, 3*time.Second, "the decoy on gateway "+g.name, func() bool { return g.decoy(tok.Token) == nil })
		}
	}
}

// A token below its quota is not cut short: half its quota, fetched at
// full speed through both gateways at once, arrives intact.
func TestQuotaBelowNotCut(t *testing.T) {
	f := startCtlFleet(t, 2)
	f.staticPair(t)
	const quota = 8 << 20
	tok := f.ctl.issue(map[string]any{"label": "quota-below", "quota_bytes": quota})
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for j := range errs {
		g := f.a
		if j%2 == 1 {
			g = f.b
		}
		wg.Go(func() { errs[j] = g.fetch(tok, f.origin, quota/8, uint64(60+j)) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	ctlEventually(t, 5*time.Second, "the fetches' usage in the API", func() bool {
		return f.ctl.token(tok.ID).Usage.Total >= quota/2
	})
	if v := f.ctl.token(tok.ID); v.Status != "active" || v.Usage.Total > quota {
		t.Fatalf("after half the quota: status %q, usage %d", v.Status, v.Usage.Total)
	}
	if err := f.b.fetch(tok, f.origin, 1<<20, 70); err != nil {
		t.Fatalf("a further fetch below the quota: %v", err)
	}
}

// The native tunnel's streams are charged inside their tunnel: `httvps
// connect` through both gateways, parallel downloads past the quota, stop
// at it; a download of a quarter of it before that arrives intact.
func TestQuotaHoldsNativeTunnel(t *testing.T) {
	needNativePeers(t)
	f := startCtlFleet(t, 1)
	f.staticPair(t)
	const quota = 8 << 20
	tok := f.ctl.issue(map[string]any{"label": "quota-native", "quota_bytes": quota})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var clients []*connectProc
	for _, g := range []*ctlGateway{f.b, f.a} {
		key := nativeKey{token: tok.Token, cipher: tok.Cipher, secret: tok.Secret, gateways: []string{g.addr}}
		if g.cert != nil {
			key.pin = certPin(g.cert)
		}
		clients = append(clients, startNativeConnect(t, key))
	}
	if err := curlDown(ctx, socksProxy(clients[0]), f.origin, quota/4, 80); err != nil {
		t.Fatalf("a quarter of the quota: %v", err)
	}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			if err := curlDown(ctx, socksProxy(clients[i%2]), f.origin, quota, uint64(81+i)); err == nil {
				t.Errorf("download %d of the whole quota completed past the quota", i)
			}
		})
	}
	wg.Wait()
	var used int64
	ctlEventually(t, 10*time.Second, "usage over quota in the API", func() bool {
		v := f.ctl.token(tok.ID)
		used = v.Usage.Total
		return v.Status == "over_quota"
	})
	t.Logf("usage %d of a %d-byte quota (bound %d)", used, quota, quotaBound(quota))
	if used > quotaBound(quota) {
		t.Errorf("usage %d over the bound %d", used, quotaBound(quota))
	}
}
