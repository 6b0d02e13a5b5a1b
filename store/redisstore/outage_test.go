package redisstore

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/store"
)

// checkUnavailable runs every kind of call against a Redis that does not
// answer and wants store.ErrUnavailable from each within limit.
func checkUnavailable(t *testing.T, s *Store, limit time.Duration) {
	t.Helper()
	ctx := context.Background()
	calls := map[string]func() error{
		"GetTokenByHash": func() error { _, err := s.GetTokenByHash(ctx, store.HashToken("x")); return err },
		"CreateToken": func() error {
			return s.CreateToken(ctx, store.Token{ID: store.NewID(), Hash: store.HashToken(store.NewID())})
		},
		"AddUsage":       func() error { return s.AddUsage(ctx, time.Now(), map[string]store.Usage{"a": {Up: 1}}) },
		"AcquireSession": func() error { _, err := s.AcquireSession(ctx, "a", "gw", 1); return err },
		"Heartbeat":      func() error { return s.Heartbeat(ctx, store.Gateway{ID: "gw"}, time.Second) },
		"ListGateways":   func() error { _, err := s.ListGateways(ctx); return err },
		"Publish":        func() error { return s.Publish(ctx, store.Event{Kind: store.EventTokenChanged, TokenID: "a"}) },
		"Ping":           func() error { return s.Ping(ctx) },
	}
	var wg sync.WaitGroup
	for name, call := range calls {
		wg.Go(func() {
			start := time.Now()
			err := call()
			took := time.Since(start)
			if !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("%s with Redis down: err = %v, want ErrUnavailable", name, err)
			}
			if took > limit {
				t.Errorf("%s with Redis down took %v, want ≤ %v", name, took, limit)
			}
		})
	}
	wg.Wait()
}

func TestRedisKilledFailsFastAndRecovers(t *testing.T) {
	srv := testpeer.StartRedis(t, testpeer.RedisSpec{})
	s := open(t, srv.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	events, err := s.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tok := store.Token{ID: store.NewID(), Hash: store.HashToken("before")}
	if err := s.CreateToken(ctx, tok); err != nil {
		t.Fatal(err)
	}

	srv.Kill()
	checkUnavailable(t, s, 2*time.Second)

	// Same port, empty data set: the store and the subscription carry on
	// without being recreated.
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Ping(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatal("store did not reconnect")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := s.CreateToken(ctx, tok); err != nil {
		t.Fatalf("CreateToken after restart: %v", err)
	}
	if _, err := s.GetTokenByHash(ctx, tok.Hash); err != nil {
		t.Fatalf("GetTokenByHash after restart: %v", err)
	}
	if ok, err := s.AcquireSession(ctx, tok.ID, "gw", 1); !ok || err != nil {
		t.Fatalf("AcquireSession after restart: %v %v", ok, err)
	}

	// The subscriber is told it may have missed events once it is back.
	waitFor(t, events, 5*time.Second, func(e store.Event) bool { return e.Kind == store.EventResync })
	want := store.Event{Kind: store.EventTokenRevoked, TokenID: tok.ID, Hash: tok.Hash}
	start := time.Now()
	if err := s.Publish(ctx, want); err != nil {
		t.Fatal(err)
	}
	got := waitFor(t, events, time.Second, func(e store.Event) bool { return e.Kind != store.EventResync })
	if got != want {
		t.Fatalf("event after restart = %+v, want %+v", got, want)
	}
	t.Logf("delivery after restart: %v", time.Since(start))

	cancel()
	waitFor(t, events, 2*time.Second, nil)
}

func TestRedisFrozenTimesOut(t *testing.T) {
	srv := testpeer.StartRedis(t, testpeer.RedisSpec{})
	s := open(t, srv.URL())
	srv.Signal(syscall.SIGSTOP)
	defer srv.Signal(syscall.SIGCONT)
	// A Redis that accepts but never answers costs the read timeout plus
	// one retry.
	checkUnavailable(t, s, 2*DefaultTimeout+500*time.Millisecond)
	srv.Signal(syscall.SIGCONT)
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping after thaw: %v", err)
	}
}

func TestNewBadURLHidesPassword(t *testing.T) {
	_, err := New(context.Background(), "redis://:hunter2@[bad")
	if !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
	if contains := err.Error(); len(contains) > 0 && (stringsContains(contains, "hunter2")) {
		t.Fatalf("error %q shows the password", contains)
	}
	_, err = New(context.Background(), "redis://127.0.0.1:1/0")
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}

func stringsContains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// waitFor reads events until match accepts one (and returns it) or, with a
// nil match, until the channel is closed.
func waitFor(t *testing.T, ch <-chan store.Event, within time.Duration, match func(store.Event) bool) store.Event {
	t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				if match == nil {
					return store.Event{}
				}
				t.Fatal("subscription closed")
			}
			if match != nil && match(e) {
				return e
			}
		case <-timer.C:
			t.Fatalf("nothing matching within %v", within)
		}
	}
}
