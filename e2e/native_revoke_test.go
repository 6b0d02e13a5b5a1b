package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/httvps/httvps/internal/testpeer"
)

// Revoke-to-closed bounds for streams through `httvps connect`. A held
// connection must close within the gateways' own bound (revokeWithin, 1 s:
// pub/sub, then the tunnel's close 1008) plus slack for a busy 2-core
// machine; curl, rate-limited, notices the end only after reading what
// its socket already holds, so it gets more.
const (
	revokeClosedWithin     = revokeWithin + 500*time.Millisecond
	revokeCurlClosedWithin = 3 * time.Second
)

// TestNativeRevokeClosesStreams: a token revoked through the admin API
// while streams are open through `httvps connect` (held echo connections
// and a curl download, all on native tunnels to a store-backed gateway):
// every stream closes, and connect logs the control plane's reason in one
// line without being asked by a new connection.
func TestNativeRevokeClosesStreams(t *testing.T) {
	needNativePeers(t, "curl")
	f := startCtlFleet(t, 1)
	password := fmt.Sprintf("native-revoke-%d", time.Now().UnixNano())
	ss, _ := ctlSSServer(t, password)
	f.ctl.addMember(staticMember("ss", ss, password))
	tok := f.ctl.issue(map[string]any{"label": "native-revoke"})
	c := startNativeConnect(t, nativeKey{token: tok.Token, cipher: tok.Cipher, secret: tok.Secret,
		gateways: []string{f.b.addr}, control: f.ctl.url})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Open streams: echo connections checked once, then held...
	type closed struct {
		what  string
		at    time.Time
		err   error
		bound time.Duration
	}
	ends := make(chan closed, 8)
	const echoes = 4
	for i := range echoes {
		conn, err := testpeer.SOCKS5Dial(ctx, c.listen, f.echo)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		msg := randomBytes(1000 + i)
		conn.SetDeadline(time.Now().Add(waitFor))
		if _, err := conn.Write(msg); err != nil {
			t.Fatal(err)
		}
		back := make([]byte, len(msg))
		if _, err := io.ReadFull(conn, back); err != nil || sum(back) != sum(msg) {
			t.Fatalf("echo %d before the revocation: %v", i, err)
		}
		conn.SetDeadline(time.Now().Add(waitFor))
		go func() {
			n, err := conn.Read(back)
			ends <- closed{fmt.Sprintf("echo %d", i), time.Now(), fmt.Errorf("read %d bytes: %w", n, err), revokeClosedWithin}
		}()
	}
	// ...and a download far from done (64 MiB at 2 MB/s).
	dl := startProgressCurl(ctx, socksProxy(c), f.origin.URL("/bytes/67108864?seed=3"), 64<<20, 3, 256<<10, "--limit-rate", "2M")
	select {
	case <-dl.reached:
	case err := <-dl.done:
		t.Fatalf("the download ended early: %v", err)
	}
	go func() {
		err := <-dl.done
		ends <- closed{"curl download", time.Now(), err, revokeCurlClosedWithin}
	}()

	start := time.Now()
	f.ctl.admin("DELETE", "/v1/tokens/"+tok.ID, nil, http.StatusNoContent, nil)
	answered := time.Since(start)
	var last time.Duration
	for range echoes + 1 {
		select {
		case e := <-ends:
			took := e.at.Sub(start)
			last = max(last, took)
			if e.err == nil {
				t.Errorf("%s: completed after the revocation; want it cut", e.what)
			}
			if ne, ok := errors.AsType[net.Error](e.err); ok && ne.Timeout() {
				t.Errorf("%s: still open after %v", e.what, waitFor)
			}
			t.Logf("%s closed %v after the revocation (%v)", e.what, took.Round(time.Millisecond), e.err)
			if took > e.bound {
				t.Errorf("%s closed %v after the revocation, want ≤ %v", e.what, took, e.bound)
			}
		case <-time.After(waitFor):
			t.Fatalf("streams still open %v after the revocation", waitFor)
		}
	}
	t.Logf("revoke-to-closed: every stream closed %v after DELETE was sent (API answered in %v)", last.Round(time.Millisecond), answered.Round(time.Millisecond))

	// connect asks the control plane why its reconnect is refused and
	// says so once.
	const reason = "every gateway refused the connection: the server does not accept the token: it is unknown, revoked, expired or over its quota (404, as for any unknown request)"
	deadline := time.Now().Add(waitFor)
	for !strings.Contains(c.Output(), reason) {
		if time.Now().After(deadline) {
			t.Fatalf("no refusal reason in connect's log:\n%s", c.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	lines := 0
	for _, l := range strings.Split(c.Output(), "\n") {
		if strings.Contains(l, "every gateway refused") {
			lines++
		}
	}
	if lines != 1 {
		t.Errorf("the refusal logged in %d lines, want 1:\n%s", lines, c.Output())
	}
	if strings.Contains(c.Output(), tok.Token) || strings.Contains(c.Output(), tok.Secret) {
		t.Errorf("connect's log holds a secret")
	}
}
