package gateway

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/httvps/httvps/internal/testpeer"
)

type testAccount struct {
	key            string
	up, down       atomic.Int64
	released, held atomic.Int64
}

func (a *testAccount) Key() string             { return a.key }
func (a *testAccount) AddUsage(up, down int64) { a.up.Add(up); a.down.Add(down) }
func (a *testAccount) Release()                { a.released.Add(1); a.held.Add(-1) }

// hold counts a session admitted for the account.
func (a *testAccount) hold() { a.held.Add(1) }

// heldAccount is a test account that counts its admitted sessions
// (testAccount, and creditAccount, which embeds it).
type heldAccount interface {
	Account
	hold()
}

// accountAuth admits every secret "acct" to its route and charges acct.
type accountAuth struct {
	route Route
	acct  heldAccount
}

func (a *accountAuth) Authenticate(secret []byte, _ PathKind, _ Client) (Route, Reject, bool) {
	if string(secret) != "acct" {
		return Route{}, RejectSecret, false
	}
	a.acct.hold()
	r := a.route
	r.Account = a.acct
	return r, 0, true
}

func TestAccountUsageRevokeAndFailover(t *testing.T) {
	acct := &testAccount{key: "tok-1"}
	// The primary is dead: the session must land on the fallback.
	auth := &accountAuth{route: Route{Upstream: testpeer.DeadAddr(t), Fallbacks: []string{testpeer.EchoServer(t)}}, acct: acct}
	g := startGateway(t, "127.0.0.1:1", func(c *Config) { c.Auth = auth })
	c := dialWS(t, g, "/acct/tcp")
	defer c.Close()
	msg := make([]byte, 1000)
	if err := wsutil.WriteClientBinary(c, msg); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := wsutil.ReadServerBinary(c)
	if err != nil || len(got) != len(msg) {
		t.Fatalf("echo via fallback: %d bytes, %v", len(got), err)
	}
	// Usage arrives in batches from the sweep.
	deadline := time.Now().Add(15 * time.Second)
	for (acct.up.Load() != 1000 || acct.down.Load() != 1000) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if acct.up.Load() != 1000 || acct.down.Load() != 1000 {
		t.Fatalf("usage up=%d down=%d, want 1000/1000", acct.up.Load(), acct.down.Load())
	}
	g.CloseAccount("other")
	g.CloseAccount("tok-1")
	if code := readClose(t, c); code != ws.StatusPolicyViolation {
		t.Fatalf("close %d, want 1008", code)
	}
	ws.WriteFrame(c, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))))
	for acct.released.Load() != 1 && time.Now().Before(deadline.Add(5*time.Second)) {
		time.Sleep(10 * time.Millisecond)
	}
	if acct.released.Load() != 1 || acct.held.Load() != 0 {
		t.Fatalf("released %d times, held %d", acct.released.Load(), acct.held.Load())
	}
}

// An admitted session whose upstreams are all dead gets the decoy and its
// slot back.
func TestAccountReleasedWhenDialFails(t *testing.T) {
	acct := &testAccount{key: "tok-2"}
	auth := &accountAuth{route: Route{Upstream: testpeer.DeadAddr(t)}, acct: acct}
	g := startGateway(t, "127.0.0.1:1", func(c *Config) { c.Auth = auth })
	if _, _, _, err := (ws.Dialer{Timeout: 3 * time.Second}).Dial(t.Context(), "ws://"+g.Addr().String()+"/acct/tcp"); err == nil {
		t.Fatal("upgrade succeeded without an upstream")
	}
	deadline := time.Now().Add(15 * time.Second)
	for acct.released.Load() != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if acct.released.Load() != 1 || acct.held.Load() != 0 {
		t.Fatalf("released %d, held %d", acct.released.Load(), acct.held.Load())
	}
}
