package redisstore

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/store"
	"github.com/httvps/httvps/store/storetest"
)

// startSentinel starts a replica of primary and one redis-sentinel
// monitoring primary as "m" (quorum 1: nothing here fails over), and
// returns the Sentinel URL.
func startSentinel(t *testing.T, primary *testpeer.Redis) string {
	t.Helper()
	// Send the first full sync at once (7.0 waits 5 s for more replicas).
	pc := redis.NewClient(&redis.Options{Addr: primary.Addr(), MaxRetries: -1})
	err := pc.ConfigSet(context.Background(), "repl-diskless-sync-delay", "0").Err()
	pc.Close()
	if err != nil {
		t.Fatal(err)
	}
	replica := testpeer.FreePort(t)
	testpeer.StartProc(t, "redis-server", "--port", strconv.Itoa(replica), "--bind", "127.0.0.1",
		"--dir", t.TempDir(), "--save", "", "--appendonly", "no", "--loglevel", "warning",
		"--replicaof", "127.0.0.1", strconv.Itoa(primary.Port))
	port := testpeer.FreePort(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	body := fmt.Sprintf("port %d\nbind 127.0.0.1\nprotected-mode no\ndir %s\nsentinel monitor m 127.0.0.1 %d 1\n", port, dir, primary.Port)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	testpeer.StartProc(t, "redis-sentinel", conf)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(15 * time.Second)
	for {
		c := redis.NewClient(&redis.Options{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(replica)), MaxRetries: -1})
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		info, _ := c.Info(ctx, "replication").Result()
		cancel()
		c.Close()
		if testpeer.WaitListening(addr, 100*time.Millisecond) == nil && strings.Contains(info, "master_link_status:up") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("replica and Sentinel did not come up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "redis+sentinel://" + addr + "/m/0"
}

// The conformance suite through go-redis's failover client: scripts,
// pipelines, pub/sub and the WAIT after usage all work through Sentinel.
func TestSentinelConformance(t *testing.T) {
	if _, err := exec.LookPath("redis-sentinel"); err != nil {
		t.Skip("redis-sentinel not installed")
	}
	srv := testpeer.StartRedis(t, testpeer.RedisSpec{})
	url := startSentinel(t, srv)
	newStore := func(t *testing.T) store.Store {
		return open(t, url, WithPrefix("t"+store.NewID()+":"))
	}
	reopen := func(t *testing.T, s store.Store) store.Store {
		prefix := s.(*Store).prefix
		s.Close()
		return open(t, url, WithPrefix(prefix))
	}
	storetest.Run(t, newStore, reopen)
}

// Usage written through Sentinel is on the replica when AddUsage returns.
func TestSentinelUsageOnReplica(t *testing.T) {
	if _, err := exec.LookPath("redis-sentinel"); err != nil {
		t.Skip("redis-sentinel not installed")
	}
	srv := testpeer.StartRedis(t, testpeer.RedisSpec{})
	s := open(t, startSentinel(t, srv))
	if !s.waitReplica || s.replicaWait != replicaWait {
		t.Fatal("a Sentinel store does not wait for its replica")
	}
	// The outcome is checked (the counters on the replica once AddUsage
	// returns); a long bound keeps a loaded machine, where the replica may
	// answer later than replicaWait, from failing it.
	s.replicaWait = 10 * time.Second
	ctx := context.Background()
	tok := store.Token{ID: store.NewID(), Hash: [32]byte{1, 2, 3}, Cipher: "chacha20-ietf-poly1305", SSPassword: "pw"}
	if err := s.CreateToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := s.AddUsage(ctx, time.Now(), map[string]store.Usage{tok.ID: {Up: 5, Down: 7}}); err != nil {
		t.Fatal(err)
	}
	t.Logf("AddUsage with WAIT took %v", time.Since(start))
	// Read it from the replica directly.
	var got map[string]string
	for _, p := range replicaPorts(t, srv) {
		c := redis.NewClient(&redis.Options{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), MaxRetries: -1})
		got, _ = c.HGetAll(ctx, DefaultPrefix+"usage:"+tok.ID).Result()
		c.Close()
	}
	if got["up"] != "5" || got["down"] != "7" {
		t.Errorf("replica has usage %v, want up 5 down 7", got)
	}
}

// replicaPorts lists the ports of the replicas connected to srv.
func replicaPorts(t *testing.T, srv *testpeer.Redis) []int {
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	defer c.Close()
	info, err := c.Info(context.Background(), "replication").Result()
	if err != nil {
		t.Fatal(err)
	}
	var ports []int
	for _, line := range strings.Split(info, "\n") {
		// slave0:ip=127.0.0.1,port=1234,state=online,offset=…,lag=0
		if !strings.HasPrefix(line, "slave") {
			continue
		}
		for _, f := range strings.Split(line, ",") {
			if v, ok := strings.CutPrefix(f, "port="); ok {
				p, _ := strconv.Atoi(v)
				ports = append(ports, p)
			}
		}
	}
	if len(ports) == 0 {
		t.Fatal("no replica connected")
	}
	return ports
}
