package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/httvps/httvps/control/pool"
	"github.com/httvps/httvps/internal/nginxdecoy"
	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/store"
	"github.com/httvps/httvps/store/embedded"
	"github.com/httvps/httvps/store/redisstore"
)

const testAdminKey = "test-admin-key-0123456789abcdef-0123456789"

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// sharedRedis is one redis-server for the package; tests isolate
// themselves with a key prefix each.
var (
	sharedRedisOnce sync.Once
	sharedRedis     *testpeer.Redis
	sharedRedisErr  error
	prefixSeq       atomic.Int64
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedRedis != nil {
		sharedRedis.Kill()
	}
	os.Exit(code)
}

func redisStore(t *testing.T) store.Store {
	t.Helper()
	sharedRedisOnce.Do(func() {
		dir, err := os.MkdirTemp("", "api-redis-")
		if err != nil {
			sharedRedisErr = err
			return
		}
		if _, err := exec.LookPath("redis-server"); err != nil {
			sharedRedisErr = err
			return
		}
		sharedRedis, sharedRedisErr = testpeer.RunRedis(testpeer.RedisSpec{Dir: dir})
	})
	if sharedRedisErr != nil {
		t.Skipf("redis-server: %v", sharedRedisErr)
	}
	prefix := fmt.Sprintf("apitest%d:%d:", os.Getpid(), prefixSeq.Add(1))
	st, err := redisstore.New(context.Background(), sharedRedis.URL(), redisstore.WithPrefix(prefix), redisstore.WithTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func embeddedStore(t *testing.T) store.Store {
	t.Helper()
	st, err := embedded.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// forEachStore runs f against the embedded store and against Redis.
func forEachStore(t *testing.T, f func(t *testing.T, st store.Store)) {
	t.Run("embedded", func(t *testing.T) { f(t, embeddedStore(t)) })
	t.Run("redis", func(t *testing.T) { f(t, redisStore(t)) })
}

// fakePool places every key on one imaginary member, or fails with
// pool.ErrNoMembers when empty is set.
type fakePool struct {
	mu      sync.Mutex
	empty   bool
	placed  []string
	removed []string
}

func (p *fakePool) PlaceKey(_ context.Context, t store.Token) ([]store.Assignment, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.empty {
		return nil, pool.ErrNoMembers
	}
	p.placed = append(p.placed, t.ID)
	return []store.Assignment{{MemberID: "m1", Upstream: "127.0.0.1:8388", BackendKeyID: t.ID}}, nil
}

func (p *fakePool) RemoveKey(_ context.Context, t store.Token) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.removed = append(p.removed, t.ID)
	return nil
}

func (p *fakePool) removedIDs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.removed...)
}

func (p *fakePool) AddMember(context.Context, store.Member) (store.Member, error) {
	return store.Member{}, fmt.Errorf("fake pool: %w", store.ErrInvalid)
}
func (p *fakePool) DrainMember(context.Context, string) error   { return store.ErrNotFound }
func (p *fakePool) UndrainMember(context.Context, string) error { return store.ErrNotFound }
func (p *fakePool) RemoveMember(context.Context, string) error  { return store.ErrNotFound }

// clock is a settable time source.
type clock struct{ now atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.now.Store(time.Now().UnixNano())
	return c
}

// Now ticks a microsecond per call, so tokens created in a row have
// distinct creation times, as with a real clock.
func (c *clock) Now() time.Time          { return time.Unix(0, c.now.Add(int64(time.Microsecond))) }
func (c *clock) Advance(d time.Duration) { c.now.Add(int64(d)) }

// harness is a Server on a real loopback listener.
type harness struct {
	t     *testing.T
	srv   *Server
	st    store.Store
	pool  Pool
	fake  *fakePool
	clock *clock
	base  string
	hc    *http.Client
}

type option func(*Config)

func newHarness(t *testing.T, st store.Store, opts ...option) *harness {
	t.Helper()
	h := &harness{t: t, st: st, fake: &fakePool{}, clock: newClock()}
	cfg := Config{
		Store:     st,
		Pool:      h.fake,
		AdminKey:  testAdminKey,
		PublicURL: "https://ctl.example.com:8443",
		Logger:    quiet,
		Now:       h.clock.Now,
	}
	for _, o := range opts {
		o(&cfg)
	}
	h.pool = cfg.Pool
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	h.base = "http://" + ln.Addr().String()
	h.hc = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	t.Cleanup(func() {
		h.hc.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil && !errors.Is(err, ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return h
}

// response is an answer with its body read.
type response struct {
	*http.Response
	body []byte
}

// do sends a request; auth is the bearer token ("" for none).
func (h *harness) do(method, path, auth, body string) response {
	h.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.base+path, r)
	if err != nil {
		h.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.hc.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return response{resp, b}
}

func (h *harness) admin(method, path, body string) response {
	h.t.Helper()
	return h.do(method, path, testAdminKey, body)
}

// decode unmarshals a JSON body, failing the test on error.
func decode[T any](t *testing.T, r response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("status %d, body %q: %v", r.StatusCode, r.body, err)
	}
	return v
}

// decoyPage is the body of the decoy's default answer (nginx's 404 page).
var decoyPage = nginxdecoy.New(nginxdecoy.Config{}).AppendBody(nil, nginxdecoy.Answer{})

// wantDecoy checks that r is the decoy's default answer: nginx's 404, with
// nothing of the API in it.
func wantDecoy(t *testing.T, r response) {
	t.Helper()
	if r.StatusCode != 404 || r.Header.Get("Server") != "nginx" || r.Header.Get("Content-Type") != "text/html" || !bytes.Equal(r.body, decoyPage) {
		t.Errorf("want the decoy's 404; got %d, Server %q, Content-Type %q, body %q", r.StatusCode, r.Header.Get("Server"), r.Header.Get("Content-Type"), r.body)
	}
	for _, h := range []string{"WWW-Authenticate", "Allow", "Cache-Control"} {
		if v := r.Header.Get(h); v != "" {
			t.Errorf("decoy answer carries %s: %q", h, v)
		}
	}
}

// wantError checks status, the JSON error shape and its code.
func wantError(t *testing.T, r response, status int, code string) {
	t.Helper()
	if r.StatusCode != status {
		t.Fatalf("status %d, want %d; body %s", r.StatusCode, status, r.body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var b map[string]map[string]any
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatalf("error body %q: %v", r.body, err)
	}
	e, ok := b["error"]
	if !ok || len(b) != 1 || len(e) != 2 {
		t.Fatalf("error body %s: want exactly {\"error\":{\"code\",\"message\"}}", r.body)
	}
	if e["code"] != code {
		t.Errorf("code %v, want %s (body %s)", e["code"], code, r.body)
	}
	if msg, _ := e["message"].(string); msg == "" {
		t.Errorf("empty message in %s", r.body)
	}
}

// createdTokenJSON mirrors the answer of POST /v1/tokens in tests.
type createdTokenJSON struct {
	ID          string     `json:"id"`
	Token       string     `json:"token"`
	Label       string     `json:"label"`
	CreatedAt   time.Time  `json:"created_at"`
	ExpiresAt   *time.Time `json:"expires_at"`
	QuotaBytes  int64      `json:"quota_bytes"`
	MaxSessions int        `json:"max_sessions"`
	Cipher      string     `json:"cipher"`
	Status      string     `json:"status"`
	Assignments []struct {
		MemberID string `json:"member_id"`
		Upstream string `json:"upstream"`
	} `json:"assignments"`
	Usage *struct {
		Up, Down, Total int64
	} `json:"usage"`
	Sessions   *int `json:"sessions"`
	AccessKeys struct {
		SS     string `json:"ss"`
		SSConf string `json:"ssconf"`
		HTTVPS string `json:"httvps"`
	} `json:"access_keys"`
}

func (h *harness) createToken(body string) createdTokenJSON {
	h.t.Helper()
	r := h.admin("POST", "/v1/tokens", body)
	if r.StatusCode != http.StatusCreated {
		h.t.Fatalf("create token: status %d: %s", r.StatusCode, r.body)
	}
	return decode[createdTokenJSON](h.t, r)
}

// heartbeat registers a gateway.
func (h *harness) heartbeat(id, publicURL string, sessions int, ttl time.Duration) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := h.st.Heartbeat(ctx, store.Gateway{ID: id, PublicURL: publicURL, Sessions: sessions, Started: time.Now()}, ttl)
	if err != nil {
		h.t.Fatal(err)
	}
}
