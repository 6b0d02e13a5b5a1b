package embedded

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/httvps/httvps/store"
	"github.com/httvps/httvps/store/internal/eventq"
	"github.com/httvps/httvps/store/storetest"
)

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	newStore := func(t *testing.T) store.Store {
		return open(t, filepath.Join(t.TempDir(), "httvps.db"))
	}
	reopen := func(t *testing.T, s store.Store) store.Store {
		path := s.(*Store).db.Path()
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		return open(t, path)
	}
	storetest.Run(t, newStore, reopen)
}

func TestSlowSubscriberDoesNotBlockPublisher(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "httvps.db"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	slow, err := s.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fast, err := s.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const n = 3 * eventq.Size
	// A subscriber that reads gets every event or is told it lost some.
	// Under load its own queue can fill too, and then even "next" may be
	// among what it is told it lost: a resync settles it either way.
	fastOK := make(chan bool, 1)
	go func() {
		count := 0
		for e := range fast {
			switch {
			case e.Kind == store.EventResync:
				fastOK <- true
				return
			case e.TokenID == "next":
				fastOK <- count == n
				return
			default:
				count++
			}
		}
		fastOK <- false // closed before "next" or a resync
	}()

	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			if err := s.Publish(ctx, store.Event{Kind: store.EventTokenChanged, TokenID: fmt.Sprint(i)}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("publisher blocked by a subscriber that does not read")
	}

	// The slow subscriber learns that it lost events (after at most the one
	// event already in hand-over), gets the queued ones in order, then later
	// events again.
	var resyncAt, got = -1, 0
	last := -1
	for e := range slow {
		if e.Kind == store.EventResync {
			resyncAt = got
			continue
		}
		if e.TokenID == "next" {
			break
		}
		var i int
		fmt.Sscan(e.TokenID, &i)
		if i <= last {
			t.Fatalf("event %d after %d", i, last)
		}
		last = i
		got++
		if got == eventq.Size {
			// Room again: the next event must get through.
			if err := s.Publish(ctx, store.Event{Kind: store.EventQuotaExceeded, TokenID: "next"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if resyncAt < 0 || resyncAt > 1 {
		t.Errorf("resync after %d events, want 0 or 1", resyncAt)
	}
	if got < eventq.Size || got > eventq.Size+1 {
		t.Errorf("slow subscriber got %d queued events, want about %d", got, eventq.Size)
	}
	select {
	case ok := <-fastOK:
		if !ok {
			t.Error("reading subscriber lost events without a resync")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("reading subscriber got neither the last event nor a resync")
	}
	cancel()
}

func TestFileInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "httvps.db")
	open(t, path)
	start := time.Now()
	_, err := Open(path)
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("second Open: err = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("second Open took %v", d)
	}
}

func TestLeasesDoNotOutliveProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "httvps.db")
	s := open(t, path)
	ctx := context.Background()
	if err := s.Heartbeat(ctx, store.Gateway{ID: "gw"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.AcquireSession(ctx, "tok", "gw", 1); !ok || err != nil {
		t.Fatalf("AcquireSession: %v %v", ok, err)
	}
	s.Close()
	s = open(t, path)
	if n, err := s.SessionCount(ctx, "tok"); n != 0 || err != nil {
		t.Fatalf("leases after restart: %d %v", n, err)
	}
}
