package e2e

// Redis high availability through Sentinel: a real primary, one replica and
// three redis-sentinel processes on loopback; the control plane and both
// gateways reach Redis by a redis+sentinel:// URL. The primary is killed
// with SIGKILL while streams run through both gateways.

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/httvps/httvps/internal/testpeer"
)

// sentinelMaster is the name the test's Sentinels monitor.
const sentinelMaster = "httvps-e2e"

// sentinelSet is a primary, its replica and three Sentinels (quorum 2).
type sentinelSet struct {
	primary, replica *ctlRedis
	sentinels        []int // ports
}

// startSentinelSet starts the set and waits until every Sentinel sees the
// replica and the two other Sentinels, so that a failover can be agreed.
func startSentinelSet(t *testing.T) *sentinelSet {
	t.Helper()
	quietRedisLog()
	s := &sentinelSet{}
	s.primary = startSetServer(t)
	s.replica = startSetServer(t, "--replicaof", "127.0.0.1", strconv.Itoa(s.primary.Port))
	ctlEventually(t, 10*time.Second, "the replica in sync", func() bool {
		return strings.Contains(redisInfo(s.replica.Addr(), "replication"), "master_link_status:up")
	})
	for i := range 3 {
		port := testpeer.FreePort(t)
		dir := t.TempDir()
		// down-after 1 s: the primary is declared down a second after it
		// stops answering; failover-timeout bounds a stuck attempt (a
		// second attempt starts after twice that).
		conf := fmt.Sprintf(`port %d
bind 127.0.0.1
protected-mode no
daemonize no
dir %s
logfile ""
sentinel monitor %s 127.0.0.1 %d 2
sentinel down-after-milliseconds %s 1000
sentinel failover-timeout %s 3000
sentinel parallel-syncs %s 1
`, port, dir, sentinelMaster, s.primary.Port, sentinelMaster, sentinelMaster, sentinelMaster)
		path := filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", i))
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		testpeer.StartProc(t, "redis-sentinel", path)
		s.sentinels = append(s.sentinels, port)
	}
	ctlEventually(t, 20*time.Second, "every Sentinel to know the replica and the other two", func() bool {
		for _, p := range s.sentinels {
			m := sentinelInfo(p)
			if m["num-slaves"] != "1" || m["num-other-sentinels"] != "2" {
				return false
			}
		}
		return true
	})
	return s
}

// startSetServer starts a redis-server of the set (extra: its further
// arguments).
func startSetServer(t *testing.T, extra ...string) *ctlRedis {
	t.Helper()
	// Send the first full sync at once (7.0 waits 5 s for more replicas).
	args := append([]string{"--repl-diskless-sync-delay", "0"}, extra...)
	return &ctlRedis{Redis: testpeer.StartRedis(t, testpeer.RedisSpec{Args: args})}
}

// url is the Sentinel URL of the set.
func (s *sentinelSet) url() string {
	hosts := make([]string, len(s.sentinels))
	for i, p := range s.sentinels {
		hosts[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	}
	return "redis+sentinel://" + strings.Join(hosts, ",") + "/" + sentinelMaster + "/0"
}

// masterPort is the primary's port as the first Sentinel reports it.
func (s *sentinelSet) masterPort() int {
	c := redis.NewSentinelClient(&redis.Options{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.sentinels[0])), DialTimeout: 500 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	a, err := c.GetMasterAddrByName(ctx, sentinelMaster).Result()
	if err != nil || len(a) != 2 {
		return 0
	}
	p, _ := strconv.Atoi(a[1])
	return p
}

// sentinelInfo is SENTINEL MASTER of the set's master, as one Sentinel
// sees it (nil if it does not answer).
func sentinelInfo(port int) map[string]string {
	c := redis.NewSentinelClient(&redis.Options{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), DialTimeout: 500 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	m, _ := c.Master(ctx, sentinelMaster).Result()
	return m
}

func redisInfo(addr, section string) string {
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 500 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s, _ := c.Info(ctx, section).Result()
	return s
}

// countConn is the client end of a session that counts the WebSocket
// payload bytes it sends and receives: what the gateway meters as usage
// (the Shadowsocks ciphertext, address header included).
type countConn struct {
	*testpeer.WSConn
	moved *atomic.Int64
}

func (c *countConn) Read(p []byte) (int, error) {
	n, err := c.WSConn.Read(p)
	c.moved.Add(int64(n))
	return n, err
}

func (c *countConn) Write(p []byte) (int, error) {
	n, err := c.WSConn.Write(p)
	c.moved.Add(int64(n))
	return n, err
}

// countedSS opens a Shadowsocks stream to target through g whose bytes
// are added to moved.
func countedSS(g *ctlGateway, tok ctlToken, target string, moved *atomic.Int64) (*testpeer.SSConn, *countConn, error) {
	c, err := g.dial(tok.Token)
	if err != nil {
		return nil, nil, fmt.Errorf("gateway %s: %w", g.name, err)
	}
	cc := &countConn{WSConn: c, moved: moved}
	cph, err := testpeer.NewCipher(tok.Cipher, tok.Secret)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	sc, err := cph.NewSSConn(cc, target)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return sc, cc, nil
}

// countedFetch is ctlGateway.fetch on a counted session.
func countedFetch(g *ctlGateway, tok ctlToken, origin *testpeer.Origin, size int64, seed uint64, moved *atomic.Int64) error {
	sc, cc, err := countedSS(g, tok, origin.Addr, moved)
	if err != nil {
		return err
	}
	defer sc.Close()
	cc.NetConn().SetDeadline(time.Now().Add(20 * time.Second))
	sum, n, err := testpeer.HTTPGetSHA256(sc, origin.Addr, fmt.Sprintf("/bytes/%d?seed=%d", size, seed))
	if err != nil {
		return fmt.Errorf("gateway %s: fetch: %w", g.name, err)
	}
	if want := testpeer.PseudoRandomSHA256(size, seed); n != size || sum != want {
		return fmt.Errorf("gateway %s: fetched %d bytes sha256 %s, want %d %s", g.name, n, sum, size, want)
	}
	return nil
}

// countedEcho is ctlEcho on a counted session.
func countedEcho(sc *testpeer.SSConn, cc *countConn, n int64, seed uint64) error {
	return echoOver(sc, cc.NetConn(), n, seed)
}

// A fleet on Sentinel survives the loss of its primary: streams through
// both gateways go on across the failover with matching hashes, tokens
// issued before it (used or not) and after it work, a revocation after it
// reaches both gateways within a second, and the usage in Redis is exactly
// the bytes the clients moved.
func TestControlSentinelFailover(t *testing.T) {
	for _, bin := range []string{"redis-server", "redis-sentinel", "ss-server"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed", bin)
		}
	}
	set := startSentinelSet(t)
	// The fleet's handle: its stores dial the Sentinel URL; subscribers()
	// asks the first primary.
	handle := &ctlRedis{Redis: set.primary.Redis, storeURL: set.url()}
	f := &ctlFleet{redis: handle, origin: testpeer.StartOrigin(t), echo: testpeer.EchoServer(t)}
	f.ctl = startCtlPlane(t, handle, 2)
	f.a = startCtlGateway(t, handle, "A", true)
	f.b = startCtlGateway(t, handle, "B", false)
	ctlEventually(t, 10*time.Second, "both gateways subscribed on the primary", func() bool { return set.primary.subscribers() == 2 })
	f.staticPair(t)

	var moved atomic.Int64 // every byte a client sent or received
	used := f.ctl.issue(map[string]any{"label": "before-used"})
	unused := f.ctl.issue(map[string]any{"label": "before-unused"}) // first seen by a gateway after the failover
	gws := []*ctlGateway{f.a, f.b}
	for i, g := range gws {
		if err := countedFetch(g, used, f.origin, 256<<10, uint64(i), &moved); err != nil {
			t.Fatal(err)
		}
	}

	// Two streams per gateway echo 64 KiB pieces, each hash-checked, until
	// stop is closed.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var pieces atomic.Int64
	errs := make(chan error, 4)
	for gi, g := range gws {
		for si := range 2 {
			sc, cc, err := countedSS(g, used, f.echo, &moved)
			if err != nil {
				t.Fatal(err)
			}
			wg.Go(func() {
				defer sc.Close()
				for k := uint64(0); ; k++ {
					select {
					case <-stop:
						return
					default:
					}
					if err := countedEcho(sc, cc, 64<<10, uint64(1000*gi+100*si)+k); err != nil {
						errs <- fmt.Errorf("gateway %s stream %d piece %d: %w", g.name, si, k, err)
						return
					}
					pieces.Add(1)
				}
			})
		}
	}
	ctlEventually(t, 10*time.Second, "the streams under way", func() bool { return pieces.Load() >= 8 })

	// A prober opens a new session with the cached token on each gateway
	// every 50 ms from the kill on, and notes the refusals: the window in
	// which a gateway admits no new session (not asserted; reported).
	probeStop := make(chan struct{})
	var probeWG sync.WaitGroup
	var refusedFirst, refusedLast atomic.Int64 // unix ns
	var probes, refusals atomic.Int64
	for _, g := range gws {
		probeWG.Go(func() {
			for {
				select {
				case <-probeStop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				c, err := g.dial(used.Token)
				probes.Add(1)
				if err == nil {
					c.Close() // no payload: no usage
					continue
				}
				refusals.Add(1)
				now := time.Now().UnixNano()
				refusedFirst.CompareAndSwap(0, now)
				refusedLast.Store(now)
			}
		})
	}

	killed := time.Now()
	piecesAtKill := pieces.Load()
	set.primary.Kill()
	took := ctlEventually(t, 30*time.Second, "Sentinel to promote the replica", func() bool { return set.masterPort() == set.replica.Port })
	t.Logf("replica promoted %v after the kill", took.Round(time.Millisecond))
	ctlEventually(t, 15*time.Second, "both gateways subscribed on the new primary", func() bool { return set.replica.subscribers() == 2 })
	t.Logf("both gateways subscribed on the new primary %v after the kill", time.Since(killed).Round(time.Millisecond))
	ctlEventually(t, 10*time.Second, "the API to answer on the new primary", func() bool {
		r, err := f.ctl.do("GET", "/v1/tokens/"+used.ID, f.ctl.adminKey, nil)
		return err == nil && r.status == http.StatusOK
	})
	// The failover is over for a gateway once its store calls succeed
	// again (go-redis probes a pool that saw PoolSize failed dials once a
	// second, so this can trail the switch by up to a second).
	ctlEventually(t, 10*time.Second, "both gateways to reach the store again", func() bool {
		return !f.a.auth.Stats().StoreDown && !f.b.auth.Stats().StoreDown
	})
	t.Logf("both gateways reach the store %v after the kill", time.Since(killed).Round(time.Millisecond))
	time.Sleep(300 * time.Millisecond) // a few more probes after the failover
	close(probeStop)
	probeWG.Wait()
	if first := refusedFirst.Load(); first != 0 {
		t.Logf("new sessions with the cached token: %d of %d probes refused, from %v to %v after the kill",
			refusals.Load(), probes.Load(), time.Duration(first-killed.UnixNano()).Round(time.Millisecond), time.Duration(refusedLast.Load()-killed.UnixNano()).Round(time.Millisecond))
	} else {
		t.Logf("new sessions with the cached token: none of %d probes refused", probes.Load())
	}
	// Let the streams run on a little after the failover, then end them.
	after := pieces.Load()
	ctlEventually(t, 10*time.Second, "the streams to go on after the failover", func() bool { return pieces.Load() >= after+8 })
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d hash-checked 64 KiB pieces echoed, %d before the kill", pieces.Load(), piecesAtKill)

	issued := f.ctl.issue(map[string]any{"label": "after"})
	for i, g := range gws {
		for _, tok := range []ctlToken{used, unused, issued} {
			if err := countedFetch(g, tok, f.origin, 128<<10, uint64(10+i), &moved); err != nil {
				t.Errorf("token %s after the failover: %v", tok.ID, err)
			}
		}
	}

	// Usage: every session has ended, so each gateway's last report is in
	// its accounts; the flushes run every 300 ms. The sum must be the bytes
	// moved: nothing lost, and nothing counted twice (a flush that failed
	// with the primary, applied or not, is sent again; see AddUsage).
	want := moved.Load()
	sum := func() int64 {
		var n int64
		for _, tok := range []ctlToken{used, unused, issued} {
			n += f.ctl.token(tok.ID).Usage.Total
		}
		return n
	}
	var got int64
	if ctlEventuallyOK(10*time.Second, func() bool { got = sum(); return got >= want }) {
		time.Sleep(time.Second) // a few more flushes: anything counted twice shows up
		got = sum()
	}
	t.Logf("usage in Redis %d bytes, bytes moved %d", got, want)
	if got != want {
		t.Errorf("usage %d bytes after the failover, bytes moved %d (difference %d)", got, want, got-want)
	}

	// Revocation after the failover reaches both gateways within a second.
	live := map[*ctlGateway]*testpeer.SSConn{}
	for _, g := range gws {
		sc, err := g.ss(issued, f.echo)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sc.Close() })
		if err := ctlEcho(sc, 16<<10, 7); err != nil {
			t.Fatalf("gateway %s: %v", g.name, err)
		}
		live[g] = sc
	}
	f.revokeAndWatch(t, issued, live)
	for _, g := range gws {
		if err := g.decoy(issued.Token); err != nil {
			t.Error(err)
		}
	}
}

// ctlEventuallyOK is ctlEventually that reports a timeout instead of
// failing.
func ctlEventuallyOK(timeout time.Duration, cond func() bool) bool {
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}
