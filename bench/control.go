package bench

// The control scenario measures the shared-state side of HTTVPS against a
// real redis-server the harness starts: the gateway's token check
// (storeauth.Authenticate, in this process) on a cache hit, with a device
// limit (a device live here; a new device, one Redis round trip), and on a
// cache miss (one Redis round trip each), GET /v1/client/config against the
// httvps-control binary over loopback HTTP with keep-alive, and, for scale,
// redis-benchmark's GET/SET against the same Redis.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/gateway/storeauth"
	"github.com/httvps/httvps/store"
	"github.com/httvps/httvps/store/redisstore"
)

// ControlResult is what the control scenario measured.
type ControlResult struct {
	Redis       string             `json:"redis_version"`
	TokenChecks []TokenCheckResult `json:"token_checks,omitempty"`
	// ClientConfig is GET /v1/client/config against httvps-control.
	ClientConfig *HTTPLoadResult `json:"client_config,omitempty"`
	// RedisBenchmark is redis-benchmark's figures against the same Redis.
	RedisBenchmark        []RedisBenchResult `json:"redis_benchmark,omitempty"`
	RedisBenchmarkCommand string             `json:"redis_benchmark_command,omitempty"`
}

// TokenCheckResult is one run of storeauth.Authenticate (followed by the
// session's Release, as the gateway does when a session ends) from
// Goroutines goroutines for Seconds.
type TokenCheckResult struct {
	Path       string  `json:"path"` // "hit" or "miss"
	Goroutines int     `json:"goroutines"`
	Tokens     int     `json:"tokens"` // distinct tokens cycled through
	Seconds    float64 `json:"seconds"`
	Ops        int64   `json:"ops"`
	PerSecond  float64 `json:"ops_per_s"`
	// NsPerOp is the average time of one check on one goroutine
	// (goroutines × wall time / ops).
	NsPerOp     float64 `json:"ns_per_op"`
	AllocsPerOp float64 `json:"allocs_per_op"`
	// StoreCallsPerOp counts GetTokenByHash and GetUsage calls per check.
	StoreCallsPerOp float64 `json:"store_calls_per_op"`
}

// HTTPLoadResult is a closed-loop HTTP load: Connections keep-alive
// connections, each sending its next request when the previous answer is in.
type HTTPLoadResult struct {
	Route       string  `json:"route"`
	Connections int     `json:"connections"`
	Seconds     float64 `json:"seconds"`
	Requests    int64   `json:"requests"`
	Errors      int64   `json:"errors"`
	PerSecond   float64 `json:"requests_per_s"`
	P50Ms       float64 `json:"latency_ms_p50"`
	P99Ms       float64 `json:"latency_ms_p99"`
	P999Ms      float64 `json:"latency_ms_p999"`
	// CPUmsPerReq is the httvps-control process's CPU per request.
	CPUmsPerReq float64 `json:"server_cpu_ms_per_request"`
	Command     string  `json:"command"`
}

// RedisBenchResult is one test line of redis-benchmark -q.
type RedisBenchResult struct {
	Test      string  `json:"test"`
	PerSecond float64 `json:"requests_per_s"`
	P50Ms     float64 `json:"latency_ms_p50,omitempty"`
}

// Control scenario sizes.
const (
	controlTokens      = 2000 // tokens stored for the token checks
	controlMissWide    = 32   // goroutines of the second miss run
	redisBenchRequests = 100000
)

func runControl(ctx context.Context, cfg *Config, ps *procSet, rep *Report) error {
	res := &ControlResult{}
	rep.Control = res
	port, err := freePort()
	if err != nil {
		return err
	}
	rbin, err := exec.LookPath(cfg.RedisBin)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", errPeerUnavailable, cfg.RedisBin, err)
	}
	res.Redis = commandVersion(rbin, "--version")
	dir, err := os.MkdirTemp("", "httvps-bench-control-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	rp, err := ps.start("redis-server", []string{rbin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--dir", dir, "--save", "", "--appendonly", "no", "--protected-mode", "no", "--logfile", ""}, nil)
	if err != nil {
		return err
	}
	raddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := waitRedis(ctx, rp, raddr); err != nil {
		return err
	}
	url := "redis://" + raddr + "/0"
	st, err := redisstore.New(ctx, url)
	if err != nil {
		return err
	}
	defer st.Close()

	var errs []error
	if err := runTokenChecks(ctx, cfg, st, res); err != nil {
		errs = append(errs, fmt.Errorf("token checks: %w", err))
	}
	if err := runClientConfigLoad(ctx, cfg, ps, st, url, dir, res); err != nil {
		errs = append(errs, fmt.Errorf("client config: %w", err))
	}
	if err := runRedisBenchmark(ctx, cfg, port, res); err != nil {
		errs = append(errs, fmt.Errorf("redis-benchmark: %w", err))
	}
	return errors.Join(errs...)
}

// waitRedis waits until the server answers PING.
func waitRedis(ctx context.Context, p *Process, addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.SetDeadline(time.Now().Add(time.Second))
			io.WriteString(c, "PING\r\n")
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if line == "+PONG\r\n" {
				return nil
			}
		}
		if p.Exited() {
			return fmt.Errorf("bench: redis-server exited: %v: %s", p.err, p.tail)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("bench: redis-server on %s did not answer PING", addr)
}

func commandVersion(bin string, args ...string) string {
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// countingStore counts the store calls the handshake path makes: token
// lookups and device leases (releases go in the background, uncounted).
type countingStore struct {
	store.Store
	calls atomic.Int64
}

func (c *countingStore) GetTokenByHash(ctx context.Context, h [32]byte) (store.Token, error) {
	c.calls.Add(1)
	return c.Store.GetTokenByHash(ctx, h)
}

func (c *countingStore) GetUsage(ctx context.Context, id string) (store.Usage, error) {
	c.calls.Add(1)
	return c.Store.GetUsage(ctx, id)
}

func (c *countingStore) AcquireDevice(ctx context.Context, tok, dev, gw string, sessions, max int) (bool, error) {
	c.calls.Add(1)
	return c.Store.AcquireDevice(ctx, tok, dev, gw, sessions, max)
}

// makeTokens stores n tokens with one assignment each (and maxDevices as
// their device limit) and returns their secrets.
func makeTokens(ctx context.Context, st store.Store, n, maxDevices int) ([][]byte, error) {
	secrets := make([][]byte, n)
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for range 8 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				var b [32]byte
				rand.Read(b[:])
				s := base64.RawURLEncoding.EncodeToString(b[:])
				t := store.Token{ID: store.NewID(), Hash: store.HashToken(s), Label: "bench", Cipher: "chacha20-ietf-poly1305",
					SSPassword: "bench", MaxDevices: maxDevices, Assignments: []store.Assignment{{MemberID: "m1", Upstream: "127.0.0.1:9"}}}
				if err := st.CreateToken(ctx, t); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				secrets[i] = []byte(s)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return secrets, ctx.Err()
}

// Token-check paths (TokenCheckResult.Path).
const (
	checkHit        = "hit"         // the token cached, no device limit
	checkMiss       = "miss"        // every check looks the token up
	checkDeviceLive = "device-live" // the token cached, with a device limit, the client's device live here
	checkDeviceNew  = "device-new"  // the token cached, with a device limit, a new device each check
)

// benchDeviceLimit is the device limit of the device runs' tokens: never
// reached by device-live (one device per token), and high enough for
// device-new's fresh addresses, whose leases end at once (grace 0).
const benchDeviceLimit = 1 << 30

func runTokenChecks(ctx context.Context, cfg *Config, st store.Store, res *ControlResult) error {
	secrets, err := makeTokens(ctx, st, controlTokens, 0)
	if err != nil {
		return err
	}
	devSecrets, err := makeTokens(ctx, st, controlTokens, benchDeviceLimit)
	if err != nil {
		return err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	procs := runtime.GOMAXPROCS(0)
	runs := []struct {
		path       string
		goroutines int
		cacheTTL   time.Duration
	}{
		{checkHit, procs, 0},
		{checkDeviceLive, procs, 0},
		{checkDeviceNew, procs, 0},
		// A positive cache that is stale at once: every check asks Redis,
		// the path of a token this gateway has not seen.
		{checkMiss, procs, time.Nanosecond},
		{checkMiss, controlMissWide, time.Nanosecond},
	}
	liveAddr := gateway.Client{Addr: netip.AddrFrom4([4]byte{198, 51, 100, 7})}
	var fresh atomic.Uint32 // device-new's addresses: 10.0.0.0/8 onward, one per check
	clientOf := func(path string) func() gateway.Client {
		switch path {
		case checkDeviceLive:
			return func() gateway.Client { return liveAddr }
		case checkDeviceNew:
			return func() gateway.Client {
				n := fresh.Add(1)
				return gateway.Client{Addr: netip.AddrFrom4([4]byte{10 + byte(n>>24), byte(n >> 16), byte(n >> 8), byte(n)})}
			}
		}
		return func() gateway.Client { return gateway.Client{} }
	}
	for _, r := range runs {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		cs := &countingStore{Store: st}
		// DeviceGrace 1 ns: a released device's lease ends at once, so
		// device-new's leases do not pile up in Redis.
		a := storeauth.New(cs, storeauth.Config{CacheTTL: r.cacheTTL, Logger: quiet, DeviceGrace: time.Nanosecond})
		actx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- a.Run(actx) }()
		sec := secrets
		var held []gateway.Account
		if r.path == checkDeviceLive || r.path == checkDeviceNew {
			sec = devSecrets
		}
		if r.path != checkMiss {
			for _, s := range sec { // warm the cache
				route, _, ok := a.Authenticate(s, gateway.PathTCP, liveAddr)
				if !ok {
					continue
				}
				if r.path == checkDeviceLive {
					held = append(held, route.Account) // keeps the device live here
				} else {
					route.Account.Release()
				}
			}
		}
		tr, err := checkTokens(ctx, a, cs, sec, r.goroutines, cfg.TokenCheckTime, clientOf(r.path))
		for _, acc := range held {
			acc.Release()
		}
		cancel()
		<-done
		if err != nil {
			return fmt.Errorf("%s/%d: %w", r.path, r.goroutines, err)
		}
		tr.Path = r.path
		res.TokenChecks = append(res.TokenChecks, tr)
		fmt.Fprintf(cfg.Log, "control token check %-11s %2d goroutines: %.0f checks/s, %.0f ns/op, %.2f allocs/op, %.3f store calls/op\n",
			tr.Path, tr.Goroutines, tr.PerSecond, tr.NsPerOp, tr.AllocsPerOp, tr.StoreCallsPerOp)
	}
	return nil
}

// checkTokens runs Authenticate + Release from g goroutines for d; each
// goroutine cycles through its own share of the secrets (disjoint while
// there are at least g), so concurrent misses never wait on one another's
// lookup.
func checkTokens(ctx context.Context, a *storeauth.Auth, cs *countingStore, secrets [][]byte, g int, d time.Duration, client func() gateway.Client) (TokenCheckResult, error) {
	var (
		stop   atomic.Bool
		ops    atomic.Int64
		denied atomic.Int64
		wg     sync.WaitGroup
		ms0    runtime.MemStats
		ms1    runtime.MemStats
	)
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	calls0 := cs.calls.Load()
	start := time.Now()
	for w := range g {
		wg.Go(func() {
			var n int64
			per := max(len(secrets)/g, 1)
			for k := 0; !stop.Load(); k++ {
				route, _, ok := a.Authenticate(secrets[(w+g*(k%per))%len(secrets)], gateway.PathTCP, client())
				if !ok {
					denied.Add(1)
					continue
				}
				route.Account.Release()
				n++
			}
			ops.Add(n)
		})
	}
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
	stop.Store(true)
	wg.Wait()
	wall := time.Since(start)
	runtime.ReadMemStats(&ms1)
	if n := denied.Load(); n > 0 {
		return TokenCheckResult{}, fmt.Errorf("%d checks denied", n)
	}
	n := ops.Load()
	if n == 0 {
		return TokenCheckResult{}, errors.New("no check completed")
	}
	return TokenCheckResult{
		Goroutines: g, Tokens: len(secrets), Seconds: wall.Seconds(), Ops: n,
		PerSecond:       float64(n) / wall.Seconds(),
		NsPerOp:         float64(g) * float64(wall.Nanoseconds()) / float64(n),
		AllocsPerOp:     float64(ms1.Mallocs-ms0.Mallocs) / float64(n),
		StoreCallsPerOp: float64(cs.calls.Load()-calls0) / float64(n),
	}, ctx.Err()
}

// runClientConfigLoad starts httvps-control on the Redis, adds a static
// member (a listener of ours, which is all its health check needs), issues
// a token, registers two gateways and then loads GET /v1/client/config.
func runClientConfigLoad(ctx context.Context, cfg *Config, ps *procSet, st store.Store, url, dir string, res *ControlResult) error {
	if _, err := os.Stat(cfg.ControlBin); err != nil {
		return fmt.Errorf("%w: %s: %v", errPeerUnavailable, cfg.ControlBin, err)
	}
	var kb [32]byte
	rand.Read(kb[:])
	adminKey := base64.RawURLEncoding.EncodeToString(kb[:])
	keyFile := filepath.Join(dir, "admin.key")
	if err := os.WriteFile(keyFile, []byte(adminKey), 0o600); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	argv := []string{cfg.ControlBin, "-listen", addr, "-admin-listen", "", "-redis", url,
		"-admin-key-file", keyFile, "-log-level", "warn"}
	p, err := ps.start("httvps-control", argv, nil)
	if err != nil {
		return err
	}
	if err := waitListening(ctx, p, addr); err != nil {
		return err
	}

	member, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer member.Close()
	go func() {
		for {
			c, err := member.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for i, u := range []string{"wss://127.0.0.1:8443", "wss://127.0.0.2:8443"} {
		g := store.Gateway{ID: fmt.Sprintf("bench-gw-%d", i+1), PublicURL: u, Sessions: 10 * i, Started: time.Now()}
		if err := st.Heartbeat(ctx, g, 5*time.Minute); err != nil {
			return err
		}
	}
	hc := &fasthttp.HostClient{Addr: addr, MaxConns: cfg.ConfigConns, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	call := func(method, path, bearer string, body any, want int, out any) error {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.Header.SetMethod(method)
		req.SetRequestURI("http://" + addr + path)
		req.Header.Set("Authorization", "Bearer "+bearer)
		if body != nil {
			b, _ := json.Marshal(body)
			req.Header.SetContentType("application/json")
			req.SetBody(b)
		}
		if err := hc.DoTimeout(req, resp, 10*time.Second); err != nil {
			return err
		}
		if resp.StatusCode() != want {
			return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode(), bytes.TrimSpace(resp.Body()))
		}
		if out != nil {
			return json.Unmarshal(resp.Body(), out)
		}
		return nil
	}
	mport := member.Addr().(*net.TCPAddr).Port
	if err := call("POST", "/v1/pool/members", adminKey, map[string]any{"name": "bench", "backend": "static", "host": "127.0.0.1",
		"static": map[string]any{"port": mport, "cipher": "chacha20-ietf-poly1305", "password": "bench"}}, 201, nil); err != nil {
		return err
	}
	var tok struct {
		Token string `json:"token"`
	}
	if err := call("POST", "/v1/tokens", adminKey, map[string]any{"label": "bench"}, 201, &tok); err != nil {
		return err
	}
	var cc struct {
		Gateways []string `json:"gateways"`
	}
	if err := call("GET", "/v1/client/config", tok.Token, nil, 200, &cc); err != nil {
		return err
	}
	if len(cc.Gateways) != 2 {
		return fmt.Errorf("client config lists gateways %v, want 2", cc.Gateways)
	}

	load := func(d time.Duration) ([]time.Duration, int64, time.Duration) {
		var (
			stop atomic.Bool
			errs atomic.Int64
			wg   sync.WaitGroup
			mu   sync.Mutex
			all  []time.Duration
		)
		start := time.Now()
		for range cfg.ConfigConns {
			wg.Go(func() {
				req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				defer fasthttp.ReleaseRequest(req)
				defer fasthttp.ReleaseResponse(resp)
				req.SetRequestURI("http://" + addr + "/v1/client/config")
				req.Header.Set("Authorization", "Bearer "+tok.Token)
				lat := make([]time.Duration, 0, 1<<16)
				for !stop.Load() && ctx.Err() == nil {
					t0 := time.Now()
					err := hc.DoTimeout(req, resp, 10*time.Second)
					if err != nil || resp.StatusCode() != 200 {
						errs.Add(1)
						continue
					}
					lat = append(lat, time.Since(t0))
				}
				mu.Lock()
				all = append(all, lat...)
				mu.Unlock()
			})
		}
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
		stop.Store(true)
		wg.Wait()
		return all, errs.Load(), time.Since(start)
	}
	load(500 * time.Millisecond) // warm-up: connections and lazy initialisation
	before, err := p.Sample()
	if err != nil {
		return err
	}
	lat, nerr, wall := load(cfg.ConfigLoadTime)
	after, err := p.Sample()
	if err != nil {
		return err
	}
	if nerr > 0 {
		return fmt.Errorf("%d requests failed", nerr)
	}
	if len(lat) == 0 {
		return errors.New("no request completed")
	}
	n := int64(len(lat))
	r := &HTTPLoadResult{
		Route: "GET /v1/client/config", Connections: cfg.ConfigConns, Seconds: wall.Seconds(),
		Requests: n, Errors: nerr, PerSecond: float64(n) / wall.Seconds(),
		P50Ms: percentileMs(lat, 50), P99Ms: percentileMs(lat, 99), P999Ms: percentileMs(lat, 99.9),
		CPUmsPerReq: after.CPUSince(before).Seconds() * 1000 / float64(n),
		Command:     cfg.ControlBin + " -listen 127.0.0.1:PORT -admin-listen '' -redis redis://127.0.0.1:REDISPORT/0 -admin-key-file FILE -log-level warn",
	}
	res.ClientConfig = r
	fmt.Fprintf(cfg.Log, "control client config: %d connections, %.0f req/s, p50 %.2f p99 %.2f p99.9 %.2f ms, %.3f server CPU ms/req\n",
		r.Connections, r.PerSecond, r.P50Ms, r.P99Ms, r.P999Ms, r.CPUmsPerReq)
	return nil
}

// redisBenchLine matches "SET: 123456.79 requests per second, p50=0.199 msec".
var redisBenchLine = regexp.MustCompile(`^([A-Za-z_ ()0-9-]+): ([0-9.]+) requests per second(?:, p50=([0-9.]+) msec)?`)

// parseRedisBenchmark reads redis-benchmark -q output; progress updates
// are separated by carriage returns.
func parseRedisBenchmark(out string) []RedisBenchResult {
	var rs []RedisBenchResult
	for _, l := range strings.FieldsFunc(out, func(r rune) bool { return r == '\r' || r == '\n' }) {
		m := redisBenchLine.FindStringSubmatch(strings.TrimSpace(l))
		if m == nil {
			continue
		}
		r := RedisBenchResult{Test: m[1]}
		r.PerSecond, _ = strconv.ParseFloat(m[2], 64)
		if m[3] != "" {
			r.P50Ms, _ = strconv.ParseFloat(m[3], 64)
		}
		rs = append(rs, r)
	}
	return rs
}

func runRedisBenchmark(ctx context.Context, cfg *Config, port int, res *ControlResult) error {
	bin, err := exec.LookPath(cfg.RedisBenchBin)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", errPeerUnavailable, cfg.RedisBenchBin, err)
	}
	args := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(port), "-q", "-n", strconv.Itoa(redisBenchRequests), "-t", "get,set"}
	res.RedisBenchmarkCommand = "redis-benchmark -h 127.0.0.1 -p PORT " + strings.Join(args[4:], " ")
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, bin, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, bytes.TrimSpace(out))
	}
	res.RedisBenchmark = parseRedisBenchmark(string(out))
	if len(res.RedisBenchmark) == 0 {
		return fmt.Errorf("no figures in %q", out)
	}
	for _, r := range res.RedisBenchmark {
		fmt.Fprintf(cfg.Log, "control redis-benchmark %s: %.0f req/s, p50 %.3f ms\n", r.Test, r.PerSecond, r.P50Ms)
	}
	return nil
}
