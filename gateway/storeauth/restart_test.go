package storeauth

import (
	"testing"
	"time"

	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/store"
)

// Redis crashes and comes back on the same port: sessions keep relaying,
// cached tokens keep connecting, unknown ones are denied, usage counted
// during the outage reaches the store afterwards, and revocation works
// again once the subscription is back.
func TestRedisRestart(t *testing.T) {
	r := startRedis(t)
	up := testpeer.EchoServer(t)
	n := startNode(t, r, fastConfig())
	s1secret, t1 := newToken(t, n.st, []string{up}, nil)
	s2secret, t2 := newToken(t, n.st, []string{up}, func(tk *store.Token) { tk.MaxSessions = 3 })
	s3secret, _ := newToken(t, n.st, []string{up}, nil) // never seen before the outage

	s1 := mustDial(t, n.addr, s1secret)
	echo(t, s1, 10000)
	c2 := mustDial(t, n.addr, s2secret) // caches t2
	echo(t, c2, 100)
	c2.Close()
	eventually(t, 3*time.Second, "usage before the outage", func() bool {
		u, err := n.st.GetUsage(ctxT(t), t1.ID)
		return err == nil && u.Total() == 20000
	})
	eventually(t, 3*time.Second, "t2's lease to be given back", func() bool {
		c, err := n.st.SessionCount(ctxT(t), t2.ID)
		return err == nil && c == 0
	})

	r.Kill()
	const outage = 5 * 50000 * 2 // echoed bytes count up and down
	for range 5 {
		echo(t, s1, 50000)
	}
	c2 = mustDial(t, n.addr, s2secret) // cached: admitted without a lease
	echo(t, c2, 100)
	mustDeny(t, n.addr, s3secret, "unknown token while Redis is down")
	eventually(t, 3*time.Second, "a failed flush", func() bool { return n.auth.Stats().FlushErrors > 0 })
	if s := n.auth.Stats(); !s.StoreDown || s.LocalAdmits != 1 || s.PendingUsage < outage {
		t.Fatalf("during the outage: %+v", s)
	}

	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "outage usage flushed", func() bool {
		u, err := n.st.GetUsage(ctxT(t), t1.ID)
		return err == nil && u.Total() == 20000+outage
	})
	eventually(t, 5*time.Second, "the local session's lease", func() bool {
		c, err := n.st.SessionCount(ctxT(t), t2.ID)
		return err == nil && c == 1
	})
	eventually(t, 5*time.Second, "the unknown token to be admitted", func() bool {
		c, err := dial(n.addr, s3secret)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	if _, err := n.st.RevokeToken(ctxT(t), t1.ID); err != nil {
		t.Fatal(err)
	}
	closed := make(chan int, 1)
	go func() {
		code, _, _ := waitClose(s1, 10*time.Second)
		closed <- int(code)
	}()
	// The subscription reconnects by itself; publish until it hears.
	deadline := time.After(8 * time.Second)
	for {
		n.st.Publish(ctxT(t), store.Event{Kind: store.EventTokenRevoked, TokenID: t1.ID, Hash: t1.Hash})
		select {
		case code := <-closed:
			if code != 1008 {
				t.Fatalf("close %d after revocation, want 1008", code)
			}
			mustDeny(t, n.addr, s1secret, "revoked after the restart")
			return
		case <-deadline:
			t.Fatal("revocation after the restart did not close the session")
		case <-time.After(300 * time.Millisecond):
		}
	}
}
