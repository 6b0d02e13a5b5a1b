package client

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/httvps/httvps/control/api"
	"github.com/httvps/httvps/control/pool"
	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/store"
	"github.com/httvps/httvps/store/embedded"
)

// ctlPlane is a real control plane on loopback (plain HTTP): the API on
// the embedded store with the pool manager, one static ss-server member.
type ctlPlane struct {
	url, adminKey string
	st            store.Store
}

func startCtlPlane(t *testing.T, ss string) *ctlPlane {
	t.Helper()
	st, err := embedded.Open(filepath.Join(t.TempDir(), "control.db"))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	mgr := pool.New(st, pool.Config{Replicas: 1, HealthEvery: time.Hour, DialTimeout: time.Second, Logger: log})
	host, port, _ := net.SplitHostPort(ss)
	p, _ := strconv.Atoi(port)
	if _, err := mgr.AddMember(context.Background(), store.Member{Name: "ss", Backend: store.BackendStatic, Host: host,
		Static: &store.StaticConfig{Port: p, Cipher: "chacha20-ietf-poly1305", Password: testPassword}}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &ctlPlane{url: "http://" + ln.Addr().String(), adminKey: strings.Repeat("a", 40), st: st}
	srv, err := api.New(api.Config{Store: st, Pool: mgr, AdminKey: c.adminKey, PublicURL: c.url, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(ln) })
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		wg.Wait()
		st.Close()
	})
	return c
}

func (c *ctlPlane) admin(t *testing.T, method, path, body string) []byte {
	t.Helper()
	req, _ := http.NewRequest(method, c.url+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+c.adminKey)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return b
}

func (c *ctlPlane) heartbeat(t *testing.T, id, publicURL string, sessions int) {
	t.Helper()
	if err := c.st.Heartbeat(context.Background(), store.Gateway{ID: id, PublicURL: publicURL, Sessions: sessions, Started: time.Now()}, time.Hour); err != nil {
		t.Fatal(err)
	}
}

// A session whose key names a control plane follows it: gateways the
// config reorders are tried in the new order, and a revoked token's
// refusal is explained by the control plane's answer.
func TestSessionFollowsControlPlane(t *testing.T) {
	ss := testpeer.SSServer(t, testPassword, "chacha20-ietf-poly1305")
	ctl := startCtlPlane(t, ss)
	var tok struct{ ID, Token string }
	json.Unmarshal(ctl.admin(t, "POST", "/v1/tokens", `{"label":"s"}`), &tok)
	gwA, _ := startRealGateway(t, false, map[string]string{tok.Token: ss})
	gwB, _ := startRealGateway(t, false, map[string]string{tok.Token: ss})
	ctl.heartbeat(t, "a", "ws://"+gwA, 0)
	ctl.heartbeat(t, "b", "ws://"+gwB, 5)

	ctx := testCtx(t)
	k, err := ResolveKey(ctx, ctl.url, ResolveOptions{Token: tok.Token})
	if err != nil {
		t.Fatal(err)
	}
	if len(k.Gateways) != 2 || k.Gateways[0].Addr != gwA || k.Gateways[1].Addr != gwB || k.Secret != testPassword {
		t.Fatalf("resolved key: %+v", k.Gateways)
	}
	s, err := NewSession(SessionConfig{Key: k, Transport: TransportOutline, Refresh: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln := serveSession(t, s)
	echo := testpeer.EchoServer(t)
	roundTrip := func() error {
		c, code := socksConnect(t, ln.Addr().String(), []byte{5, 1, 0}, connectReq(echo))
		defer c.Close()
		if code != 0 {
			t.Fatalf("socks reply %d", code)
		}
		c.Write([]byte("ping"))
		b := make([]byte, 4)
		_, err := io.ReadFull(c, b)
		if err == nil && !bytes.Equal(b, []byte("ping")) {
			t.Fatalf("echo %q", b)
		}
		return err
	}
	if err := roundTrip(); err != nil {
		t.Fatal(err)
	}
	if st := s.Status(); st.Gateway != gwA {
		t.Fatalf("first gateway in use %s, want %s", st.Gateway, gwA)
	}

	// B becomes the better gateway: after a refresh it is tried first.
	ctl.heartbeat(t, "a", "ws://"+gwA, 50)
	s.refresh(ctx)
	if g := s.Key().Gateways; len(g) != 2 || g[0].Addr != gwB {
		t.Fatalf("after refresh gateways %+v, want %s first", g, gwB)
	}
	if err := roundTrip(); err != nil {
		t.Fatal(err)
	}
	if st := s.Status(); st.Gateway != gwB {
		t.Fatalf("gateway in use after refresh %s, want %s", st.Gateway, gwB)
	}

	// Revoked: the control plane says so. (The static routes of these
	// gateways do not know revocation; the reason comes from the API.)
	ctl.admin(t, "DELETE", "/v1/tokens/"+tok.ID, "")
	if r := s.Explain(ctx); !strings.Contains(r, "the server does not accept the token: it is unknown, revoked, expired or over its quota (404, as for any unknown request)") {
		t.Fatalf("Explain after revoke: %q", r)
	}
	s.refresh(ctx)
	if st := s.Status(); !strings.Contains(st.Refusal, "404") {
		t.Fatalf("status after a refused refresh: %+v", st)
	}
	if _, err := ResolveKey(ctx, ctl.url, ResolveOptions{Token: tok.Token}); err == nil || !strings.Contains(err.Error(), "does not accept the token") {
		t.Fatalf("resolving with a revoked token: %v", err)
	}
}

// serveSession runs s on a loopback listener until the test ends.
func serveSession(t *testing.T, s *Session) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() { stop(); <-done })
	return ln
}
