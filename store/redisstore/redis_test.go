package redisstore

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/store"
	"github.com/httvps/httvps/store/storetest"
)

func freePort(t *testing.T) int {
	t.Helper()
	return testpeer.FreePort(t)
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
	srv := testpeer.StartRedis(t, testpeer.RedisSpec{})
	// Each test gets its own prefix on the shared server.
	newStore := func(t *testing.T) store.Store {
		return open(t, srv.URL(), WithPrefix("t"+store.NewID()+":"))
	}
	reopen := func(t *testing.T, s store.Store) store.Store {
		prefix := s.(*Store).prefix
		s.Close()
		return open(t, srv.URL(), WithPrefix(prefix))
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
	srv := testpeer.StartRedis(t, testpeer.RedisSpec{})
	prefix := "t" + store.NewID() + ":"
	const n = 8
	clients := make([]*Store, n)
	for i := range clients {
		clients[i] = open(t, srv.URL(), WithPrefix(prefix))
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
	other, err := open(t, srv.URL(), WithPrefix("u"+prefix)).InstallationID(context.Background())
	if err != nil || other == ids[0] {
		t.Fatalf("another prefix's ID = %q, %v; want another than %q", other, err, ids[0])
	}
}
