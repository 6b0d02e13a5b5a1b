package storeauth

import (
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/store"
)

var _ gateway.Authenticator = (*Auth)(nil)

// A fresh cache entry answers without the store; only the first handshake
// of a token, and of an unknown hash, asks it.
func TestCachedHitDoesNotTouchStore(t *testing.T) {
	r := startRedis(t)
	st := openStore(t, r)
	a := New(st, Config{Logger: quiet}) // no Run: nothing happens in the background
	secret, tok := newToken(t, st, []string{"127.0.0.1:1"}, nil)

	route, _, ok := a.Authenticate([]byte(secret), gateway.PathTCP, gateway.Client{})
	if !ok || route.Upstream != "127.0.0.1:1" || route.Account.Key() != tok.ID {
		t.Fatalf("first handshake: %+v %v", route, ok)
	}
	route.Account.Release()
	if n := st.n("GetTokenByHash"); n != 1 {
		t.Fatalf("miss: %d lookups, want 1", n)
	}
	before := st.total()
	for range 1000 {
		route, _, ok := a.Authenticate([]byte(secret), gateway.PathUDP, gateway.Client{})
		if !ok {
			t.Fatal("cached token denied")
		}
		route.Account.AddUsage(10, 20)
		route.Account.Release()
	}
	if n := st.total() - before; n != 0 {
		t.Fatalf("cache hits made %d store calls: %v", n, st.calls)
	}
	if s := a.Stats(); s.CacheHits != 1000 || s.CacheMisses != 1 {
		t.Fatalf("stats %+v", s)
	}

	// With a session limit each handshake takes a lease: one call, and
	// still no lookup.
	lsecret, _ := newToken(t, st, []string{"127.0.0.1:1"}, func(tk *store.Token) { tk.MaxSessions = 5 })
	a.Authenticate([]byte(lsecret), gateway.PathTCP, gateway.Client{})
	lookups, acquires := st.n("GetTokenByHash"), st.n("AcquireSession")
	for range 4 {
		if _, _, ok := a.Authenticate([]byte(lsecret), gateway.PathTCP, gateway.Client{}); !ok {
			t.Fatal("limited token denied below its limit")
		}
	}
	if st.n("GetTokenByHash") != lookups || st.n("AcquireSession") != acquires+4 {
		t.Fatalf("limited token: %v", st.calls)
	}
	if _, why, ok := a.Authenticate([]byte(lsecret), gateway.PathTCP, gateway.Client{}); ok || why != gateway.RejectSessions {
		t.Fatalf("sixth session past MaxSessions 5: admitted %v, reason %v (want sessions)", ok, why)
	}

	// Unknown: one lookup, then the negative cache.
	lookups = st.n("GetTokenByHash")
	for range 10 {
		if _, why, ok := a.Authenticate([]byte("not-a-token"), gateway.PathTCP, gateway.Client{}); ok || why != gateway.RejectSecret {
			t.Fatalf("unknown token: admitted %v, reason %v (want secret)", ok, why)
		}
	}
	if n := st.n("GetTokenByHash") - lookups; n != 1 {
		t.Fatalf("unknown token: %d lookups, want 1", n)
	}
	if s := a.Stats(); s.NegativeHits != 9 || s.DeniedUnknown != 10 {
		t.Fatalf("stats %+v", s)
	}
}

// A flood of random secrets fills the negative cache up to its bound and
// no further, and memory stays flat.
func TestRandomSecretFloodIsBounded(t *testing.T) {
	r := startRedis(t)
	st := openStore(t, r)
	const bound = 256
	a := New(st, Config{Logger: quiet, NegativeSize: bound})
	bound2 := numShards * ((bound + numShards - 1) / numShards)

	flood := func(n int) {
		for range n {
			if _, _, ok := a.Authenticate([]byte(store.NewID()), gateway.PathTCP, gateway.Client{}); ok {
				t.Fatal("random secret admitted")
			}
		}
	}
	flood(2000)
	if n := a.Stats().NegativeCache; n > bound2 {
		t.Fatalf("negative cache holds %d entries, bound %d", n, bound2)
	}
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	flood(3000)
	runtime.GC()
	runtime.ReadMemStats(&m1)
	if n := a.Stats().NegativeCache; n > bound2 {
		t.Fatalf("negative cache holds %d entries, bound %d", n, bound2)
	}
	if grow := int64(m1.HeapAlloc) - int64(m0.HeapAlloc); grow > 1<<20 {
		t.Fatalf("heap grew by %d bytes over 3000 random secrets", grow)
	}

	// With the store down, unknown secrets are denied without waiting on
	// it: one failed call opens the breaker.
	st.cut.Store(true)
	calls := st.total()
	start := time.Now()
	flood(1000)
	if n := st.total() - calls; n > 2 {
		t.Fatalf("flood during an outage made %d store calls", n)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("1000 denials took %v during an outage", d)
	}
	if s := a.Stats(); s.DeniedUnavailable < 999 || !s.StoreDown {
		t.Fatalf("stats %+v", s)
	}
}

// Revocation reaches every gateway's sessions within a second.
func TestRevokeClosesSessionsOnTwoGateways(t *testing.T) {
	r := startRedis(t)
	up := testpeer.EchoServer(t)
	a, b := startNode(t, r, fastConfig()), startNode(t, r, fastConfig())
	secret, tok := newToken(t, a.st, []string{up}, nil)
	ca, cb := mustDial(t, a.addr, secret), mustDial(t, b.addr, secret)
	echo(t, ca, 1000)
	echo(t, cb, 1000)

	type closed struct {
		code int
		at   time.Time
		err  error
	}
	results := make(chan closed, 2)
	for _, c := range []net.Conn{ca, cb} {
		go func() {
			code, at, err := waitClose(c, 5*time.Second)
			results <- closed{int(code), at, err}
		}()
	}
	start := time.Now()
	if _, err := a.st.RevokeToken(ctxT(t), tok.ID); err != nil {
		t.Fatal(err)
	}
	if err := a.st.Publish(ctxT(t), store.Event{Kind: store.EventTokenRevoked, TokenID: tok.ID, Hash: tok.Hash}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		res := <-results
		if res.err != nil || res.code != 1008 {
			t.Fatalf("close %d, %v; want 1008", res.code, res.err)
		}
		if d := res.at.Sub(start); d > time.Second {
			t.Fatalf("closed %v after the revocation, want ≤ 1s", d)
		} else {
			t.Logf("closed %v after the revocation", d)
		}
	}
	mustDeny(t, a.addr, secret, "revoked token on a")
	mustDeny(t, b.addr, secret, "revoked token on b")
}

// Crossing the quota closes the session within a flush and denies new ones.
func TestQuotaClosesSession(t *testing.T) {
	r := startRedis(t)
	up := testpeer.EchoServer(t)
	cfg := fastConfig()
	n := startNode(t, r, cfg)
	const quota = 1 << 20
	secret, tok := newToken(t, n.st, []string{up}, func(tk *store.Token) { tk.QuotaBytes = quota })
	c := mustDial(t, n.addr, secret)
	// Each echoed byte counts twice (up and down).
	sent := 0
	for sent*2 < quota {
		echo(t, c, 32<<10)
		sent += 32 << 10
	}
	crossed := time.Now()
	code, at, err := waitClose(c, 5*time.Second)
	if err != nil || code != 1008 {
		t.Fatalf("close %d, %v; want 1008", code, err)
	}
	d := at.Sub(crossed)
	t.Logf("closed %v after crossing the quota", d)
	if d > cfg.FlushEvery+time.Second {
		t.Fatalf("closed %v after crossing, want ≤ FlushEvery+1s", d)
	}
	mustDeny(t, n.addr, secret, "token over quota")
	eventually(t, 3*time.Second, "usage in the store", func() bool {
		u, err := n.st.GetUsage(ctxT(t), tok.ID)
		return err == nil && u.Total() >= quota
	})
	// The flush that stored the usage publishes the event just after.
	eventually(t, 3*time.Second, "quota event published", func() bool {
		return n.auth.Stats().Published > 0
	})
	if s := n.auth.Stats(); s.DeniedQuota == 0 {
		t.Fatalf("stats %+v", s)
	}
}

// MaxSessions counts across gateways; a dead gateway's leases stop counting
// once its registration runs out.
func TestMaxSessionsAcrossGateways(t *testing.T) {
	r := startRedis(t)
	up := testpeer.EchoServer(t)
	a, b := startNode(t, r, fastConfig()), startNode(t, r, fastConfig())
	secret, tok := newToken(t, a.st, []string{up}, func(tk *store.Token) { tk.MaxSessions = 2 })
	echo(t, mustDial(t, a.addr, secret), 100)
	echo(t, mustDial(t, b.addr, secret), 100)
	mustDeny(t, a.addr, secret, "third session on a")
	mustDeny(t, b.addr, secret, "third session on b")
	if n, err := a.st.SessionCount(ctxT(t), tok.ID); err != nil || n != 2 {
		t.Fatalf("SessionCount %d, %v", n, err)
	}

	// b dies: its store goes away, so it neither heartbeats nor
	// deregisters, and its session's lease stays behind.
	b.st.cut.Store(true)
	b.stopRun()
	died := time.Now()
	eventually(t, 3*time.Second, "b's lease to stop counting", func() bool {
		n, err := a.st.SessionCount(ctxT(t), tok.ID)
		return err == nil && n == 1
	})
	t.Logf("b's lease stopped counting %v after it died (ttl %v)", time.Since(died), 3*fastConfig().HeartbeatEvery)
	echo(t, mustDial(t, a.addr, secret), 100)
	mustDeny(t, a.addr, secret, "third session after b died")
}

// A session whose first member refuses lands on the second; a member
// marked down goes to the end of the route.
func TestFailover(t *testing.T) {
	r := startRedis(t)
	up, dead := testpeer.EchoServer(t), testpeer.DeadAddr(t)
	n := startNode(t, r, fastConfig())
	secret, tok := newToken(t, n.st, []string{dead, up}, nil)
	echo(t, mustDial(t, n.addr, secret), 1000)

	for _, m := range []string{"m1", "m2"} {
		if err := n.st.PutMember(ctxT(t), store.Member{ID: m, Backend: store.BackendStatic, Host: "127.0.0.1"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.st.SetMemberHealth(ctxT(t), "m1", store.Health{Up: false, CheckedAt: time.Now(), LastError: "refused"}); err != nil {
		t.Fatal(err)
	}
	if err := n.st.Publish(ctxT(t), store.Event{Kind: store.EventMemberChanged, MemberID: "m1"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "m1 to move behind m2", func() bool {
		route, _, ok := n.auth.Authenticate([]byte(secret), gateway.PathTCP, gateway.Client{})
		if ok {
			route.Account.Release()
		}
		return ok && route.Upstream == up && len(route.Fallbacks) == 1 && route.Fallbacks[0] == dead
	})
	echo(t, mustDial(t, n.addr, secret), 1000)
	_ = tok
}

// A token that expires while its session lives has the session closed.
func TestExpiryClosesSession(t *testing.T) {
	r := startRedis(t)
	n := startNode(t, r, fastConfig())
	secret, _ := newToken(t, n.st, []string{testpeer.EchoServer(t)}, func(tk *store.Token) {
		tk.ExpiresAt = time.Now().Add(1500 * time.Millisecond)
	})
	c := mustDial(t, n.addr, secret)
	echo(t, c, 100)
	code, _, err := waitClose(c, 5*time.Second)
	if err != nil || code != 1008 {
		t.Fatalf("close %d, %v; want 1008", code, err)
	}
	mustDeny(t, n.addr, secret, "expired token")
}
