package e2e

// The control-plane tests run a whole small fleet in this process: a real
// redis-server, one control plane (control/api + pool.Manager on its own
// redisstore client) and two gateways (gateway.New + storeauth, each on its
// own redisstore client; A speaks TLS, B plaintext), in front of real
// ss-server / ss-manager members and the Outline fake. Clients encrypt
// Shadowsocks themselves (testpeer's AEAD) over the Outline tcp path, with
// the token as the path secret, exactly as a stock Outline app would.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/redis/go-redis/v9"

	"github.com/httvps/httvps/control/api"
	"github.com/httvps/httvps/control/pool"
	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/gateway/storeauth"
	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/store/redisstore"
)

// ctlLogger is quiet unless E2E_CONTROL_LOG is set.
func ctlLogger() *slog.Logger {
	level := slog.LevelError + 1
	if os.Getenv("E2E_CONTROL_LOG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// ctlRedis is the fleet's Redis. startCtlRedis's keeps an append-only
// file synced on every write, so a SIGKILL loses nothing and Start on the
// same port brings the data back.
type ctlRedis struct {
	*testpeer.Redis
	// storeURL, when set, is what the fleet's stores connect to instead
	// of URL() (a redis+sentinel:// URL; control_sentinel_test.go).
	storeURL string
}

// quietRedisLog drops go-redis's reconnect chatter, which the outage test
// causes on purpose (E2E_CONTROL_LOG keeps it).
var quietRedisLog = sync.OnceFunc(func() {
	if os.Getenv("E2E_CONTROL_LOG") == "" {
		redis.SetLogger(ctlRedisLogger{})
	}
})

type ctlRedisLogger struct{}

func (ctlRedisLogger) Printf(context.Context, string, ...any) {}

func startCtlRedis(t testing.TB) *ctlRedis {
	t.Helper()
	quietRedisLog()
	return &ctlRedis{Redis: testpeer.StartRedis(t, testpeer.RedisSpec{Durable: true})}
}

// subscribers is the number of subscriptions to the store's event channel
// (one per gateway), -1 if Redis does not answer.
func (r *ctlRedis) subscribers() int {
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), DialTimeout: 500 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	m, err := c.PubSubNumSub(ctx, redisstore.DefaultPrefix+"events").Result()
	if err != nil {
		return -1
	}
	return int(m[redisstore.DefaultPrefix+"events"])
}

func openCtlStore(t testing.TB, r *ctlRedis) *redisstore.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u := r.URL()
	if r.storeURL != "" {
		u = r.storeURL
	}
	s, err := redisstore.New(ctx, u)
	if err != nil {
		t.Fatalf("redisstore: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// ctlPlane is the control plane: the API over plain HTTP on loopback and
// the pool manager, on a redisstore client of their own.
type ctlPlane struct {
	t        testing.TB
	url      string // http://127.0.0.1:port
	addr     string
	adminKey string
	mgr      *pool.Manager
	client   *http.Client
}

// ctlHealthEvery is the pool's health period in these tests: short, so a
// killed member is marked down within a couple of seconds.
const ctlHealthEvery = time.Second

func startCtlPlane(t testing.TB, r *ctlRedis, replicas int) *ctlPlane {
	t.Helper()
	return startCtlPlaneKeys(t, r, replicas, "")
}

// startCtlPlaneKeys is startCtlPlane whose access keys name keysURL
// ("": the plane's own URL).
func startCtlPlaneKeys(t testing.TB, r *ctlRedis, replicas int, keysURL string) *ctlPlane {
	t.Helper()
	return startCtlPlaneClock(t, r, replicas, keysURL, nil)
}

// startCtlPlaneClock is startCtlPlaneKeys with now as the API's clock
// (nil: time.Now).
func startCtlPlaneClock(t testing.TB, r *ctlRedis, replicas int, keysURL string, now func() time.Time) *ctlPlane {
	t.Helper()
	st := openCtlStore(t, r)
	log := ctlLogger()
	mgr := pool.New(st, pool.Config{Replicas: replicas, HealthEvery: ctlHealthEvery, DialTimeout: 500 * time.Millisecond, Logger: log})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &ctlPlane{
		t: t, addr: ln.Addr().String(), url: "http://" + ln.Addr().String(),
		adminKey: "e2e-admin-key-" + strings.Repeat("k", 40), mgr: mgr,
		client: &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}},
	}
	if keysURL == "" {
		keysURL = p.url
	}
	srv, err := api.New(api.Config{Store: st, Pool: mgr, AdminKey: p.adminKey, PublicURL: keysURL, Logger: log, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { mgr.Run(ctx) })
	wg.Go(func() { srv.Serve(ln) })
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		srv.Shutdown(sctx)
		cancel()
		wg.Wait()
		p.client.CloseIdleConnections()
	})
	return p
}

// ctlResp is an API answer.
type ctlResp struct {
	status int
	header http.Header
	body   []byte
}

func (r ctlResp) String() string { return fmt.Sprintf("%d %s", r.status, bytes.TrimSpace(r.body)) }

// errorCode checks the documented error shape and returns its code.
func (r ctlResp) errorCode() (string, error) {
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		return "", fmt.Errorf("error answer %v has Content-Type %q", r, ct)
	}
	var b struct {
		Error *struct {
			Code    *string `json:"code"`
			Message *string `json:"message"`
		} `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil || b.Error == nil || b.Error.Code == nil || b.Error.Message == nil || *b.Error.Message == "" {
		return "", fmt.Errorf("error answer %v: not {\"error\":{\"code\",\"message\"}} (%v)", r, err)
	}
	return *b.Error.Code, nil
}

// do sends a request; body is marshalled unless it is a string or nil.
func (p *ctlPlane) do(method, path, bearer string, body any) (ctlResp, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		js, err := json.Marshal(b)
		if err != nil {
			return ctlResp{}, err
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, p.url+path, rd)
	if err != nil {
		return ctlResp{}, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return ctlResp{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return ctlResp{status: resp.StatusCode, header: resp.Header, body: b}, err
}

// admin sends an admin request and wants status want; it decodes a JSON
// answer into out (if not nil).
func (p *ctlPlane) admin(method, path string, body any, want int, out any) ctlResp {
	p.t.Helper()
	r, err := p.do(method, path, p.adminKey, body)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	if r.status != want {
		p.t.Fatalf("%s %s: %v, want %d", method, path, r, want)
	}
	if out != nil {
		if err := json.Unmarshal(r.body, out); err != nil {
			p.t.Fatalf("%s %s: decoding %v: %v", method, path, r, err)
		}
	}
	return r
}

// ctlTokenView is the part of the API's token JSON the tests read.
type ctlTokenView struct {
	ID          string `json:"id"`
	Status      string `json:"status"`
	QuotaBytes  int64  `json:"quota_bytes"`
	Cipher      string `json:"cipher"`
	Assignments []struct {
		MemberID string `json:"member_id"`
		Upstream string `json:"upstream"`
	} `json:"assignments"`
	Usage struct {
		Up, Down, Total int64
	} `json:"usage"`
	Sessions   *int   `json:"sessions"`
	MaxDevices int    `json:"max_devices"`
	Token      string `json:"token"`
	Devices    []struct {
		Device   string `json:"device"`
		Kind     string `json:"kind"`
		Sessions int    `json:"sessions"`
		Gateways []struct {
			GatewayID string `json:"gateway_id"`
			Sessions  int    `json:"sessions"`
		} `json:"gateways"`
	} `json:"devices"`
}

// ctlToken is an issued token with the Shadowsocks settings its client
// config gives.
type ctlToken struct {
	ctlTokenView
	Secret   string   // Shadowsocks password
	Gateways []string // from the client config
}

// issue creates a token through POST /v1/tokens and reads the client's
// settings back through GET /v1/client/config, as a client does.
func (p *ctlPlane) issue(req map[string]any) ctlToken {
	p.t.Helper()
	var tok ctlToken
	p.admin("POST", "/v1/tokens", req, http.StatusCreated, &tok.ctlTokenView)
	if tok.Token == "" || len(tok.Assignments) == 0 {
		p.t.Fatalf("issued token without token string or assignments: %+v", tok.ctlTokenView)
	}
	r, err := p.do("GET", "/v1/client/config", tok.Token, nil)
	if err != nil || r.status != http.StatusOK {
		p.t.Fatalf("client config: %v %v", r, err)
	}
	var cc struct {
		TokenID  string   `json:"token_id"`
		Cipher   string   `json:"cipher"`
		Secret   string   `json:"secret"`
		Gateways []string `json:"gateways"`
	}
	if err := json.Unmarshal(r.body, &cc); err != nil || cc.TokenID != tok.ID || cc.Secret == "" || cc.Cipher != tok.Cipher {
		p.t.Fatalf("client config %v: %v", r, err)
	}
	tok.Secret, tok.Gateways = cc.Secret, cc.Gateways
	return tok
}

func (p *ctlPlane) token(id string) ctlTokenView {
	p.t.Helper()
	var v ctlTokenView
	p.admin("GET", "/v1/tokens/"+id, nil, http.StatusOK, &v)
	return v
}

// ctlMemberView is the part of a member's JSON the tests read.
type ctlMemberView struct {
	ID      string `json:"id"`
	Backend string `json:"backend"`
	Health  struct {
		Up        bool   `json:"up"`
		LastError string `json:"last_error"`
		Keys      int    `json:"keys"`
	} `json:"health"`
}

func (p *ctlPlane) addMember(req map[string]any) ctlMemberView {
	p.t.Helper()
	var m ctlMemberView
	p.admin("POST", "/v1/pool/members", req, http.StatusCreated, &m)
	if !m.Health.Up {
		p.t.Fatalf("member %s added down: %s", m.ID, m.Health.LastError)
	}
	return m
}

func (p *ctlPlane) member(id string) ctlMemberView {
	p.t.Helper()
	var l struct {
		Members []ctlMemberView `json:"members"`
	}
	p.admin("GET", "/v1/pool/members", nil, http.StatusOK, &l)
	for _, m := range l.Members {
		if m.ID == id {
			return m
		}
	}
	p.t.Fatalf("member %s not listed", id)
	return ctlMemberView{}
}

// ctlGateway is one gateway with its store-backed authenticator.
type ctlGateway struct {
	t       testing.TB
	name    string
	addr    string
	cert    *testpeer.TestCert // nil: plaintext
	auth    *storeauth.Auth
	gw      *gateway.Gateway
	st      *redisstore.Store
	stopRun context.CancelFunc
}

func startCtlGateway(t testing.TB, r *ctlRedis, name string, useTLS bool) *ctlGateway {
	t.Helper()
	return startCtlGatewayWith(t, r, name, useTLS, nil)
}

// startCtlGatewayWith is startCtlGateway with mod adjusting the
// authenticator's configuration (nil: as is).
func startCtlGatewayWith(t testing.TB, r *ctlRedis, name string, useTLS bool, mod func(*storeauth.Config)) *ctlGateway {
	t.Helper()
	st := openCtlStore(t, r)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &ctlGateway{t: t, name: name, addr: ln.Addr().String()}
	cfg := gateway.Config{Logger: ctlLogger(), Loops: 2, DrainTimeout: time.Second, DialTimeout: time.Second}
	public := "ws://" + g.addr
	if useTLS {
		g.cert = testpeer.SelfSignedCert(t)
		cfg.TLS = &gateway.TLSConfig{GetCertificate: g.cert.GetCertificate}
		public = "wss://" + g.addr
	}
	acfg := storeauth.Config{
		PublicURL: public, FlushEvery: 300 * time.Millisecond, HeartbeatEvery: 300 * time.Millisecond, Logger: cfg.Logger,
	}
	if mod != nil {
		mod(&acfg)
	}
	g.auth = storeauth.New(st, acfg)
	g.st = st
	cfg.Auth = g.auth
	if g.gw, err = gateway.New(cfg); err != nil {
		t.Fatal(err)
	}
	g.auth.Attach(g.gw)
	g.stopRun = runAuth(t, g.auth, "gateway "+name)
	testpeer.ServeGatewayOn(t, ln, g.gw)
	t.Cleanup(func() { g.auth.Attach(nil) }) // first: before the gateway shuts down
	return g
}

// runAuth runs auth.Run until test end; the cleanup, registered before the
// gateway's, ends it once the gateway has shut down. It returns the
// function that ends Run early.
func runAuth(t testing.TB, auth *storeauth.Auth, name string) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- auth.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s: store authenticator did not stop", name)
		}
	})
	return cancel
}

// dial opens the Outline tcp path with the token as the secret.
func (g *ctlGateway) dial(token string) (*testpeer.WSConn, error) {
	return g.dialFrom("", token)
}

// dialFrom is dial from the local address src ("": any).
func (g *ctlGateway) dialFrom(src, token string) (*testpeer.WSConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if g.cert != nil {
		return testpeer.DialWSFrom(ctx, wssURL(g.addr, token, "tcp"), src, g.cert.ClientConfig(0))
	}
	return testpeer.DialWSFrom(ctx, wsURL(g.addr, token, "tcp"), src, nil)
}

// kill makes the gateway die as far as the fleet can tell: its store
// client is closed, so it neither heartbeats nor deregisters, and its
// leases stay behind (its sessions go on locally).
func (g *ctlGateway) kill() {
	g.st.Close()
	g.stopRun()
}

// ss opens a Shadowsocks stream to target through the gateway.
func (g *ctlGateway) ss(tok ctlToken, target string) (*testpeer.SSConn, error) {
	return g.ssFrom("", tok, target)
}

// ssFrom is ss from the local address src ("": any).
func (g *ctlGateway) ssFrom(src string, tok ctlToken, target string) (*testpeer.SSConn, error) {
	c, err := g.dialFrom(src, tok.Token)
	if err != nil {
		return nil, fmt.Errorf("gateway %s: %w", g.name, err)
	}
	cph, err := testpeer.NewCipher(tok.Cipher, tok.Secret)
	if err != nil {
		c.Close()
		return nil, err
	}
	sc, err := cph.NewSSConn(c, target)
	if err != nil {
		c.Close()
		return nil, err
	}
	return sc, nil
}

// fetch downloads size bytes from the origin through the gateway in a new
// session and checks their hash.
func (g *ctlGateway) fetch(tok ctlToken, origin *testpeer.Origin, size int64, seed uint64) error {
	sc, err := g.ss(tok, origin.Addr)
	if err != nil {
		return err
	}
	defer sc.Close()
	sc.Under.(*testpeer.WSConn).NetConn().SetDeadline(time.Now().Add(20 * time.Second))
	sum, n, err := testpeer.HTTPGetSHA256(sc, origin.Addr, fmt.Sprintf("/bytes/%d?seed=%d", size, seed))
	if err != nil {
		return fmt.Errorf("gateway %s: fetch: %w", g.name, err)
	}
	if want := testpeer.PseudoRandomSHA256(size, seed); n != size || sum != want {
		return fmt.Errorf("gateway %s: fetched %d bytes sha256 %s, want %d %s", g.name, n, sum, size, want)
	}
	return nil
}

// decoy checks that the token no longer opens a session: the gateway gives
// its one decoy answer (404).
func (g *ctlGateway) decoy(token string) error {
	return g.decoyFrom("", token)
}

// decoyFrom is decoy from the local address src ("": any).
func (g *ctlGateway) decoyFrom(src, token string) error {
	c, err := g.dialFrom(src, token)
	if err == nil {
		c.Close()
		return fmt.Errorf("gateway %s admitted the session", g.name)
	}
	var se ws.StatusError
	if !errors.As(err, &se) || int(se) != http.StatusNotFound {
		return fmt.Errorf("gateway %s: want the decoy 404, got %v", g.name, err)
	}
	return nil
}

// ctlEcho sends n pseudo-random bytes through sc to an echo upstream and
// checks the hash of what comes back.
func ctlEcho(sc *testpeer.SSConn, n int64, seed uint64) error {
	return echoOver(sc, sc.Under.(*testpeer.WSConn).NetConn(), n, seed)
}

// echoOver is ctlEcho with nc, the socket under sc, bounding the exchange.
func echoOver(sc *testpeer.SSConn, nc net.Conn, n int64, seed uint64) error {
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	defer nc.SetDeadline(time.Time{})
	sent := make(chan error, 1)
	go func() {
		_, err := io.CopyBuffer(sc, testpeer.PseudoRandom(n, seed), make([]byte, 16<<10))
		sent <- err
	}()
	h := sha256.New()
	got, err := io.CopyN(h, sc, n)
	if err != nil {
		return fmt.Errorf("echo: %d of %d bytes: %w", got, n, err)
	}
	if err := <-sent; err != nil {
		return fmt.Errorf("echo: send: %w", err)
	}
	if hex.EncodeToString(h.Sum(nil)) != testpeer.PseudoRandomSHA256(n, seed) {
		return errors.New("echo: hash mismatch")
	}
	return nil
}

// ctlClosed is how a live session ended.
type ctlClosed struct {
	code ws.StatusCode
	at   time.Time
	read int64 // payload bytes read before the end
	err  error // the read error that ended the session (io.EOF after a close frame)
}

// watchClose reads sc until the session ends, handing each piece to check
// (if not nil; an error from it ends the watch), and reports how it ended.
func watchClose(sc *testpeer.SSConn, timeout time.Duration, check func(b []byte, read int64) error) <-chan ctlClosed {
	out := make(chan ctlClosed, 1)
	wc := sc.Under.(*testpeer.WSConn)
	wc.NetConn().SetReadDeadline(time.Now().Add(timeout))
	go func() {
		var c ctlClosed
		buf := make([]byte, 32<<10)
		for {
			n, err := sc.Read(buf)
			c.read += int64(n)
			if err == nil && check != nil {
				err = check(buf[:n], c.read)
			}
			if err != nil {
				c.at, c.err = time.Now(), err
				break
			}
		}
		c.code, _, _ = wc.CloseCode()
		out <- c
	}()
	return out
}

// ctlSSServer starts a static ss-server member on a free loopback port.
func ctlSSServer(t testing.TB, password string) (string, *testpeer.Proc) {
	t.Helper()
	for range 3 {
		port := testpeer.FreePort(t)
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		p := testpeer.StartProc(t, "ss-server", "-s", "127.0.0.1", "-p", strconv.Itoa(port),
			"-k", password, "-m", testpeer.DefaultMethod, "-u", "-t", "60")
		if err := testpeer.WaitListening(addr, 5*time.Second); err == nil {
			return addr, p
		}
		syscall.Kill(p.Cmd.Process.Pid, syscall.SIGKILL)
	}
	t.Fatal("ss-server did not start")
	return "", nil
}

func staticMember(name, addr, password string) map[string]any {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	return map[string]any{"name": name, "backend": "static", "host": host,
		"static": map[string]any{"port": p, "cipher": testpeer.DefaultMethod, "password": password}}
}

// ctlFleet is one Redis, one control plane, gateway A (TLS) and gateway B
// (plaintext), an HTTP origin and an echo upstream.
type ctlFleet struct {
	redis  *ctlRedis
	ctl    *ctlPlane
	a, b   *ctlGateway
	origin *testpeer.Origin
	echo   string
}

func startCtlFleet(t *testing.T, replicas int) *ctlFleet {
	t.Helper()
	return startCtlFleetWith(t, replicas, nil)
}

// startCtlFleetWith is startCtlFleet whose gateways' authenticators mod
// adjusts (nil: as is).
func startCtlFleetWith(t *testing.T, replicas int, mod func(*storeauth.Config)) *ctlFleet {
	t.Helper()
	return startCtlFleetClock(t, replicas, mod, nil)
}

// startCtlFleetClock is startCtlFleetWith whose control plane and
// gateways run on clk (nil: the real clock).
func startCtlFleetClock(t *testing.T, replicas int, mod func(*storeauth.Config), clk *testpeer.Clock) *ctlFleet {
	t.Helper()
	var now func() time.Time
	if clk != nil {
		now = clk.Now
		inner := mod
		mod = func(c *storeauth.Config) {
			c.Now = now
			if inner != nil {
				inner(c)
			}
		}
	}
	for _, bin := range []string{"redis-server", "ss-server"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed", bin)
		}
	}
	f := &ctlFleet{redis: startCtlRedis(t)}
	f.origin = testpeer.StartOrigin(t)
	f.echo = testpeer.EchoServer(t)
	f.ctl = startCtlPlaneClock(t, f.redis, replicas, "", now)
	f.a = startCtlGatewayWith(t, f.redis, "A", true, mod)
	f.b = startCtlGatewayWith(t, f.redis, "B", false, mod)
	ctlEventually(t, 10*time.Second, "both gateways registered and subscribed", func() bool {
		var l struct {
			Gateways []struct {
				Live bool `json:"live"`
			} `json:"gateways"`
		}
		f.ctl.admin("GET", "/v1/gateways", nil, http.StatusOK, &l)
		live := 0
		for _, g := range l.Gateways {
			if g.Live {
				live++
			}
		}
		return live == 2 && f.redis.subscribers() == 2
	})
	return f
}

// staticPair adds two static ss-server members sharing one password, so a
// token's key is valid on both (replicas).
func (f *ctlFleet) staticPair(t *testing.T) (members [2]ctlMemberView, addrs [2]string, procs [2]*testpeer.Proc) {
	t.Helper()
	password := "static-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	for i := range 2 {
		addrs[i], procs[i] = ctlSSServer(t, password)
		members[i] = f.ctl.addMember(staticMember(fmt.Sprintf("static-%d", i+1), addrs[i], password))
	}
	return members, addrs, procs
}

func ctlEventually(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// ctlPidFiles lists the pids ss-manager wrote for its ss-server children.
func ctlPidFiles(dir string) []int {
	files, _ := filepath.Glob(filepath.Join(dir, ".shadowsocks_*.pid"))
	var pids []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
			pids = append(pids, pid)
		}
	}
	return pids
}
