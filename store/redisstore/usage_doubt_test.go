package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/store"
)

// A failed AddUsage may or may not have written its counters; the caller
// sends the same deltas again (plus new ones) and each byte is counted
// once either way.
func TestAddUsageRetryCountsOnce(t *testing.T) {
	srv := testpeer.StartRedis(t, testpeer.RedisSpec{})
	s := open(t, srv.URL(), WithPrefix("t"+store.NewID()+":"))
	ctx := context.Background()
	tok := store.Token{ID: store.NewID(), Hash: [32]byte{4}, Cipher: "chacha20-ietf-poly1305", SSPassword: "pw"}
	if err := s.CreateToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	first := map[string]store.Usage{tok.ID: {Up: 10, Down: 20}}
	retry := map[string]store.Usage{tok.ID: {Up: 11, Down: 22}} // first + new usage
	want := store.Usage{Up: 11, Down: 22}

	t.Run("not applied", func(t *testing.T) {
		// A call that fails before Redis runs it (its context is over).
		dead, cancel := context.WithCancel(ctx)
		cancel()
		if err := s.AddUsage(dead, time.Now(), first); err == nil {
			t.Fatal("AddUsage with a cancelled context succeeded")
		}
		if err := s.AddUsage(ctx, time.Now(), retry); err != nil {
			t.Fatal(err)
		}
		if u, err := s.GetUsage(ctx, tok.ID); err != nil || u != want {
			t.Errorf("usage %+v %v, want %+v", u, err, want)
		}
	})

	t.Run("applied, answer lost", func(t *testing.T) {
		before, _ := s.GetUsage(ctx, tok.ID)
		// The batch as AddUsage sends it, run here, then the call's
		// record of it as a failed call leaves it.
		s.usageSeq++
		b := usageBatchSent{seq: s.usageSeq, deltas: first}
		keys, args := s.usageBatchArgs(b, time.Now())
		if err := addUsageScript.Run(ctx, s.rdb, keys, args...).Err(); err != nil {
			t.Fatal(err)
		}
		s.usageDoubt = []usageBatchSent{b}
		if err := s.AddUsage(ctx, time.Now(), retry); err != nil {
			t.Fatal(err)
		}
		u, err := s.GetUsage(ctx, tok.ID)
		if got := (store.Usage{Up: u.Up - before.Up, Down: u.Down - before.Down}); err != nil || got != want {
			t.Errorf("usage grew by %+v %v, want %+v", got, err, want)
		}
		if len(s.usageDoubt) != 0 {
			t.Errorf("%d batches still in doubt after a successful call", len(s.usageDoubt))
		}
	})
}
