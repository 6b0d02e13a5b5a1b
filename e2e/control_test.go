package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"gopkg.in/yaml.v3"

	"github.com/httvps/httvps/internal/testpeer"
)

// revokeWithin is how fast a revocation through the API must close live
// sessions on every gateway (docs/02: "within a second").
const revokeWithin = time.Second

// outlineError fetches /v1/outline/<token> and returns the message of its
// YAML error form ("" for a working key).
func (p *ctlPlane) outlineError(t *testing.T, token string) string {
	t.Helper()
	r, err := p.do("GET", "/v1/outline/"+token, "", nil)
	if err != nil || r.status != http.StatusOK {
		t.Fatalf("GET /v1/outline/<token>: %v %v", r, err)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/yaml") {
		t.Fatalf("outline key Content-Type %q", ct)
	}
	var doc struct {
		Transport map[string]any `yaml:"transport"`
		Error     *struct {
			Message string `yaml:"message"`
		} `yaml:"error"`
	}
	if err := yaml.Unmarshal(r.body, &doc); err != nil {
		t.Fatalf("outline key YAML: %v\n%s", err, r.body)
	}
	if doc.Error == nil {
		if doc.Transport == nil {
			t.Fatalf("outline key without transport or error:\n%s", r.body)
		}
		return ""
	}
	return doc.Error.Message
}

// openLive opens one session per gateway to the echo upstream and checks a
// hash-checked echo through each.
func (f *ctlFleet) openLive(t *testing.T, tok ctlToken, n int64) map[*ctlGateway]*testpeer.SSConn {
	t.Helper()
	live := map[*ctlGateway]*testpeer.SSConn{}
	for i, g := range []*ctlGateway{f.a, f.b} {
		sc, err := g.ss(tok, f.echo)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sc.Close() })
		if err := ctlEcho(sc, n, uint64(100+i)); err != nil {
			t.Fatalf("gateway %s: %v", g.name, err)
		}
		live[g] = sc
	}
	return live
}

// revokeAndWatch revokes tok through the API and checks that every live
// session is closed with 1008 within revokeWithin of the request.
func (f *ctlFleet) revokeAndWatch(t *testing.T, tok ctlToken, live map[*ctlGateway]*testpeer.SSConn) {
	t.Helper()
	watch := map[*ctlGateway]<-chan ctlClosed{}
	for g, sc := range live {
		watch[g] = watchClose(sc, 10*time.Second, nil)
	}
	start := time.Now()
	f.ctl.admin("DELETE", "/v1/tokens/"+tok.ID, nil, http.StatusNoContent, nil)
	answered := time.Since(start)
	for g, ch := range watch {
		c := <-ch
		took := c.at.Sub(start)
		t.Logf("gateway %s: close %d %v after DELETE was sent (API answered in %v)", g.name, c.code, took.Round(time.Millisecond), answered.Round(time.Millisecond))
		if c.code != ws.StatusPolicyViolation {
			t.Errorf("gateway %s: session ended with close %d (%v), want 1008", g.name, c.code, c.err)
		}
		if took > revokeWithin {
			t.Errorf("gateway %s: session closed %v after the revocation, want ≤ %v", g.name, took, revokeWithin)
		}
	}
}

// Revoking through the admin API closes the token's live sessions on both
// gateways within a second; new sessions get the decoy, the Outline key
// says revoked and the client API refuses the token.
func TestControlRevokeClosesSessionsOnBothGateways(t *testing.T) {
	f := startCtlFleet(t, 2)
	f.staticPair(t)
	tok := f.ctl.issue(map[string]any{"label": "revoke"})
	if len(tok.Assignments) != 2 || len(tok.Gateways) != 2 {
		t.Fatalf("token: %d assignments, gateways %v; want 2 and 2", len(tok.Assignments), tok.Gateways)
	}
	if msg := f.ctl.outlineError(t, tok.Token); msg != "" {
		t.Fatalf("fresh key: Outline error %q", msg)
	}
	for i, g := range []*ctlGateway{f.a, f.b} {
		if err := g.fetch(tok, f.origin, 1<<20+13, uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	live := f.openLive(t, tok, 256<<10)
	ctlEventually(t, 5*time.Second, "two live sessions in the API", func() bool {
		v := f.ctl.token(tok.ID)
		return v.Sessions != nil && *v.Sessions == 2
	})

	f.revokeAndWatch(t, tok, live)

	for _, g := range []*ctlGateway{f.a, f.b} {
		if err := g.decoy(tok.Token); err != nil {
			t.Error(err)
		}
	}
	if v := f.ctl.token(tok.ID); v.Status != "revoked" {
		t.Errorf("status %q after revocation", v.Status)
	}
	if msg := f.ctl.outlineError(t, tok.Token); msg != "This access key has been revoked." {
		t.Errorf("Outline key after revocation: %q", msg)
	}
	r, err := f.ctl.do("GET", "/v1/client/config", tok.Token, nil)
	if err != nil || r.status != http.StatusNotFound || r.header.Get("Server") != "nginx" {
		t.Errorf("client config of a revoked token: %v %v, want the decoy", r, err)
	}
}

// pacedSource is an upstream that sends PseudoRandom(size, seed) at rate
// bytes per second from the moment a connection arrives. Pacing at the
// source keeps every buffer on the way nearly empty, so what the gateway
// has counted and what the client has read stay within a few KiB.
func pacedSource(t *testing.T, size int64, seed uint64, rate int64) string {
	return testpeer.ListenTCP(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(time.Minute))
		src := testpeer.PseudoRandom(size, seed)
		buf := make([]byte, 16<<10)
		start := time.Now()
		var sent int64
		for sent < size {
			n, _ := io.ReadFull(src, buf[:min(int64(len(buf)), size-sent)])
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
			sent += int64(n)
			if ahead := time.Duration(float64(sent)/float64(rate)*float64(time.Second)) - time.Since(start); ahead > 0 {
				time.Sleep(ahead)
			}
		}
	})
}

// A download larger than the token's quota is cut with close 1008 where
// the usage reaches the quota (docs/04, "Quotas that hold": the gateway
// relays only out of its slice of the quota, then closes within a second);
// the API then reports usage at the quota, new sessions get the decoy on
// both gateways and the Outline key says so.
func TestControlQuotaCutsDownload(t *testing.T) {
	f := startCtlFleet(t, 2)
	f.staticPair(t)
	const (
		quota  = 2 << 20
		size   = 64 << 20
		rate   = 4 << 20
		seed   = 3
		before = 200 << 10 // fetched first, through the other gateway
	)
	tok := f.ctl.issue(map[string]any{"label": "quota", "quota_bytes": quota})
	if err := f.a.fetch(tok, f.origin, before, 7); err != nil {
		t.Fatal(err)
	}
	src := pacedSource(t, size, seed, rate)
	sc, err := f.b.ss(tok, src)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	// What arrives before the cut must be the source's bytes.
	want := testpeer.PseudoRandom(size, seed)
	var lastAt atomic.Int64
	c := <-watchClose(sc, 30*time.Second, func(b []byte, read int64) error {
		lastAt.Store(time.Now().UnixNano())
		w := make([]byte, len(b))
		if _, err := io.ReadFull(want, w); err != nil || !bytes.Equal(w, b) {
			return fmt.Errorf("download differs from the source before byte %d", read)
		}
		return nil
	})
	after := c.at.Sub(time.Unix(0, lastAt.Load()))
	t.Logf("download cut after %d bytes (quota %d, %d bytes fetched before), %v after its last byte; close %d",
		c.read, quota, before, after.Round(time.Millisecond), c.code)
	if c.code != ws.StatusPolicyViolation {
		t.Errorf("close %d (%v), want 1008", c.code, c.err)
	}
	// The fetch before and the Shadowsocks framing count too: the
	// plaintext read ends a little short of quota-before, never past it.
	if c.read > quota-before || c.read < quota-before-64<<10 {
		t.Errorf("download cut after %d bytes, want just under %d", c.read, quota-before)
	}
	if after > time.Second {
		t.Errorf("cut %v after the last byte, want ≤ 1s", after)
	}

	ctlEventually(t, 5*time.Second, "usage at the quota in the API", func() bool {
		v := f.ctl.token(tok.ID)
		return v.Usage.Total >= quota && v.Status == "over_quota"
	})
	if u := f.ctl.token(tok.ID).Usage; u.Total > quotaBound(quota) {
		t.Errorf("usage %+v, over the bound %d", u, quotaBound(quota))
	}
	t.Logf("usage reported: %+v", f.ctl.token(tok.ID).Usage)
	for _, g := range []*ctlGateway{f.a, f.b} {
		ctlEventually(t, 3*time.Second, "the decoy on gateway "+g.name, func() bool { return g.decoy(tok.Token) == nil })
	}
	if msg := f.ctl.outlineError(t, tok.Token); msg != "This access key has used its data limit." {
		t.Errorf("Outline key over quota: %q", msg)
	}
	r, err := f.ctl.do("GET", "/v1/client/config", tok.Token, nil)
	if code, _ := r.errorCode(); err != nil || r.status != http.StatusForbidden || code != "quota_exceeded" {
		t.Errorf("client config over quota: %v %v", r, err)
	}
}

// Two static members hold the token's key (replicas 2). The member the
// gateways try first is killed: new sessions through both gateways land on
// the replica, with the same key, and the pool marks the dead member down.
func TestControlMemberKilledFailover(t *testing.T) {
	f := startCtlFleet(t, 2)
	members, addrs, procs := f.staticPair(t)
	tok := f.ctl.issue(map[string]any{"label": "failover"})
	if len(tok.Assignments) != 2 {
		t.Fatalf("assignments %+v, want both members", tok.Assignments)
	}
	for i, g := range []*ctlGateway{f.a, f.b} {
		if err := g.fetch(tok, f.origin, 512<<10, uint64(10+i)); err != nil {
			t.Fatal(err)
		}
	}
	first := slices.Index(addrs[:], tok.Assignments[0].Upstream)
	if first < 0 || tok.Assignments[0].MemberID != members[first].ID {
		t.Fatalf("first assignment %+v is none of %v", tok.Assignments[0], addrs)
	}
	syscall.Kill(procs[first].Cmd.Process.Pid, syscall.SIGKILL)
	<-procs[first].Exited()

	// Before any health check has noticed: the gateways' dial fails over.
	for round := range 2 {
		for i, g := range []*ctlGateway{f.a, f.b} {
			if err := g.fetch(tok, f.origin, 1<<20, uint64(20+2*round+i)); err != nil {
				t.Fatalf("after the kill, round %d: %v", round, err)
			}
		}
		if round == 0 {
			took := ctlEventually(t, 4*ctlHealthEvery, "the killed member marked down", func() bool {
				return !f.ctl.member(members[first].ID).Health.Up
			})
			t.Logf("killed member marked down %v after the first failover", took.Round(time.Millisecond))
			if m := f.ctl.member(members[1-first].ID); !m.Health.Up {
				t.Fatalf("replica down: %s", m.Health.LastError)
			}
		}
	}
}

// Redis is killed and restarted on the same port (append-only file, so the
// data survives). Established sessions keep relaying, the control API
// answers 503 JSON meanwhile and recovers after, the usage counted during
// the outage reaches the store, and revocation closes sessions again.
func TestControlRedisRestart(t *testing.T) {
	f := startCtlFleet(t, 2)
	f.staticPair(t)
	tok := f.ctl.issue(map[string]any{"label": "restart"})
	live := f.openLive(t, tok, 64<<10)
	var before int64
	ctlEventually(t, 5*time.Second, "the first usage flushed", func() bool {
		before = f.ctl.token(tok.ID).Usage.Total
		return before >= 2*2*(64<<10)
	})

	f.redis.Kill()
	for _, q := range []struct{ method, path, bearer string }{
		{"GET", "/v1/tokens/" + tok.ID, f.ctl.adminKey},
		{"GET", "/v1/tokens", f.ctl.adminKey},
		{"POST", "/v1/tokens", f.ctl.adminKey},
		{"GET", "/v1/pool/members", f.ctl.adminKey},
		{"DELETE", "/v1/tokens/" + tok.ID, f.ctl.adminKey},
		{"GET", "/readyz", f.ctl.adminKey},
	} {
		var body any
		if q.method == "POST" {
			body = map[string]any{"label": "during-outage"}
		}
		start := time.Now()
		r, err := f.ctl.do(q.method, q.path, q.bearer, body)
		took := time.Since(start)
		code, cerr := r.errorCode()
		if err != nil || r.status != http.StatusServiceUnavailable || cerr != nil || code != "unavailable" {
			t.Errorf("%s %s with Redis down: %v %v %v; want 503 unavailable", q.method, q.path, r, err, cerr)
		}
		if took > 5*time.Second {
			t.Errorf("%s %s with Redis down took %v", q.method, q.path, took)
		}
	}
	// The client routes' callers have not proven they hold a token: they
	// get the decoy, as from a gateway (the operator gets the log line).
	for _, q := range []struct{ path, bearer string }{{"/v1/client/config", tok.Token}, {"/v1/outline/" + tok.Token, ""}} {
		if r, err := f.ctl.do("GET", q.path, q.bearer, nil); err != nil || r.status != http.StatusNotFound || r.header.Get("Server") != "nginx" {
			t.Errorf("GET %s with Redis down: %v %v; want the decoy", q.path, r, err)
		}
	}
	if r, err := f.ctl.do("GET", "/healthz", f.ctl.adminKey, nil); err != nil || r.status != http.StatusOK {
		t.Errorf("/healthz with Redis down: %v %v", r, err)
	}
	const outageEcho = 512 << 10
	for g, sc := range live {
		for i := range 2 {
			if err := ctlEcho(sc, outageEcho, uint64(200+i)); err != nil {
				t.Fatalf("gateway %s: live session during the outage: %v", g.name, err)
			}
		}
	}
	// A token the gateway has cached still opens sessions.
	if err := f.a.fetch(tok, f.origin, 256<<10, 5); err != nil {
		t.Errorf("cached token during the outage: %v", err)
	}

	if err := f.redis.Start(); err != nil {
		t.Fatal(err)
	}
	took := ctlEventually(t, 10*time.Second, "the API to answer again", func() bool {
		r, err := f.ctl.do("GET", "/v1/tokens/"+tok.ID, f.ctl.adminKey, nil)
		return err == nil && r.status == http.StatusOK
	})
	t.Logf("API answered %v after the restart", took.Round(time.Millisecond))
	if r, err := f.ctl.do("GET", "/readyz", f.ctl.adminKey, nil); err != nil || r.status != http.StatusOK {
		t.Errorf("/readyz after the restart: %v %v", r, err)
	}
	// Echoed bytes count both ways, ciphertext is larger than plaintext.
	const outageBytes = 2 * 2 * 2 * outageEcho
	ctlEventually(t, 10*time.Second, "the outage's usage flushed", func() bool {
		return f.ctl.token(tok.ID).Usage.Total >= before+outageBytes
	})
	t.Logf("usage %d before the outage, %d after (≥ %d relayed meanwhile)", before, f.ctl.token(tok.ID).Usage.Total, outageBytes)
	ctlEventually(t, 10*time.Second, "both gateways subscribed again", func() bool { return f.redis.subscribers() == 2 })
	for g, sc := range live {
		if err := ctlEcho(sc, 64<<10, 300); err != nil {
			t.Fatalf("gateway %s: live session after the restart: %v", g.name, err)
		}
	}
	// A new token works end to end on the restarted Redis.
	tok2 := f.ctl.issue(map[string]any{"label": "after-restart"})
	if err := f.b.fetch(tok2, f.origin, 256<<10, 6); err != nil {
		t.Errorf("token issued after the restart: %v", err)
	}

	f.revokeAndWatch(t, tok, live)
	for _, g := range []*ctlGateway{f.a, f.b} {
		if err := g.decoy(tok.Token); err != nil {
			t.Error(err)
		}
	}
}

// readRawResponse reads one HTTP answer from a raw connection.
func readRawResponse(c net.Conn) (ctlResp, error) {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return ctlResp{}, err
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, err = bufio.NewReader(resp.Body).WriteTo(&b)
	return ctlResp{status: resp.StatusCode, header: resp.Header, body: []byte(b.String())}, err
}
