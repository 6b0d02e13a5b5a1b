package embedded

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/httvps/httvps/store"
)

// bucketKeys counts the history buckets kept for name.
func bucketKeys(t *testing.T, s *Store, top []byte, name string) int {
	t.Helper()
	n := 0
	if err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(top).Bucket([]byte(name)); b != nil {
			n = b.Stats().KeyN
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// History past its retention is deleted from the file, not only hidden:
// the hourly pass drops hours older than 90 days and days older than two
// years, for every token and the fleet.
func TestHistoryPruned(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "httvps.db"))
	ctx := context.Background()
	tok := store.Token{ID: store.NewID(), Hash: [32]byte{7}, Cipher: store.DefaultCipher, SSPassword: "pw"}
	if err := s.CreateToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range 3 {
		if err := s.AddUsage(ctx, start.Add(time.Duration(i)*time.Hour), map[string]store.Usage{tok.ID: {Up: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	if h, d := bucketKeys(t, s, bucketHour, tok.ID), bucketKeys(t, s, bucketDay, tok.ID); h != 3 || d < 1 {
		t.Fatalf("%d hour and %d day buckets written, want 3 and at least 1", h, d)
	}
	clock := start
	s.now = func() time.Time { return clock }
	step := func(d time.Duration) {
		t.Helper()
		clock = clock.Add(d)
		// Another token's flush runs the pass.
		other := store.Token{ID: store.NewID(), Hash: store.HashToken(store.NewID()), Cipher: store.DefaultCipher, SSPassword: "pw"}
		if err := s.CreateToken(ctx, other); err != nil {
			t.Fatal(err)
		}
		if err := s.AddUsage(ctx, clock, map[string]store.Usage{other.ID: {Down: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	step(store.HourlyRetention + 4*time.Hour)
	if h, d := bucketKeys(t, s, bucketHour, tok.ID), bucketKeys(t, s, bucketDay, tok.ID); h != 0 || d < 1 {
		t.Errorf("after 90 days: %d hour and %d day buckets, want 0 and the days kept", h, d)
	}
	if h := bucketKeys(t, s, bucketHour, string(fleetBucket)); h != 1 {
		t.Errorf("after 90 days the fleet keeps %d hour buckets, want the new one", h)
	}
	step(store.DailyRetention)
	if d := bucketKeys(t, s, bucketDay, tok.ID); d != 0 {
		t.Errorf("after two years: %d day buckets", d)
	}
	if u, err := s.GetUsage(ctx, tok.ID); err != nil || u.Up != 3 {
		t.Errorf("pruning changed the counters: %+v %v", u, err)
	}
	// A deleted token leaves no history behind.
	if err := s.DeleteToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketHour).Bucket([]byte(tok.ID)) != nil || tx.Bucket(bucketDay).Bucket([]byte(tok.ID)) != nil {
			t.Error("history buckets of a deleted token remain")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
