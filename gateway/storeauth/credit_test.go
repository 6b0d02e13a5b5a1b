package storeauth

import (
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/store"
)

// source is an upstream that sends pseudo-random bytes until the
// connection ends.
func source(t *testing.T) string {
	return testpeer.ListenTCP(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(time.Minute))
		io.Copy(c, testpeer.PseudoRandom(1<<40, 7))
	})
}

// download reads payload until the session closes, adding to total; it
// returns the close code (0 if the connection ended without one).
func download(c net.Conn, total *atomic.Int64) ws.StatusCode {
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		h, err := ws.ReadHeader(c)
		if err != nil {
			return 0
		}
		if h.OpCode == ws.OpClose {
			if h.Length > 125 {
				return 0 // not a close frame: the stream is broken
			}
			body := make([]byte, h.Length)
			io.ReadFull(c, body)
			code, _ := ws.ParseCloseFrameData(body)
			return code
		}
		n, err := io.CopyN(io.Discard, c, h.Length)
		total.Add(n)
		if err != nil {
			return 0
		}
	}
}

// TestQuotaHoldsAcrossGateways: downloads as fast as loopback goes, on
// two gateways at once, stop at the quota: the clients get no more than
// quota plus the documented bound, every session ends with 1008, and the
// store's usage is what was relayed.
func TestQuotaHoldsAcrossGateways(t *testing.T) {
	for _, devices := range []int{0, 5} {
		t.Run(fmt.Sprintf("max_devices=%d", devices), func(t *testing.T) { quotaHolds(t, devices) })
	}
}

// quotaHolds is TestQuotaHoldsAcrossGateways for a token with that device
// limit (its sessions are charged to their device, which takes the
// token's credit).
func quotaHolds(t *testing.T, maxDevices int) {
	r := startRedis(t)
	// The source holds its bytes until every session is open: a session
	// dialled while others already download could find the quota used up
	// and get the decoy (a busy machine dials slowly).
	open := make(chan struct{})
	up := testpeer.ListenTCP(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(time.Minute))
		select {
		case <-open:
		case <-time.After(time.Minute):
			return
		}
		io.Copy(c, testpeer.PseudoRandom(1<<40, 7))
	})
	a, b := startNode(t, r, fastConfig()), startNode(t, r, fastConfig())
	const quota = 4 << 20
	secret, tok := newToken(t, a.st, []string{up}, func(tk *store.Token) {
		tk.QuotaBytes = quota
		tk.MaxDevices = maxDevices
	})
	var total atomic.Int64
	var wg sync.WaitGroup
	codes := make([]ws.StatusCode, 6)
	var conns []net.Conn
	for i := range codes {
		addr := a.addr
		if i%2 == 1 {
			addr = b.addr
		}
		conns = append(conns, mustDial(t, addr, secret))
	}
	close(open)
	for i, c := range conns {
		wg.Go(func() { codes[i] = download(c, &total) })
	}
	wg.Wait()
	got := total.Load()
	t.Logf("clients got %d bytes of a %d-byte quota", got, quota)
	if bound := int64(quota) + overshoot(quota); got > bound {
		t.Fatalf("clients got %d bytes, over quota + bound = %d", got, bound)
	}
	if got < quota*9/10 {
		t.Fatalf("clients got only %d bytes of the %d-byte quota", got, quota)
	}
	for i, code := range codes {
		if code != ws.StatusPolicyViolation {
			t.Fatalf("session %d ended with close %d, want 1008", i, code)
		}
	}
	eventually(t, 5*time.Second, "usage in the store", func() bool {
		u, err := a.st.GetUsage(ctxT(t), tok.ID)
		return err == nil && u.Total() == got
	})
	mustDeny(t, a.addr, secret, "token at its quota on a")
	mustDeny(t, b.addr, secret, "token at its quota on b")
	if a.auth.Stats().QuotaLeases == 0 || b.auth.Stats().QuotaLeases == 0 {
		t.Fatal("a gateway relayed without leasing slices")
	}
}

// TestQuotaBelowNotCut: a token well below its quota downloads what it
// asks for, intact, through both gateways, and its idle slices go back to
// the store.
func TestQuotaBelowNotCut(t *testing.T) {
	r := startRedis(t)
	up := testpeer.EchoServer(t)
	a, b := startNode(t, r, fastConfig()), startNode(t, r, fastConfig())
	const quota = 8 << 20
	secret, tok := newToken(t, a.st, []string{up}, func(tk *store.Token) { tk.QuotaBytes = quota })
	for _, n := range []*node{a, b} {
		c := mustDial(t, n.addr, secret)
		for range 16 {
			echo(t, c, 64<<10) // 1 MiB each way
		}
	}
	// The pools lie idle now: they go back, so the whole rest is free.
	eventually(t, 10*time.Second, "idle slices given back", func() bool {
		l, err := a.st.LeaseQuota(ctxT(t), tok.ID, "observer", time.Now(), quota, 0, 0)
		return err == nil && l.Used == 4<<20 && l.Free == quota-4<<20
	})
}

// A dead gateway's slice stops counting once its heartbeat runs out: the
// other gateway can lease it.
func TestQuotaDeadGatewaySliceFreed(t *testing.T) {
	r := startRedis(t)
	st := openStore(t, r)
	b := startNode(t, r, fastConfig())
	const quota = 1 << 20
	_, tok := newToken(t, st, []string{"127.0.0.1:1"}, func(tk *store.Token) { tk.QuotaBytes = quota })
	dead := "dead-" + store.NewID()
	if err := st.Heartbeat(ctxT(t), store.Gateway{ID: dead}, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if l, err := st.LeaseQuota(ctxT(t), tok.ID, dead, time.Now(), quota, 0, quota); err != nil || l.Held != quota {
		t.Fatalf("dead-to-be gateway's lease: %+v, %v", l, err)
	}
	acc := b.auth.account(newEntry(&tok), time.Now().UnixNano())
	if got := acc.TakeCredit(1000); got != 0 {
		t.Fatalf("took %d while another gateway holds the whole quota", got)
	}
	eventually(t, 10*time.Second, "the dead gateway's slice leased", func() bool {
		return acc.TakeCredit(1000) == 1000
	})
}

// With the store away, sessions spend the slice in hand and then relay
// without credit, as before quotas held; once the store is back they lease
// slices again.
func TestQuotaStoreDownFallsBack(t *testing.T) {
	r := startRedis(t)
	up := source(t)
	n := startNode(t, r, fastConfig())
	const quota = 1 << 30
	secret, _ := newToken(t, n.st, []string{up}, func(tk *store.Token) { tk.QuotaBytes = quota })
	c := mustDial(t, n.addr, secret)
	var total atomic.Int64
	go func() {
		// About 64 MB/s at most, so the quota lasts the test.
		b := make([]byte, 64<<10)
		c.SetReadDeadline(time.Now().Add(time.Minute))
		for {
			k, err := c.Read(b)
			total.Add(int64(k))
			if err != nil {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	eventually(t, 10*time.Second, "a leased download", func() bool {
		return total.Load() > 1<<20 && n.auth.Stats().QuotaLeases > 0
	})
	n.st.cut.Store(true)
	from := total.Load()
	// Far more than a slice (about 3 MiB here) and the credit sessions hold.
	eventually(t, 15*time.Second, "relaying past the slice with the store away", func() bool {
		return total.Load() > from+4*sliceFor(quota)
	})
	n.st.cut.Store(false)
	leases := n.st.n("LeaseQuota")
	eventually(t, 15*time.Second, "leasing again with the store back", func() bool {
		return n.st.n("LeaseQuota") > leases+1 && !n.auth.Stats().StoreDown
	})
	was := total.Load()
	eventually(t, 10*time.Second, "the download going on", func() bool { return total.Load() > was+1<<20 })
}

// The credit a session takes comes from the account's pool; without a
// quota it is unlimited, as it is while the store is down.
func TestAccountCreditRules(t *testing.T) {
	a := New(nil, Config{Logger: quiet})
	c := &account{a: a, id: "t"}
	if got := c.TakeCredit(100); got < 1<<62 {
		t.Fatalf("no quota: took %d, want unlimited", got)
	}
	c.quota.Store(10 << 20)
	c.credit.pool.Store(1000)
	if got := c.TakeCredit(0); got != 1000 {
		t.Fatalf("peek = %d, want 1000", got)
	}
	if got := c.TakeCredit(600); got != 600 {
		t.Fatalf("took %d, want 600", got)
	}
	if got := c.TakeCredit(600); got != 400 {
		t.Fatalf("took %d, want the 400 left", got)
	}
	if got := c.TakeCredit(600); got != 0 {
		t.Fatalf("took %d from an empty pool", got)
	}
	c.ReturnCredit(-50) // a debt
	c.ReturnCredit(70)
	if got := c.credit.pool.Load(); got != 20 {
		t.Fatalf("pool = %d after a debt and a return, want 20", got)
	}
	a.storeDown.Store(true)
	if got := c.TakeCredit(100); got != 20 {
		t.Fatalf("store down: took %d, want the 20 in hand first", got)
	}
	if got := c.TakeCredit(100); got < 1<<62 {
		t.Fatalf("store down, slice spent: took %d, want unlimited (the fallback)", got)
	}
	for _, tc := range []struct{ quota, slice, bound int64 }{
		{1 << 20, (1<<20 + 10485) / 4, 1<<20 + 10485},
		{8 << 20, (1<<20 + 83886) / 4, 1<<20 + 83886},
		{1 << 40, 16 << 20, 1<<20 + 10995116277},
	} {
		if s, o := sliceFor(tc.quota), overshoot(tc.quota); s != tc.slice || o != tc.bound {
			t.Errorf("quota %d: slice %d, bound %d; want %d, %d", tc.quota, s, o, tc.slice, tc.bound)
		}
	}
}
