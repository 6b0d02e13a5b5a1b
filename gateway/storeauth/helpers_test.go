package storeauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/store"
	"github.com/httvps/httvps/store/redisstore"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// startRedis runs a redis-server of the test's own whose append-only file
// is synced on every write, so that Kill loses nothing.
func startRedis(t testing.TB) *testpeer.Redis {
	t.Helper()
	return testpeer.StartRedis(t, testpeer.RedisSpec{Durable: true})
}

// countingStore counts calls per method and can be cut off (every call
// then fails with store.ErrUnavailable), which is how a test makes a
// gateway lose its store or die without deregistering.
type countingStore struct {
	store.Store
	mu    sync.Mutex
	calls map[string]int
	cut   atomic.Bool
}

func (c *countingStore) count(m string) error {
	c.mu.Lock()
	c.calls[m]++
	c.mu.Unlock()
	if c.cut.Load() {
		return fmt.Errorf("test: cut: %w", store.ErrUnavailable)
	}
	return nil
}

func (c *countingStore) n(m string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[m]
}

func (c *countingStore) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.calls {
		n += v
	}
	return n
}

func (c *countingStore) GetToken(ctx context.Context, id string) (store.Token, error) {
	if err := c.count("GetToken"); err != nil {
		return store.Token{}, err
	}
	return c.Store.GetToken(ctx, id)
}

func (c *countingStore) GetTokenByHash(ctx context.Context, h [32]byte) (store.Token, error) {
	if err := c.count("GetTokenByHash"); err != nil {
		return store.Token{}, err
	}
	return c.Store.GetTokenByHash(ctx, h)
}

func (c *countingStore) AddUsage(ctx context.Context, at time.Time, d map[string]store.Usage) error {
	if err := c.count("AddUsage"); err != nil {
		return err
	}
	return c.Store.AddUsage(ctx, at, d)
}

func (c *countingStore) GetUsage(ctx context.Context, id string) (store.Usage, error) {
	if err := c.count("GetUsage"); err != nil {
		return store.Usage{}, err
	}
	return c.Store.GetUsage(ctx, id)
}

func (c *countingStore) GetUsages(ctx context.Context, ids []string) (map[string]store.Usage, error) {
	if err := c.count("GetUsages"); err != nil {
		return nil, err
	}
	return c.Store.GetUsages(ctx, ids)
}

func (c *countingStore) AcquireSession(ctx context.Context, tok, gw string, max int) (bool, error) {
	if err := c.count("AcquireSession"); err != nil {
		return false, err
	}
	return c.Store.AcquireSession(ctx, tok, gw, max)
}

func (c *countingStore) LeaseQuota(ctx context.Context, tok, gw string, at time.Time, quota, consumed, delta int64) (store.QuotaLease, error) {
	if err := c.count("LeaseQuota"); err != nil {
		return store.QuotaLease{}, err
	}
	return c.Store.LeaseQuota(ctx, tok, gw, at, quota, consumed, delta)
}

func (c *countingStore) ReleaseSession(ctx context.Context, tok, gw string) error {
	if err := c.count("ReleaseSession"); err != nil {
		return err
	}
	return c.Store.ReleaseSession(ctx, tok, gw)
}

func (c *countingStore) AcquireDevice(ctx context.Context, tok, dev, gw string, sessions, max int) (bool, error) {
	if err := c.count("AcquireDevice"); err != nil {
		return false, err
	}
	return c.Store.AcquireDevice(ctx, tok, dev, gw, sessions, max)
}

func (c *countingStore) ReleaseDevice(ctx context.Context, tok, dev, gw string, grace time.Duration) error {
	if err := c.count("ReleaseDevice"); err != nil {
		return err
	}
	return c.Store.ReleaseDevice(ctx, tok, dev, gw, grace)
}

func (c *countingStore) ListMembers(ctx context.Context) ([]store.Member, error) {
	if err := c.count("ListMembers"); err != nil {
		return nil, err
	}
	return c.Store.ListMembers(ctx)
}

func (c *countingStore) Heartbeat(ctx context.Context, g store.Gateway, ttl time.Duration) error {
	if err := c.count("Heartbeat"); err != nil {
		return err
	}
	return c.Store.Heartbeat(ctx, g, ttl)
}

func (c *countingStore) RemoveGateway(ctx context.Context, id string) error {
	if err := c.count("RemoveGateway"); err != nil {
		return err
	}
	return c.Store.RemoveGateway(ctx, id)
}

func (c *countingStore) Publish(ctx context.Context, e store.Event) error {
	if err := c.count("Publish"); err != nil {
		return err
	}
	return c.Store.Publish(ctx, e)
}

func (c *countingStore) Subscribe(ctx context.Context) (<-chan store.Event, error) {
	if err := c.count("Subscribe"); err != nil {
		return nil, err
	}
	return c.Store.Subscribe(ctx)
}

// openStore connects a redisstore of its own to r.
func openStore(t testing.TB, r *testpeer.Redis) *countingStore {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := redisstore.New(ctx, r.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &countingStore{Store: s, calls: map[string]int{}}
}

// node is one gateway with its Auth and store client.
type node struct {
	t     *testing.T
	st    *countingStore
	auth  *Auth
	gw    *gateway.Gateway
	stop  context.CancelFunc
	done  chan error
	once  sync.Once
	addr  string
	runOK bool
}

func fastConfig() Config {
	return Config{
		FlushEvery:     300 * time.Millisecond,
		HeartbeatEvery: 200 * time.Millisecond,
		Logger:         quiet,
	}
}

func startNode(t *testing.T, r *testpeer.Redis, cfg Config) *node {
	t.Helper()
	n := &node{t: t, st: openStore(t, r), done: make(chan error, 1)}
	n.auth = New(n.st, cfg)
	gw, err := gateway.New(gateway.Config{Auth: n.auth, Logger: quiet, Loops: 2, DrainTimeout: time.Second, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	n.gw = gw
	n.auth.Attach(gw)
	n.addr = testpeer.ServeGateway(t, gw) // its cleanup runs after n.shutdown
	ctx, cancel := context.WithCancel(context.Background())
	n.stop = cancel
	go func() { n.done <- n.auth.Run(ctx) }()
	t.Cleanup(n.shutdown)
	// Events published before the subscription is up would be missed.
	for deadline := time.Now().Add(5 * time.Second); !n.auth.Stats().Subscribed; {
		if time.Now().After(deadline) {
			t.Fatal("event subscription not up after 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return n
}

// stopRun ends Run and waits for it.
func (n *node) stopRun() error {
	n.stop()
	select {
	case err := <-n.done:
		n.done <- err
		return err
	case <-time.After(10 * time.Second):
		n.t.Fatal("Run did not return")
		return nil
	}
}

func (n *node) shutdown() {
	n.once.Do(func() {
		n.auth.Attach(nil)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n.gw.Shutdown(ctx)
		n.stopRun()
	})
}

// newToken stores a token whose secret is returned; mod adjusts it.
func newToken(t testing.TB, s store.Store, upstreams []string, mod func(*store.Token)) (string, store.Token) {
	t.Helper()
	secret := store.NewID()
	tok := store.Token{ID: store.NewID(), Hash: store.HashToken(secret), Cipher: "chacha20-ietf-poly1305", SSPassword: "pw"}
	for i, up := range upstreams {
		tok.Assignments = append(tok.Assignments, store.Assignment{MemberID: "m" + strconv.Itoa(i+1), Upstream: up})
	}
	if mod != nil {
		mod(&tok)
	}
	if err := s.CreateToken(ctxT(t), tok); err != nil {
		t.Fatal(err)
	}
	return secret, tok
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func dial(addr, secret string) (net.Conn, error) {
	c, br, _, err := ws.Dialer{Timeout: 5 * time.Second}.Dial(context.Background(), "ws://"+addr+"/"+secret+"/tcp")
	if err != nil {
		return nil, err
	}
	return testpeer.KeepEarly(c, br), nil
}

func mustDial(t *testing.T, addr, secret string) net.Conn {
	t.Helper()
	c, err := dial(addr, secret)
	if err != nil {
		t.Fatalf("session on %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func mustDeny(t *testing.T, addr, secret, why string) {
	t.Helper()
	c, err := dial(addr, secret)
	if err == nil {
		c.Close()
		t.Fatalf("%s: session admitted on %s", why, addr)
	}
	var se ws.StatusError
	if !errors.As(err, &se) || int(se) != 404 {
		t.Fatalf("%s: want the decoy 404, got %v", why, err)
	}
}

// echo sends n bytes and reads them back.
func echo(t *testing.T, c net.Conn, n int) {
	t.Helper()
	msg := make([]byte, n)
	for i := range msg {
		msg[i] = byte(i)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if err := wsutil.WriteClientBinary(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := 0
	for got < n {
		b, err := wsutil.ReadServerBinary(c)
		if err != nil {
			t.Fatalf("echo after %d of %d bytes: %v", got, n, err)
		}
		got += len(b)
	}
}

// waitClose reads until a close frame and returns its code and when it
// arrived.
func waitClose(c net.Conn, timeout time.Duration) (ws.StatusCode, time.Time, error) {
	c.SetReadDeadline(time.Now().Add(timeout))
	for {
		h, err := ws.ReadHeader(c)
		if err != nil {
			return 0, time.Time{}, err
		}
		body := make([]byte, h.Length)
		if _, err := io.ReadFull(c, body); err != nil {
			return 0, time.Time{}, err
		}
		if h.OpCode == ws.OpClose {
			at := time.Now()
			code, _ := ws.ParseCloseFrameData(body)
			return code, at, nil
		}
	}
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
