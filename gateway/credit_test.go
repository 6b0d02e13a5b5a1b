package gateway

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/httvps/httvps/internal/testpeer"
)

// creditAccount is a testAccount with a quota: it grants credit out of a
// pool the test fills, and wakes waiting sessions when it does.
type creditAccount struct {
	testAccount
	mu      sync.Mutex
	pool    int64                 // guarded by mu
	waiters map[CreditWaiter]bool // guarded by mu
	waits   atomic.Int64          // WaitCredit calls that added a waiter
}

func (a *creditAccount) TakeCredit(want int64) int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	g := min(want, a.pool)
	if want == 0 {
		return a.pool
	}
	a.pool -= g
	return g
}

func (a *creditAccount) ReturnCredit(n int64) {
	a.mu.Lock()
	a.pool += n
	a.mu.Unlock()
}

func (a *creditAccount) WaitCredit(w CreditWaiter) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.waiters == nil {
		a.waiters = make(map[CreditWaiter]bool)
	}
	if !a.waiters[w] {
		a.waiters[w] = true
		a.waits.Add(1)
	}
}

// grant adds n to the pool and wakes the waiters.
func (a *creditAccount) grant(n int64) {
	a.mu.Lock()
	a.pool += n
	w := a.waiters
	a.waiters = nil
	a.mu.Unlock()
	for s := range w {
		s.CreditReady()
	}
}

func (a *creditAccount) poolLeft() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pool
}

type creditAuth struct {
	route Route
	acct  *creditAccount
}

func (a *creditAuth) Authenticate(secret []byte, _ PathKind) (Route, Reject, bool) {
	if string(secret) != "acct" {
		return Route{}, RejectSecret, false
	}
	a.acct.held.Add(1)
	r := a.route
	r.Account = a.acct
	return r, 0, true
}

// readPayload reads server frames until total payload bytes reached want
// (failing past it), within 10 s.
func readPayload(t *testing.T, c net.Conn, have *int64, want int64) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for *have < want {
		b, err := wsutil.ReadServerBinary(c)
		if err != nil {
			t.Fatalf("after %d of %d bytes: %v", *have, want, err)
		}
		*have += int64(len(b))
	}
	if *have != want {
		t.Fatalf("got %d bytes, want exactly %d", *have, want)
	}
}

// quiet asserts that nothing more arrives for a while: a session out of
// credit relays nothing (a broken gate would relay megabytes meanwhile).
func quiet(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	b, err := wsutil.ReadServerBinary(c)
	if err == nil {
		t.Fatalf("%d more bytes arrived out of credit", len(b))
	}
	if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("read out of credit: %v", err)
	}
}

// TestCreditHoldsDownload: an upstream that sends without end reaches the
// client exactly as far as the account grants credit, resumes when it
// grants more, and the session ends with close 1008 when the account is
// closed (the quota used up); the credit granted is all used or returned.
func TestCreditHoldsDownload(t *testing.T) {
	up := testpeer.ListenTCP(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(time.Minute))
		io.Copy(c, testpeer.PseudoRandom(1<<30, 1))
	})
	acct := &creditAccount{testAccount: testAccount{key: "tok-q"}, pool: 100_000}
	g := startGateway(t, up, func(c *Config) { c.Auth = &creditAuth{route: Route{Upstream: up}, acct: acct} })
	c := dialWS(t, g, "/acct/tcp")
	defer c.Close()
	var got int64
	readPayload(t, c, &got, 100_000)
	quiet(t, c)
	if acct.waits.Load() == 0 {
		t.Fatal("the session never waited for credit")
	}
	acct.grant(300_000)
	readPayload(t, c, &got, 400_000)
	quiet(t, c)
	g.CloseAccount("tok-q")
	if code := readClose(t, c); code != ws.StatusPolicyViolation {
		t.Fatalf("close %d, want 1008", code)
	}
	ws.WriteFrame(c, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))))
	waitFor(t, "session released", func() bool { return acct.released.Load() == 1 })
	if d := acct.down.Load(); d != 400_000 {
		t.Fatalf("usage down = %d, want 400000", d)
	}
	if p := acct.poolLeft(); p != 0 {
		t.Fatalf("pool after the session = %d, want 0 (all granted credit used)", p)
	}
}

// TestCreditHoldsUpload: client bytes reach the upstream exactly as far as
// the credit goes; unused credit goes back to the account at the end.
func TestCreditHoldsUpload(t *testing.T) {
	var sunk atomic.Int64
	up := testpeer.ListenTCP(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(time.Minute))
		b := make([]byte, 64<<10)
		for {
			n, err := c.Read(b)
			sunk.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	acct := &creditAccount{testAccount: testAccount{key: "tok-u"}, pool: 70_000}
	g := startGateway(t, up, func(c *Config) { c.Auth = &creditAuth{route: Route{Upstream: up}, acct: acct} })
	c := dialWS(t, g, "/acct/tcp")
	defer c.Close()
	go func() {
		msg := make([]byte, 10_000)
		for range 50 {
			if wsutil.WriteClientBinary(c, msg) != nil {
				return
			}
		}
	}()
	waitFor(t, "70000 bytes upstream", func() bool { return sunk.Load() >= 70_000 })
	time.Sleep(300 * time.Millisecond) // a broken gate would relay more meanwhile
	if n := sunk.Load(); n != 70_000 {
		t.Fatalf("upstream got %d bytes, want exactly the credit 70000", n)
	}
	acct.grant(25_000)
	waitFor(t, "95000 bytes upstream", func() bool { return sunk.Load() >= 95_000 })
	time.Sleep(300 * time.Millisecond)
	if n := sunk.Load(); n != 95_000 {
		t.Fatalf("upstream got %d bytes, want exactly 95000", n)
	}
	// More credit than the client sends: the rest comes back at the end.
	acct.grant(1 << 20)
	waitFor(t, "all 500000 bytes upstream", func() bool { return sunk.Load() == 500_000 })
	c.Close()
	waitFor(t, "session released", func() bool { return acct.released.Load() == 1 })
	if p, used := acct.poolLeft(), acct.up.Load(); used != 500_000 || p != 70_000+25_000+1<<20-500_000 {
		t.Fatalf("usage up %d, pool left %d: granted credit neither used nor returned", used, p)
	}
}
