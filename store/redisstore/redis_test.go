package redisstore

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/store"
	"github.com/httvps/httvps/store/storetest"
)

// redisServer is a redis-server of our own on a loopback port.
type redisServer struct {
	port int
	dir  string
	cmd  *exec.Cmd
}

func freePort(t *testing.T) int {
	t.Helper()
	return testpeer.FreePort(t)
}

// startRedis starts redis-server on port (a free one when 0) and stops it
// when the test ends.
func startRedis(t *testing.T, port int) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed")
	}
	if port == 0 {
		port = freePort(t)
	}
	r := &redisServer{port: port, dir: t.TempDir()}
	r.cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--dir", r.dir, "--save", "", "--appendonly", "no", "--daemonize", "no",
		"--loglevel", "warning")
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.stop)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", r.addr(), 200*time.Millisecond)
		if err == nil {
			c.SetDeadline(time.Now().Add(time.Second))
			c.Write([]byte("PING\r\n"))
			buf := make([]byte, 16)
			n, _ := c.Read(buf)
			c.Close()
			if string(buf[:n]) == "+PONG\r\n" {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s did not come up", r.addr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *redisServer) addr() string { return fmt.Sprintf("127.0.0.1:%d", r.port) }
func (r *redisServer) url() string  { return "redis://" + r.addr() + "/0" }

// stop kills the server and waits for it; safe to call twice.
func (r *redisServer) stop() {
	if r.cmd.Process != nil && r.cmd.ProcessState == nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
	}
}

func open(t *testing.T, url string, opts ...Option) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := New(ctx, url, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	srv := startRedis(t, 0)
	// Each test gets its own prefix on the shared server.
	newStore := func(t *testing.T) store.Store {
		return open(t, srv.url(), WithPrefix("t"+store.NewID()+":"))
	}
	reopen := func(t *testing.T, s store.Store) store.Store {
		prefix := s.(*Store).prefix
		s.Close()
		return open(t, srv.url(), WithPrefix(prefix))
	}
	storetest.Run(t, newStore, reopen)
}

// quietLogger drops go-redis's reconnect chatter, which outage tests cause
// on purpose.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

func TestMain(m *testing.M) {
	redis.SetLogger(quietLogger{})
	os.Exit(m.Run())
}

// Control-plane replicas starting at once on an empty Redis, each with its
// own client, agree on one installation ID (the first SET NX wins).
func TestInstallationIDReplicasRace(t *testing.T) {
	srv := startRedis(t, 0)
	prefix := "t" + store.NewID() + ":"
	const n = 8
	clients := make([]*Store, n)
	for i := range clients {
		clients[i] = open(t, srv.url(), WithPrefix(prefix))
	}
	ids := make([]string, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			<-start
			ids[i], errs[i] = c.InstallationID(context.Background())
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("replica %d: %v", i, errs[i])
		}
		if ids[i] != ids[0] {
			t.Fatalf("replicas disagree: %q and %q", ids[0], ids[i])
		}
	}
	other, err := open(t, srv.url(), WithPrefix("u"+prefix)).InstallationID(context.Background())
	if err != nil || other == ids[0] {
		t.Fatalf("another prefix's ID = %q, %v; want another than %q", other, err, ids[0])
	}
}
