package storeauth

import (
	"testing"
	"time"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/store"
)

// Sessions admitted and ended while the store is down leave the fleet-wide
// count exact once it returns: no lease leaks, none is given back twice.
func TestLeasesBalanceAcrossOutage(t *testing.T) {
	r := startRedis(t)
	n := startNode(t, r, fastConfig())
	secret, tok := newToken(t, n.st, []string{testpeer.EchoServer(t)}, func(tk *store.Token) { tk.MaxSessions = 3 })
	count := func() int {
		c, err := n.st.Store.SessionCount(ctxT(t), tok.ID)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	leased := mustDial(t, n.addr, secret)
	echo(t, leased, 10)
	n.st.cut.Store(true)
	local1 := mustDial(t, n.addr, secret)
	local2 := mustDial(t, n.addr, secret)
	mustDeny(t, n.addr, secret, "fourth session, counted locally")
	leased.Close() // its lease now stands for one of the local sessions
	local1.Close()
	time.Sleep(300 * time.Millisecond)
	n.st.cut.Store(false)
	eventually(t, 5*time.Second, "one lease for the one live session", func() bool { return count() == 1 })
	local2.Close()
	eventually(t, 5*time.Second, "no lease left", func() bool { return count() == 0 })
	time.Sleep(500 * time.Millisecond)
	if c := count(); c != 0 {
		t.Fatalf("%d leases after every session ended", c)
	}
}

// A clean stop flushes usage and deregisters, so the gateway's leases stop
// counting at once.
func TestRunCleanExit(t *testing.T) {
	r := startRedis(t)
	cfg := fastConfig()
	cfg.FlushEvery = 5 * time.Second // only the final flush writes
	n := startNode(t, r, cfg)
	secret, tok := newToken(t, n.st, []string{testpeer.EchoServer(t)}, nil)
	eventually(t, 3*time.Second, "registration", func() bool {
		gws, err := n.st.ListGateways(ctxT(t))
		return err == nil && len(gws) == 1 && gws[0].ID == n.auth.GatewayID() && gws[0].Live
	})
	c := mustDial(t, n.addr, secret)
	echo(t, c, 1234)
	eventually(t, 3*time.Second, "heartbeat with the session", func() bool {
		gws, err := n.st.ListGateways(ctxT(t))
		return err == nil && len(gws) == 1 && gws[0].Sessions == 1
	})
	n.shutdown()
	if err := n.stopRun(); err != nil {
		t.Fatal(err)
	}
	if u, err := n.st.GetUsage(ctxT(t), tok.ID); err != nil || u.Up != 1234 || u.Down != 1234 {
		t.Fatalf("usage %+v, %v", u, err)
	}
	if gws, err := n.st.ListGateways(ctxT(t)); err != nil || len(gws) != 0 {
		t.Fatalf("registrations after a clean exit: %+v, %v", gws, err)
	}
	if err := n.auth.Run(t.Context()); err != ErrRunning {
		t.Fatalf("second Run: %v", err)
	}
}

// The hit path allocates nothing.
func TestCachedHitAllocs(t *testing.T) {
	r := startRedis(t)
	st := openStore(t, r)
	a := New(st, Config{Logger: quiet})
	secret, _ := newToken(t, st, []string{"127.0.0.1:1", "127.0.0.2:1"}, nil)
	sb := []byte(secret)
	a.Authenticate(sb, gateway.PathTCP, gateway.Client{})
	allocs := testing.AllocsPerRun(1000, func() {
		route, _, ok := a.Authenticate(sb, gateway.PathTCP, gateway.Client{})
		if !ok {
			t.Fatal("denied")
		}
		route.Account.AddUsage(1, 1)
		route.Account.Release()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per cached handshake", allocs)
	}
}

func BenchmarkCachedHit(b *testing.B) {
	r := startRedis(b)
	st := openStore(b, r)
	a := New(st, Config{Logger: quiet})
	secret, _ := newToken(b, st, []string{"127.0.0.1:1", "127.0.0.2:1"}, nil)
	a.Authenticate([]byte(secret), gateway.PathTCP, gateway.Client{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		sb := []byte(secret)
		for pb.Next() {
			route, _, ok := a.Authenticate(sb, gateway.PathTCP, gateway.Client{})
			if !ok {
				b.Fatal("denied")
			}
			route.Account.AddUsage(1, 1)
			route.Account.Release()
		}
	})
}

func TestCacheIndexSurvivesEviction(t *testing.T) {
	c := newTTLCache(numShards, func(e *tokenEntry) string { return e.id }) // one entry per shard
	now := time.Now().UnixNano()
	var k1, k2 hashKey
	k2[1] = 1 // same shard as k1
	c.put(&k1, &tokenEntry{id: "a"}, now+int64(time.Hour), now)
	c.put(&k2, &tokenEntry{id: "b"}, now+int64(time.Hour), now) // evicts a
	if _, _, ok := c.get(&k1, now); ok {
		t.Fatal("full shard did not evict")
	}
	if c.len() != 1 || len(c.index) != 1 {
		t.Fatalf("len %d, index %v", c.len(), c.index)
	}
	c.delID("b")
	if _, _, ok := c.get(&k2, now); ok || c.len() != 0 || len(c.index) != 0 {
		t.Fatal("delID left the entry")
	}
	// Expired entries go first.
	var k3 hashKey
	k3[1] = 2
	c.put(&k1, &tokenEntry{id: "a"}, now-1, now)
	c.put(&k3, &tokenEntry{id: "c"}, now+int64(time.Hour), now)
	if _, fresh, ok := c.get(&k3, now); !ok || !fresh {
		t.Fatal("fresh entry missing")
	}
}
