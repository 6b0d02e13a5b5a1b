package gateway

import (
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/httvps/httvps/codec/mux"
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

// creditMetrics records session ends and credit waits.
type creditMetrics struct {
	nopMetrics
	waits atomic.Int64
	mu    sync.Mutex
	ends  []End // guarded by mu
}

func (m *creditMetrics) CreditWait() { m.waits.Add(1) }
func (m *creditMetrics) SessionEnd(_ PathKind, e End) {
	m.mu.Lock()
	m.ends = append(m.ends, e)
	m.mu.Unlock()
}

func (m *creditMetrics) endsSeen() []End {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]End(nil), m.ends...)
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
// grants more, and the session ends with close 1008 when the quota is used
// up (counted as "quota"); the credit granted is all used or returned.
func TestCreditHoldsDownload(t *testing.T) {
	up := testpeer.ListenTCP(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(time.Minute))
		io.Copy(c, testpeer.PseudoRandom(1<<30, 1))
	})
	acct := &creditAccount{testAccount: testAccount{key: "tok-q"}, pool: 100_000}
	m := &creditMetrics{}
	g := startGateway(t, up, func(c *Config) {
		c.Auth = &accountAuth{route: Route{Upstream: up}, acct: acct}
		c.Metrics = m
	})
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
	if m.waits.Load() == 0 {
		t.Fatal("credit waits not counted")
	}
	g.CloseAccountQuota("tok-q")
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
	waitFor(t, "the session end counted", func() bool { return len(m.endsSeen()) == 1 })
	if e := m.endsSeen(); e[0] != EndQuota {
		t.Fatalf("session end %v, want quota", e[0])
	}
}

// TestCreditHoldsUpload: client bytes reach the upstream exactly as far as
// the credit goes; unused credit goes back to the account at the end. Over
// TLS a record carried over from the read before cannot be split: the
// upstream may get up to one record more, owed and paid from the next
// grant.
func TestCreditHoldsUpload(t *testing.T) {
	for _, withTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", withTLS), func(t *testing.T) { creditHoldsUpload(t, withTLS) })
	}
}

func creditHoldsUpload(t *testing.T, withTLS bool) {
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
	auth := func(c *Config) { c.Auth = &accountAuth{route: Route{Upstream: up}, acct: acct} }
	var c net.Conn
	slack := int64(0)
	if withTLS {
		g, pool := startTLSGateway(t, up, auth)
		c = dialWSS(t, g, pool, "/acct/tcp", 0)
		slack = maxTLSRecord
	} else {
		c = dialWS(t, startGateway(t, up, auth), "/acct/tcp")
	}
	defer c.Close()
	go func() {
		msg := make([]byte, 10_000)
		for range 50 {
			if wsutil.WriteClientBinary(c, msg) != nil {
				return
			}
		}
	}()
	settle := func(want int64) {
		t.Helper()
		waitFor(t, fmt.Sprintf("%d bytes upstream", want), func() bool { return sunk.Load() >= want })
		time.Sleep(300 * time.Millisecond) // a broken gate would relay more meanwhile
		if n := sunk.Load(); n < want || n > want+slack {
			t.Fatalf("upstream got %d bytes, want the credit %d (+ at most %d)", n, want, slack)
		}
	}
	settle(70_000)
	acct.grant(25_000)
	settle(95_000)
	// More credit than the client sends: the rest comes back at the end.
	acct.grant(1 << 20)
	waitFor(t, "all 500000 bytes upstream", func() bool { return sunk.Load() == 500_000 })
	c.Close()
	waitFor(t, "session released", func() bool { return acct.released.Load() == 1 })
	if p, used := acct.poolLeft(), acct.up.Load(); used != 500_000 || p != 70_000+25_000+1<<20-500_000 {
		t.Fatalf("usage up %d, pool left %d: granted credit neither used nor returned", used, p)
	}
}

// TestCreditAccounting walks the credit of one session's two directions
// through takes, charges, debts, borrowing and returns.
func TestCreditAccounting(t *testing.T) {
	type step struct {
		do        string // "take up/down", "charge up/down N", "peek down", "return"
		n         int
		ok        bool  // what credited / creditAtHand said
		up, down  int32 // the directions' credit after
		pool      int64 // the account's pool after
		waitsSeen int64
	}
	cases := []struct {
		name  string
		pool  int64
		steps []step
	}{
		{"takes a chunk, charges, a debt is covered by the next take", 300 << 10, []step{
			{do: "take down", ok: true, down: creditChunk, pool: 300<<10 - creditChunk},
			{do: "charge down", n: 100 << 10, ok: true, down: creditChunk - 100<<10, pool: 300<<10 - creditChunk},
			{do: "charge down", n: 30 << 10, ok: true, down: -2 << 10, pool: 300<<10 - creditChunk},
			{do: "take down", ok: true, down: creditChunk, pool: 300<<10 - 2*creditChunk - 2<<10},
		}},
		{"a short pool gives what it has", 10_000, []step{
			{do: "take up", ok: true, up: 10_000},
			{do: "charge up", n: 10_000, ok: true},
			{do: "peek down", ok: false, waitsSeen: 1},
			{do: "take up", ok: false, waitsSeen: 1},
		}},
		{"a direction out of credit borrows the other's", 50_000, []step{
			{do: "take up", ok: true, up: 50_000},
			{do: "peek down", ok: true, up: 50_000},
			{do: "take down", ok: true, down: 50_000},
			{do: "charge down", n: 50_000, ok: true},
			{do: "take down", ok: false, waitsSeen: 1},
		}},
		{"what is held or owed goes back", 200 << 10, []step{
			{do: "take up", ok: true, up: creditChunk, pool: 200<<10 - creditChunk},
			{do: "take down", ok: true, up: creditChunk, down: 200<<10 - creditChunk},
			{do: "charge down", n: 80 << 10, ok: true, up: creditChunk, down: -8 << 10},
			{do: "return", ok: true, pool: creditChunk - 8<<10},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			acct := &creditAccount{testAccount: testAccount{key: "k"}, pool: tc.pool}
			s := &session{acct: acct}
			for i, st := range tc.steps {
				var ok = true
				switch st.do {
				case "take up":
					ok = s.credited(&s.up)
				case "take down":
					ok = s.credited(&s.down)
				case "peek down":
					ok = s.creditAtHand(&s.down)
				case "charge up":
					s.up.charge(st.n)
				case "charge down":
					s.down.charge(st.n)
				case "return":
					s.returnCredit(acct)
				}
				if ok != st.ok || s.up.credit != st.up || s.down.credit != st.down || acct.poolLeft() != st.pool || acct.waits.Load() != st.waitsSeen {
					t.Fatalf("step %d (%s %d): ok %v, credit up %d down %d, pool %d, waits %d; want %v, %d, %d, %d, %d",
						i, st.do, st.n, ok, s.up.credit, s.down.credit, acct.poolLeft(), acct.waits.Load(),
						st.ok, st.up, st.down, st.pool, st.waitsSeen)
				}
			}
		})
	}
	t.Run("no quota: unlimited, never counted down", func(t *testing.T) {
		s := &session{acct: &testAccount{key: "k"}}
		if !s.credited(&s.down) || s.down.credit != creditUnlimited {
			t.Fatalf("credit %d, want unlimited", s.down.credit)
		}
		s.down.charge(1 << 30)
		if s.down.credit != creditUnlimited {
			t.Fatalf("unlimited credit counted down to %d", s.down.credit)
		}
	})
}

// TestCreditAllocs: charging and taking credit on the relay path allocate
// nothing, with a quota and without.
func TestCreditAllocs(t *testing.T) {
	for _, acct := range []Account{&creditAccount{testAccount: testAccount{key: "q"}, pool: 1 << 40}, &testAccount{key: "u"}} {
		s := &session{acct: acct}
		allocs := testing.AllocsPerRun(1000, func() {
			if !s.credited(&s.down) || !s.creditAtHand(&s.up) {
				t.Fatal("no credit")
			}
			s.down.charge(64 << 10)
			s.down.used = 0
		})
		if allocs != 0 {
			t.Errorf("%T: %v allocations per read", acct, allocs)
		}
	}
}

// TestCreditHoldsTunnel: the native tunnel's streams relay inside their
// session's credit: three streams from a member that sends without end
// get exactly the credit in all, resume when more is granted, and the
// tunnel ends with close 1008 at the quota.
func TestCreditHoldsTunnel(t *testing.T) {
	up := testpeer.ListenTCP(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(time.Minute))
		io.Copy(c, testpeer.PseudoRandom(1<<30, 2))
	})
	acct := &creditAccount{testAccount: testAccount{key: "tok-t"}, pool: 200_000}
	g := startGateway(t, up, func(c *Config) { c.Auth = &accountAuth{route: Route{Upstream: up}, acct: acct} })
	c := dialTunnel(t, g, "acct")
	var got atomic.Int64
	for range 3 {
		s := c.open(mux.KindTCP, nil)
		go func() {
			b := make([]byte, 32<<10)
			for {
				n, err := s.Read(b)
				got.Add(int64(n))
				if err != nil {
					return
				}
			}
		}()
	}
	settle := func(want int64) {
		t.Helper()
		waitFor(t, "the credit's bytes", func() bool { return got.Load() >= want })
		time.Sleep(300 * time.Millisecond) // a broken gate would relay more meanwhile
		if n := got.Load(); n != want {
			t.Fatalf("streams got %d bytes, want exactly the credit %d", n, want)
		}
	}
	settle(200_000)
	acct.grant(150_000)
	settle(350_000)
	g.CloseAccountQuota("tok-t")
	if code := c.waitClose(); code != ws.StatusPolicyViolation {
		t.Fatalf("close %d, want 1008", code)
	}
	waitFor(t, "the account's release", func() bool { return acct.released.Load() == 1 })
	if d, p := acct.down.Load(), acct.poolLeft(); d != 350_000 || p != 0 {
		t.Fatalf("usage down %d, pool left %d; want 350000 and 0", d, p)
	}
}

// TestCreditHoldsUDP: datagrams are charged too; a datagram that does not
// fit the credit goes through whole and is owed.
func TestCreditHoldsUDP(t *testing.T) {
	var got atomic.Int64
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		b := make([]byte, 65536)
		for {
			n, _, err := pc.ReadFrom(b)
			if err != nil {
				return
			}
			got.Add(int64(n))
		}
	}()
	up := pc.LocalAddr().String()
	acct := &creditAccount{testAccount: testAccount{key: "tok-d"}, pool: 10_050}
	g := startGateway(t, up, func(c *Config) { c.Auth = &accountAuth{route: Route{Upstream: up}, acct: acct} })
	c := dialWS(t, g, "/acct/udp")
	defer c.Close()
	go func() {
		msg := make([]byte, 100)
		for range 200 {
			if wsutil.WriteClientBinary(c, msg) != nil {
				return
			}
		}
	}()
	// 100 datagrams fit, the 101st is owed: 50 bytes of debt.
	waitFor(t, "the credit's datagrams", func() bool { return got.Load() >= 10_100 })
	time.Sleep(300 * time.Millisecond)
	if n := got.Load(); n != 10_100 {
		t.Fatalf("upstream got %d bytes of datagrams, want 10100", n)
	}
	acct.grant(1_050) // pays the debt, then 10 datagrams
	waitFor(t, "ten more datagrams", func() bool { return got.Load() >= 11_100 })
	time.Sleep(300 * time.Millisecond)
	if n := got.Load(); n != 11_100 {
		t.Fatalf("upstream got %d bytes of datagrams, want 11100", n)
	}
}
